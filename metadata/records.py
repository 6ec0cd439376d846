"""What the store reads and writes, in Sluice's terms: the context type names and execution states,
the errors, the records reads return (executions, runs, leases, lineage), and how a property value
is encoded in ML-Metadata. Plain data: nothing here talks to a database.
"""
from __future__ import annotations

import functools
import json
import os
import socket
from dataclasses import dataclass, field
from typing import Any, Iterable

from google.protobuf import wrappers_pb2
from ml_metadata.proto import metadata_store_pb2 as pb

from sluice.metadata.artifact import Artifact

PIPELINE, PIPELINE_RUN, NODE = 'pipeline', 'pipeline_run', 'node'
# Sluice's own bookkeeping: a run's lease (one context per holder, named '<scope>@<epoch>'), and the
# settlement of an execution (a context named by the execution id, created in the transaction that
# ends the execution; the database's unique (type, name) constraint lets only one ending through).
LEASE, SETTLEMENT = 'sluice_lease', 'sluice_settlement'
DONE_STATES = ('COMPLETE', 'CACHED')


class MetadataStoreError(RuntimeError):
    """The store cannot be reached or used; the message says how to fix it. ``retryable`` is False
    when trying again cannot help (a malformed URL, a store of another schema version)."""

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class FencingError(MetadataStoreError):
    """An execution can no longer be published or failed by this caller: it was already ended (for
    example declared abandoned by a process that took the run over), or it belongs to another lease."""


class LeaseConflict(MetadataStoreError):
    """Another process created the same lease epoch first."""


@dataclass
class LeaseRecord:
    """One holder of a lease: ``name`` is ``<scope>@<epoch>``; ``owner`` says who (pid, host, command)."""
    id: int
    scope: str
    epoch: int
    owner: dict[str, Any]
    heartbeat: float
    released: bool

    @property
    def name(self) -> str:
        return f'{self.scope}@{self.epoch}'


@dataclass
class ExecutionRecord:
    """One execution as recorded in the store."""
    id: int
    component_type: str
    node_id: str
    run_id: str
    state: str
    cache_key: str
    create_time: float
    update_time: float
    properties: dict[str, Any]
    inputs: dict[str, list[Artifact]] = field(default_factory=dict)
    outputs: dict[str, list[Artifact]] = field(default_factory=dict)

    @property
    def error(self) -> str:
        return self.properties.get('error_message', '')


def latest_per_node(executions: Iterable[ExecutionRecord]) -> dict[str, ExecutionRecord]:
    """The latest execution (highest id) of each node among ``executions``, by node id. A node's
    latest execution decides its state in a run: a retry or a resume supersedes earlier attempts."""
    out: dict[str, ExecutionRecord] = {}
    for ex in sorted(executions, key=lambda e: e.id):
        out[ex.node_id] = ex
    return out


@dataclass
class RunSummary:
    """A pipeline run: its nodes' latest executions and the state derived from them."""
    run_id: str
    pipeline_name: str
    create_time: float
    node_ids: list[str]
    properties: dict[str, Any]
    executions: list[ExecutionRecord]

    def latest(self) -> dict[str, ExecutionRecord]:
        """The latest execution of each node in this run."""
        return latest_per_node(self.executions)

    @property
    def nodes_done(self) -> int:
        return sum(1 for ex in self.latest().values() if ex.state in DONE_STATES)

    @property
    def state(self) -> str:
        latest = self.latest()
        states = {ex.state for ex in latest.values()}
        if 'RUNNING' in states:
            return 'RUNNING'
        if self.node_ids and all(latest.get(n) and latest[n].state in DONE_STATES for n in self.node_ids):
            return 'COMPLETE'
        if states & {'FAILED', 'CANCELED'}:
            return 'FAILED'
        return 'INCOMPLETE'


@dataclass
class LineageNode:
    """An artifact, the execution that produced it, and that execution's inputs, recursively."""
    artifact: Artifact
    execution: ExecutionRecord | None
    inputs: dict[str, list[LineageNode]] = field(default_factory=dict)

    def walk(self) -> Iterable[LineageNode]:
        yield self
        for children in self.inputs.values():
            for child in children:
                yield from child.walk()


# PostgreSQL indexes every string property value with a B-tree, which refuses a value over 2,704
# bytes ("index row size ... exceeds btree version 4 maximum"): a stored pipeline, a traceback or a
# long reason would fail to be recorded. Longer strings are kept in the unindexed proto_value.
LONG_STRING = 1024


def value_of(v: pb.Value) -> Any:
    """A property's value as Sluice wrote it (see :func:`set_value`)."""
    kind = v.WhichOneof('value')
    if kind == 'proto_value':
        text = wrappers_pb2.StringValue()
        if v.proto_value.Unpack(text):
            return text.value
        return v.proto_value
    return getattr(v, kind) if kind else None


def set_value(target: Any, name: str, value: Any, declared: bool = False) -> None:
    """Set property ``name`` of a custom-property map (or a ``declared`` property map, whose string
    properties must stay strings) to an int, float, string or JSON-able value."""
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        target[name].int_value = value
    elif isinstance(value, float):
        target[name].double_value = value
    else:
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        if len(text) > LONG_STRING and not declared:
            target[name].proto_value.Pack(wrappers_pb2.StringValue(value=text))
        else:
            target[name].string_value = text


def process_start(pid: int) -> str:
    """When a process started (Linux clock ticks since boot), to tell a live process from a reused
    pid; '' where /proc is not available or the process is gone. Recorded with an execution and a
    lease holder, next to the pid and host."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[19]
    except (OSError, IndexError):
        return ''


HOSTNAME_ENV = 'SLUICE_HOSTNAME'


def _first_line(path: str, link: bool = False) -> str:
    try:
        if link:
            return os.readlink(path)
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ''


def process_identity(pid: int | None = None) -> dict[str, Any]:
    """Who a process is, for others to judge whether it still runs: its pid and start time, its host
    (``$SLUICE_HOSTNAME`` where hostnames say nothing, as in containers), the kernel's boot id (one
    per machine and boot: two hosts with one name, or one host rebooted, differ) and the pid
    namespace (containers sharing a kernel do not share pids). Recorded with every lease holder and
    execution."""
    pid = os.getpid() if pid is None else pid
    return {'pid': pid, 'pid_start': process_start(pid),
            'host': os.environ.get(HOSTNAME_ENV) or socket.gethostname(),
            'boot_id': _first_line('/proc/sys/kernel/random/boot_id'),
            'pid_ns': _first_line(f'/proc/{pid}/ns/pid', link=True)}


@functools.lru_cache(maxsize=None)
def _machine(host_override: str | None) -> tuple[str, str, str]:
    """This process's (host, boot id, pid namespace): read once, they do not change while it runs."""
    return (host_override or socket.gethostname(), _first_line('/proc/sys/kernel/random/boot_id'),
            _first_line('/proc/self/ns/pid', link=True))


def same_machine(owner: dict[str, Any]) -> bool:
    """Whether ``owner`` (a recorded process_identity) ran on this machine since its last boot: then
    its recorded times come from this machine's clock."""
    host, boot_id, _ = _machine(os.environ.get(HOSTNAME_ENV))
    return bool(boot_id) and owner.get('host') == host and owner.get('boot_id') == boot_id


def same_pid_space(owner: dict[str, Any]) -> bool:
    """Whether ``owner``'s pid means the same process here (same machine, boot and pid namespace)."""
    pid_ns = _machine(os.environ.get(HOSTNAME_ENV))[2]
    return same_machine(owner) and bool(owner.get('pid_ns')) and owner.get('pid_ns') == pid_ns
