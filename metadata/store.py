"""The ML-Metadata store behind a pipeline: connection, types, contexts, executions, lineage.

    >>> store = MetadataStore('sqlite:///runs/penguin/metadata.db')   # or None for in-memory
    >>> [run.run_id for run in store.runs('penguin')]

Context types are ``pipeline`` (the pipeline name), ``pipeline_run`` (the run id, child of its
pipeline) and ``node`` (``<pipeline>.<node_id>``); every execution and artifact of a run is linked to
all three. Execution types are named after component types. Artifacts reach the store only when
they are published, as LIVE.
"""
from __future__ import annotations

import glob
import json
import os
import random
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence, TypeVar
from urllib.parse import unquote, urlparse

from google.protobuf import wrappers_pb2
from ml_metadata import errors as mlmd_errors
from ml_metadata.metadata_store import metadata_store as mlmd
from ml_metadata.proto import metadata_store_pb2 as pb

from sluice.metadata.artifact import STANDARD_TYPES, Artifact

PIPELINE, PIPELINE_RUN, NODE = 'pipeline', 'pipeline_run', 'node'
# Sluice's own bookkeeping: a run's lease (one context per holder, named '<scope>@<epoch>'), and the
# settlement of an execution (a context named by the execution id, created in the transaction that
# ends the execution; the database's unique (type, name) constraint lets only one ending through).
LEASE, SETTLEMENT = 'sluice_lease', 'sluice_settlement'
DONE_STATES = ('COMPLETE', 'CACHED')
T = TypeVar('T')


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
        out: dict[str, ExecutionRecord] = {}
        for ex in sorted(self.executions, key=lambda e: e.id):
            out[ex.node_id] = ex
        return out

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


def _connection_config(url: str | None, create: bool = True) -> tuple[pb.ConnectionConfig, str]:
    config = pb.ConnectionConfig()
    if not url or url in (':memory:', 'memory://', 'memory:'):
        config.fake_database.SetInParent()
        return config, 'memory://'
    if url.startswith('sqlite://'):
        path = url[len('sqlite://'):]
        if path.startswith('/'):
            path = path[1:]  # sqlite:///rel.db -> rel.db, sqlite:////abs.db -> /abs.db
        if not path:
            raise MetadataStoreError(f'Metadata URL {url!r} names no file; use sqlite:///path/to/metadata.db.',
                                     retryable=False)
    elif '://' not in url:
        path = url
    else:
        parsed = urlparse(url)
        scheme = parsed.scheme.split('+')[0]
        if scheme in ('postgresql', 'postgres'):
            cfg = config.postgresql
            cfg.host = parsed.hostname or 'localhost'
            cfg.port = str(parsed.port or 5432)
            cfg.dbname = parsed.path.lstrip('/') or 'mlmd'
        elif scheme == 'mysql':
            cfg = config.mysql
            cfg.host = parsed.hostname or 'localhost'
            cfg.port = parsed.port or 3306
            cfg.database = parsed.path.lstrip('/') or 'mlmd'
        else:
            raise MetadataStoreError(
                f'Unsupported metadata URL {url!r}: use sqlite:///path/metadata.db, '
                'postgresql://user:password@host:port/db, mysql://user:password@host:port/db or :memory:.',
                retryable=False)
        if parsed.username:
            cfg.user = unquote(parsed.username)
        if parsed.password:
            cfg.password = unquote(parsed.password)
        return config, url
    path = os.path.abspath(os.path.expanduser(path))
    parent = os.path.dirname(path)
    if not create:
        if not os.path.isfile(path):
            found = sorted(glob.glob(os.path.join('runs', '*', 'metadata.db')))
            hint = f' Stores under this directory: {", ".join(found)}.' if found else ''
            raise MetadataStoreError(
                f'No metadata store at {path} (from {url!r}). Check the path: sqlite:///relative/to/here.db or '
                f'sqlite:////absolute/path.db.{hint}')
        config.sqlite.filename_uri = path
        config.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READWRITE
        return config, f'sqlite:///{path}'
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as e:
        raise MetadataStoreError(
            f'Cannot create the directory {parent!r} for the SQLite metadata store {url!r}: {e.strerror}. '
            'Choose a writable location (pipeline_root or --metadata).') from None
    config.sqlite.filename_uri = path
    config.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    return config, f'sqlite:///{path}'


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


class MetadataStore:
    """An ML-Metadata store: SQLite file, in-memory, PostgreSQL or MySQL, chosen by URL.

    ``url`` is ``sqlite:///relative/or/abs/path.db``, ``postgresql://user:pw@host:port/db``,
    ``mysql://user:pw@host:port/db``, or None / ``:memory:`` for a private in-memory store.
    Calls that ML-Metadata aborts because another process holds the database (SQLite's
    "database is locked") are retried with backoff.
    """

    RETRIES = 12

    def __init__(self, url: str | None = None, create: bool = True) -> None:
        """``create=False`` refuses to create a SQLite store that does not exist (for commands that
        read one: a mistyped path is an error, not a new empty store)."""
        config, self.url = _connection_config(url, create)
        self._lock = threading.RLock()
        try:
            self._store = self.retry(lambda: mlmd.MetadataStore(config), creating=True)
        except mlmd_errors.FailedPreconditionError as e:
            raise MetadataStoreError(
                f'The metadata store at {self.url} has a schema version this ML-Metadata '
                f'({_mlmd_version()}) does not use: {e}. Sluice never migrates a store silently: '
                'use a store made by this version, or back it up and migrate it with ML-Metadata\'s '
                'enable_upgrade_migration.', retryable=False) from None
        except (mlmd_errors.StatusError, RuntimeError) as e:
            version = re.search(r'database version (\d+) is (older|greater) than library version (\d+)', str(e))
            if version:
                found, relation, library = version.groups()
                raise MetadataStoreError(
                    f'The metadata store at {_redact(self.url)} has ML-Metadata schema version {found}, '
                    f'{"older" if relation == "older" else "newer"} than the version {library} that '
                    f'{_mlmd_version()} uses. Sluice never migrates a store silently: '
                    + ('back it up, then migrate it with ML-Metadata (MetadataStore(config, '
                       'enable_upgrade_migration=True)), or use the older Sluice/ml-metadata that wrote it.'
                       if relation == 'older' else
                       'use the newer ml-metadata (and Sluice) that wrote it.'), retryable=False) from None
            if config.WhichOneof('config') == 'sqlite':
                raise MetadataStoreError(
                    f'Cannot open {config.sqlite.filename_uri} as an ML-Metadata SQLite store: '
                    f'{_sqlite_reason(_why(config, e))}. '
                    'Point --metadata at a Sluice metadata store (the metadata.db under a pipeline root).') from None
            raise MetadataStoreError(
                f'Cannot connect to the metadata store at {_redact(self.url)}: {_why(config, e)}. Check that the '
                'database server is running and reachable and the credentials are right, or use a '
                'local store with --metadata sqlite:///path/metadata.db.') from None
        self._type_ids: dict[str, int] = {}
        self._type_names: dict[int, str] = {}
        for cls in STANDARD_TYPES:
            self.artifact_type_id(cls)
        for name in (PIPELINE, PIPELINE_RUN, NODE, LEASE, SETTLEMENT):
            self._context_type_id(name)

    @property
    def mlmd(self) -> mlmd.MetadataStore:
        """The underlying ml_metadata MetadataStore, for queries this class does not offer."""
        return self._store

    def retry(self, call: Callable[[], T], creating: bool = False) -> T:
        """Call ML-Metadata (``call`` uses ``self.mlmd``), retrying with backoff while another process
        holds the database. With ``creating`` (connecting, which creates ML-Metadata's tables in a new
        database, or registering a type), also while another process creates the same thing: processes
        opening a new PostgreSQL or MySQL database at once race, the losers get a unique-key violation,
        and the next try finds what the winner created."""
        delay = 0.05
        for attempt in range(self.RETRIES + 1):
            try:
                with self._lock:
                    return call()
            except (mlmd_errors.StatusError, RuntimeError) as e:
                busy = isinstance(e, mlmd_errors.AbortedError) or (
                    isinstance(e, (mlmd_errors.InternalError, mlmd_errors.UnavailableError))
                    and ('locked' in str(e) or 'busy' in str(e)))
                race = creating and any(m in str(e) for m in ('duplicate key value', 'Duplicate entry'))
                if not (busy or race) or attempt == self.RETRIES:
                    raise
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 2.0)
        raise AssertionError('unreachable')

    # -- types --------------------------------------------------------------------------------
    def artifact_type_id(self, cls: type[Artifact]) -> int:
        name = cls.type_name()
        if name not in self._type_ids:
            t = pb.ArtifactType(name=name)
            for prop, kind in cls.all_properties().items():
                t.properties[prop] = {int: pb.INT, float: pb.DOUBLE, str: pb.STRING}[kind]
            type_id = self.retry(lambda: self._store.put_artifact_type(t, can_add_fields=True), creating=True)
            self._type_ids[name], self._type_names[type_id] = type_id, name
        return self._type_ids[name]

    def execution_type_id(self, component_type: str) -> int:
        key = f'execution:{component_type}'
        if key not in self._type_ids:
            t = pb.ExecutionType(name=component_type)
            self._type_ids[key] = self.retry(lambda: self._store.put_execution_type(t, can_add_fields=True),
                                             creating=True)
        return self._type_ids[key]

    def _context_type_id(self, name: str) -> int:
        key = f'context:{name}'
        if key not in self._type_ids:
            t = pb.ContextType(name=name)
            self._type_ids[key] = self.retry(lambda: self._store.put_context_type(t, can_add_fields=True),
                                             creating=True)
        return self._type_ids[key]

    def _artifact_type_name(self, type_id: int) -> str:
        if type_id not in self._type_names:
            [t] = self.retry(lambda: self._store.get_artifact_types_by_id([type_id]))
            self._type_names[type_id] = t.name
        return self._type_names[type_id]

    # -- contexts -----------------------------------------------------------------------------
    def context(self, type_name: str, name: str, properties: dict[str, Any] | None = None,
                create: bool = True) -> pb.Context | None:
        """The context of this type and name; created (with ``properties``) if missing and ``create``.
        Safe when several processes create it at once."""
        ctx = self.retry(lambda: self._store.get_context_by_type_and_name(type_name, name))
        if ctx is not None or not create:
            return ctx
        ctx = pb.Context(type_id=self._context_type_id(type_name), name=name)
        for k, v in (properties or {}).items():
            set_value(ctx.custom_properties, k, v)
        try:
            [ctx.id] = self.retry(lambda: self._store.put_contexts([ctx]))
        except mlmd_errors.AlreadyExistsError:  # created meanwhile by another process
            ctx = self.retry(lambda: self._store.get_context_by_type_and_name(type_name, name))
        return ctx

    def register_run(self, pipeline_name: str, run_id: str, properties: dict[str, Any]) -> None:
        """Create the pipeline and pipeline_run contexts of a new run (the run is the pipeline's child)."""
        pipeline = self.context(PIPELINE, pipeline_name)
        if self.context(PIPELINE_RUN, run_id, create=False) is not None:
            raise MetadataStoreError(f'Run id {run_id!r} already exists in {self.url}; choose another run id.')
        run = self.context(PIPELINE_RUN, run_id, {'pipeline_name': pipeline_name, **properties})
        self.retry(lambda: self._store.put_parent_contexts(
            [pb.ParentContext(child_id=run.id, parent_id=pipeline.id)]))

    def update_run(self, run_id: str, properties: dict[str, Any]) -> None:
        run = self._require_run(run_id)
        for k, v in properties.items():
            set_value(run.custom_properties, k, v)
        self.retry(lambda: self._store.put_contexts([run]))

    def _require_run(self, run_id: str) -> pb.Context:
        run = self.context(PIPELINE_RUN, run_id, create=False)
        if run is None:
            known = [r.run_id for r in self.runs()][-5:]
            hint = f' Known runs: {", ".join(known)}.' if known else ' The store has no runs.'
            raise MetadataStoreError(f'No run {run_id!r} in the metadata store {self.url}.{hint}')
        return run

    def _node_contexts(self, pipeline_name: str, run_id: str, node_id: str) -> list[pb.Context]:
        pipeline = self.context(PIPELINE, pipeline_name)
        run = self._require_run(run_id)
        node = self.context(NODE, f'{pipeline_name}.{node_id}')
        return [pipeline, run, node]

    # -- executions ---------------------------------------------------------------------------
    def _new_execution(self, component_type: str, state: str, run_id: str, node_id: str,
                       properties: dict[str, Any]) -> pb.Execution:
        ex = pb.Execution(type_id=self.execution_type_id(component_type),
                          last_known_state=pb.Execution.State.Value(state))
        base = {'run_id': run_id, 'node_id': node_id, 'pid': os.getpid(), 'host': socket.gethostname(),
                'pid_start': process_start(os.getpid())}
        for k, v in {**base, **properties}.items():
            set_value(ex.custom_properties, k, v)
        return ex

    def _artifact_proto(self, artifact: Artifact, state: str | None = None) -> pb.Artifact:
        proto = pb.Artifact(type_id=self.artifact_type_id(type(artifact)), uri=artifact.uri)
        if artifact.id is not None:
            proto.id = artifact.id
        proto.state = pb.Artifact.State.Value(state or artifact.state)
        if getattr(artifact, 'external_id', None):
            proto.external_id = artifact.external_id
        for k, v in artifact.properties.items():
            set_value(proto.properties, k, v, declared=True)
        for k, v in artifact.custom_properties.items():
            set_value(proto.custom_properties, k, v)
        return proto

    @staticmethod
    def _event(kind: int, key: str, index: int) -> pb.Event:
        return pb.Event(type=kind, path=pb.Event.Path(steps=[pb.Event.Path.Step(key=key),
                                                               pb.Event.Path.Step(index=index)]))

    def _events(self, artifacts: dict[str, Sequence[Artifact]], kind: int,
                state: str | None = None) -> list[tuple[pb.Artifact, pb.Event]]:
        """One event per artifact: MLMD keeps one event of a kind per artifact and execution, so an
        artifact passed under two keys (a Trainer's examples that are also its raw_examples) is
        recorded under the first key only."""
        seen: set[int] = set()
        events = []
        for key, group in sorted(artifacts.items()):
            for i, a in enumerate(group):
                if a.id is not None:
                    if a.id in seen:
                        continue
                    seen.add(a.id)
                events.append((self._artifact_proto(a, state), self._event(kind, key, i)))
        return events

    def register_execution(self, component_type: str, pipeline_name: str, run_id: str, node_id: str,
                           inputs: dict[str, Sequence[Artifact]], properties: dict[str, Any]) -> int:
        """Record a RUNNING execution with its INPUT events; returns the execution id."""
        contexts = self._node_contexts(pipeline_name, run_id, node_id)
        ex = self._new_execution(component_type, 'RUNNING', run_id, node_id, properties)
        ex_id, _, _ = self.retry(lambda: self._store.put_execution(
            ex, self._events(inputs, pb.Event.INPUT), contexts))
        return ex_id

    def publish_execution(self, execution_id: int, pipeline_name: str, run_id: str, node_id: str,
                          outputs: dict[str, Sequence[Artifact]], properties: dict[str, Any] | None = None,
                          lease: str | None = None) -> None:
        """In one transaction: the outputs become LIVE with OUTPUT events and the execution COMPLETE.

        Fenced: only a RUNNING execution (of ``lease``, when given) can be published, and the same
        transaction settles it, so an execution that was ended meanwhile (declared abandoned by a
        process that took the run over) can never become COMPLETE: FencingError, nothing published.
        """
        contexts = self._node_contexts(pipeline_name, run_id, node_id)
        ex = self._fenced_execution(execution_id, lease, 'publish')
        ex.last_known_state = pb.Execution.COMPLETE
        for k, v in (properties or {}).items():
            set_value(ex.custom_properties, k, v)
        events = self._events(outputs, pb.Event.OUTPUT, 'LIVE')
        ids = self._settle(ex, events, contexts, 'publish')
        flat = [a for _, group in sorted(outputs.items()) for a in group]
        for artifact, new_id in zip(flat, ids):
            artifact.id, artifact.state = new_id, 'LIVE'

    def record_cached_execution(self, component_type: str, pipeline_name: str, run_id: str, node_id: str,
                                inputs: dict[str, Sequence[Artifact]], outputs: dict[str, Sequence[Artifact]],
                                properties: dict[str, Any]) -> int:
        """Record a CACHED execution whose OUTPUT events point at reused LIVE artifacts."""
        contexts = self._node_contexts(pipeline_name, run_id, node_id)
        ex = self._new_execution(component_type, 'CACHED', run_id, node_id, properties)
        events = self._events(inputs, pb.Event.INPUT) + self._events(outputs, pb.Event.OUTPUT)
        ex_id, _, _ = self.retry(lambda: self._store.put_execution(ex, events, contexts))
        return ex_id

    def fail_execution(self, execution_id: int, error_type: str, message: str, details: str = '',
                       state: str = 'FAILED', lease: str | None = None) -> None:
        """Mark a RUNNING execution FAILED (or CANCELED) and record why; its outputs never become LIVE.

        Fenced like ``publish_execution``: ``lease`` (when given) must own it, and it must still be
        RUNNING; an execution is ended exactly once (FencingError otherwise). Abandoning another
        process's execution passes ``lease=None``.
        """
        ex = self._fenced_execution(execution_id, lease, 'fail')
        ex.last_known_state = pb.Execution.State.Value(state)
        set_value(ex.custom_properties, 'error_type', error_type)
        set_value(ex.custom_properties, 'error_message', message[:4000])
        if details:
            set_value(ex.custom_properties, 'error_details', details[-8000:])
        self._settle(ex, [], [], 'fail')

    def check_fence(self, execution_id: int, lease: str | None, action: str = 'publish') -> None:
        """Raise FencingError if ``execution_id`` could not be published (or failed) by ``lease`` now.
        Advisory (the publish itself is the atomic check); used to explain a failure."""
        self._fenced_execution(execution_id, lease, action)

    def _fenced_execution(self, execution_id: int, lease: str | None, action: str) -> pb.Execution:
        ex = self._get_execution_proto(execution_id)
        state = pb.Execution.State.Name(ex.last_known_state)
        if state != 'RUNNING':
            why = value_of(ex.custom_properties['error_message']) if 'error_message' in ex.custom_properties else ''
            raise FencingError(f'Cannot {action} execution #{execution_id}: it is already {state}'
                               + (f' ({why})' if why else '') + '; its outputs are not published.')
        owner = value_of(ex.custom_properties['lease']) if 'lease' in ex.custom_properties else None
        if lease is not None and owner is not None and owner != lease:
            raise FencingError(f'Cannot {action} execution #{execution_id}: it belongs to lease {owner}, '
                               f'not {lease}.')
        if lease is not None and self.lease_superseded(lease):
            raise FencingError(f'Cannot {action} execution #{execution_id}: the run was taken over by '
                               f'another process ({self.describe_lease_holder(lease)}).')
        return ex

    def _settle(self, ex: pb.Execution, events: list, contexts: list[pb.Context], action: str) -> list[int]:
        """Write the execution's final state together with its settlement context: one transaction,
        which the database refuses if the execution was settled before."""
        settlement = pb.Context(type_id=self._context_type_id(SETTLEMENT), name=str(ex.id))
        try:
            _, ids, _ = self.retry(lambda: self._store.put_execution(ex, events, [*contexts, settlement]))
        except mlmd_errors.AlreadyExistsError:
            now = self._get_execution_proto(ex.id)
            why = value_of(now.custom_properties['error_message']) if 'error_message' in now.custom_properties else ''
            raise FencingError(f'Cannot {action} execution #{ex.id}: another process ended it first '
                               f'({pb.Execution.State.Name(now.last_known_state)}{": " + why if why else ""}); '
                               'its outputs are not published.') from None
        return list(ids)

    # -- leases -------------------------------------------------------------------------------
    def _lease_record(self, ctx: pb.Context) -> LeaseRecord:
        props = {k: value_of(v) for k, v in ctx.custom_properties.items()}
        scope, _, epoch = ctx.name.rpartition('@')
        return LeaseRecord(id=ctx.id, scope=scope, epoch=int(epoch),
                           owner={k: v for k, v in props.items() if k not in ('heartbeat', 'released')},
                           heartbeat=float(props.get('heartbeat', 0.0)), released=bool(props.get('released', 0)))

    def lease_latest(self, scope: str) -> LeaseRecord | None:
        """The newest holder of the lease on ``scope`` (released or not), or None if never taken."""
        latest = None
        epoch = 1
        while True:
            ctx = self.context(LEASE, f'{scope}@{epoch}', create=False)
            if ctx is None:
                return self._lease_record(latest) if latest is not None else None
            latest, epoch = ctx, epoch + 1

    def lease_record(self, name: str) -> LeaseRecord | None:
        """The holder recorded as ``name`` (``<scope>@<epoch>``), or None."""
        ctx = self.context(LEASE, name, create=False)
        return self._lease_record(ctx) if ctx is not None else None

    def lease_create(self, scope: str, epoch: int, owner: dict[str, Any]) -> LeaseRecord:
        """Become holder number ``epoch`` of the lease on ``scope``; LeaseConflict if another process
        did first (the database's unique context name decides)."""
        ctx = pb.Context(type_id=self._context_type_id(LEASE), name=f'{scope}@{epoch}')
        for k, v in {**owner, 'heartbeat': time.time(), 'released': 0}.items():
            set_value(ctx.custom_properties, k, v)
        try:
            [ctx.id] = self.retry(lambda: self._store.put_contexts([ctx]))
        except mlmd_errors.AlreadyExistsError:
            raise LeaseConflict(f'lease {scope}@{epoch} was taken by another process first') from None
        return self._lease_record(ctx)

    def lease_update(self, record: LeaseRecord, released: bool = False) -> None:
        """Refresh the holder's heartbeat, or mark the lease released. Only the holder writes its own
        context, so this never races with another writer."""
        ctx = self.context(LEASE, record.name, create=False)
        if ctx is None:
            return
        set_value(ctx.custom_properties, 'heartbeat', time.time())
        if released:
            set_value(ctx.custom_properties, 'released', 1)
        self.retry(lambda: self._store.put_contexts([ctx]))

    def lease_superseded(self, name: str) -> bool:
        """Whether a later holder took over the lease ``name`` (``<scope>@<epoch>``)."""
        scope, _, epoch = name.rpartition('@')
        return self.context(LEASE, f'{scope}@{int(epoch) + 1}', create=False) is not None

    def describe_lease_holder(self, name: str) -> str:
        """Who holds the lease of ``name``'s scope now, in words."""
        latest = self.lease_latest(name.rpartition('@')[0])
        if latest is None:
            return 'nobody'
        o = latest.owner
        return f"sluice {o.get('command', '?')}, pid {o.get('pid')} on {o.get('host')}"

    def _get_execution_proto(self, execution_id: int) -> pb.Execution:
        found = self.retry(lambda: self._store.get_executions_by_id([execution_id]))
        if not found:
            raise MetadataStoreError(f'No execution {execution_id} in {self.url}.')
        return found[0]

    # -- reading ------------------------------------------------------------------------------
    def _to_artifact(self, proto: pb.Artifact) -> Artifact:
        cls = Artifact.type_class(self._artifact_type_name(proto.type_id))
        a = cls(uri=proto.uri)
        a.id = proto.id
        a.state = pb.Artifact.State.Name(proto.state)
        if proto.external_id:
            a.external_id = proto.external_id
        a.properties = {k: value_of(v) for k, v in proto.properties.items()}
        a.custom_properties = {k: value_of(v) for k, v in proto.custom_properties.items()}
        return a

    def artifacts(self, ids: Sequence[int]) -> list[Artifact]:
        protos = self.retry(lambda: self._store.get_artifacts_by_id(list(ids)))
        by_id = {p.id: self._to_artifact(p) for p in protos}
        return [by_id[i] for i in ids if i in by_id]

    def _records(self, protos: Sequence[pb.Execution], with_events: bool = True) -> list[ExecutionRecord]:
        type_names: dict[int, str] = {}
        records = []
        for p in protos:
            if p.type_id not in type_names:
                [t] = self.retry(lambda: self._store.get_execution_types_by_id([p.type_id]))
                type_names[p.type_id] = t.name
            props = {k: value_of(v) for k, v in p.custom_properties.items()}
            records.append(ExecutionRecord(
                id=p.id, component_type=type_names[p.type_id], node_id=props.get('node_id', ''),
                run_id=props.get('run_id', ''), state=pb.Execution.State.Name(p.last_known_state),
                cache_key=props.get('cache_key', ''), create_time=p.create_time_since_epoch / 1000,
                update_time=p.last_update_time_since_epoch / 1000, properties=props))
        if with_events and records:
            events = self.retry(lambda: self._store.get_events_by_execution_ids([r.id for r in records]))
            arts = {a.id: a for a in self.artifacts(sorted({e.artifact_id for e in events}))}
            by_id = {r.id: r for r in records}
            for e in sorted(events, key=lambda e: [s.index for s in e.path.steps if s.HasField('index')]):
                key = next((s.key for s in e.path.steps if s.HasField('key')), '')
                target = by_id[e.execution_id].inputs if e.type == pb.Event.INPUT else by_id[e.execution_id].outputs
                if e.artifact_id in arts:
                    target.setdefault(key, []).append(arts[e.artifact_id])
        return records

    def executions(self, run_id: str) -> list[ExecutionRecord]:
        """Every execution of a run with its inputs and outputs, oldest first."""
        run = self._require_run(run_id)
        protos = self.retry(lambda: self._store.get_executions_by_context(run.id))
        return sorted(self._records(protos), key=lambda r: r.id)

    def execution(self, execution_id: int) -> ExecutionRecord:
        return self._records([self._get_execution_proto(execution_id)])[0]

    def node_outputs(self, run_id: str, node_id: str) -> dict[str, list[Artifact]] | None:
        """The LIVE outputs of a node's latest COMPLETE or CACHED execution in a run, or None."""
        run = self._require_run(run_id)
        protos = self.retry(lambda: self._store.get_executions_by_context(run.id))
        done = [p for p in protos
                if 'node_id' in p.custom_properties
                and p.custom_properties['node_id'].string_value == node_id
                and pb.Execution.State.Name(p.last_known_state) in DONE_STATES]
        if not done:
            return None
        [record] = self._records([max(done, key=lambda p: p.id)])
        return {k: [a for a in v if a.state == 'LIVE'] for k, v in record.outputs.items()}

    def cache_candidates(self, pipeline_name: str, node_id: str, cache_key: str) -> list[ExecutionRecord]:
        """COMPLETE executions of this node (any run) with this cache key, newest first."""
        node = self.context(NODE, f'{pipeline_name}.{node_id}', create=False)
        if node is None:
            return []
        protos = self.retry(lambda: self._store.get_executions_by_context(node.id))
        hits = [p for p in protos if p.last_known_state == pb.Execution.COMPLETE
                and 'cache_key' in p.custom_properties
                and p.custom_properties['cache_key'].string_value == cache_key]
        return sorted(self._records(hits), key=lambda r: -r.id)

    def latest_done_execution(self, pipeline_name: str, node_id: str,
                              exclude_run: str | None = None) -> ExecutionRecord | None:
        """The newest COMPLETE or CACHED execution of this node in any run of the pipeline (but
        ``exclude_run``) whose outputs are all LIVE and on disk, or None."""
        node = self.context(NODE, f'{pipeline_name}.{node_id}', create=False)
        if node is None:
            return None
        protos = self.retry(lambda: self._store.get_executions_by_context(node.id))
        done = sorted((p for p in protos if pb.Execution.State.Name(p.last_known_state) in DONE_STATES),
                      key=lambda p: -p.id)
        for proto in done:
            [record] = self._records([proto])
            if record.run_id == exclude_run:
                continue
            artifacts = [a for group in record.outputs.values() for a in group]
            if all(a.state == 'LIVE' and a.exists() for a in artifacts):
                return record
        return None

    def artifacts_of_type(self, type_name: str) -> list[Artifact]:
        """Every artifact of an MLMD type (none if the type is unknown)."""
        try:
            protos = self.retry(lambda: self._store.get_artifacts_by_type(type_name))
        except mlmd_errors.NotFoundError:
            return []
        return [self._to_artifact(p) for p in protos]

    def mark_deleted(self, artifacts: Sequence[Artifact]) -> None:
        """Set artifacts' state to DELETED (their files are being removed: ``sluice gc``); no cache
        lookup reuses them from then on."""
        if not artifacts:
            return
        protos = self.retry(lambda: self._store.get_artifacts_by_id([a.id for a in artifacts]))
        for proto in protos:
            proto.state = pb.Artifact.DELETED
        self.retry(lambda: self._store.put_artifacts(protos))
        for artifact in artifacts:
            artifact.state = 'DELETED'

    def runs(self, pipeline_name: str | None = None) -> list[RunSummary]:
        """Runs in the store (optionally of one pipeline), oldest first."""
        contexts = self.retry(lambda: self._store.get_contexts_by_type(PIPELINE_RUN))
        out = []
        for ctx in contexts:
            props = {k: value_of(v) for k, v in ctx.custom_properties.items()}
            if pipeline_name and props.get('pipeline_name') != pipeline_name:
                continue
            out.append(self._summary(ctx, props))
        return sorted(out, key=lambda r: (r.create_time, r.run_id))

    def run(self, run_id: str) -> RunSummary:
        ctx = self._require_run(run_id)
        return self._summary(ctx, {k: value_of(v) for k, v in ctx.custom_properties.items()})

    def _summary(self, ctx: pb.Context, props: dict[str, Any]) -> RunSummary:
        protos = self.retry(lambda: self._store.get_executions_by_context(ctx.id))
        node_ids = json.loads(props.get('node_ids', '[]'))
        return RunSummary(run_id=ctx.name, pipeline_name=props.get('pipeline_name', ''),
                          create_time=ctx.create_time_since_epoch / 1000, node_ids=node_ids,
                          properties=props, executions=self._records(protos, with_events=False))

    def lineage(self, artifact_id: int) -> LineageNode:
        """What produced an artifact: its producing execution and that execution's inputs, recursively."""
        found = self.artifacts([artifact_id])
        if not found:
            raise MetadataStoreError(f'No artifact {artifact_id} in the metadata store {self.url}.')
        memo: dict[int, LineageNode] = {}

        def build(artifact: Artifact) -> LineageNode:
            if artifact.id in memo:
                return memo[artifact.id]
            events = self.retry(lambda: self._store.get_events_by_artifact_ids([artifact.id]))
            producers = [e.execution_id for e in events if e.type == pb.Event.OUTPUT]
            node = LineageNode(artifact, None)
            memo[artifact.id] = node
            if producers:
                records = self._records(self.retry(lambda: self._store.get_executions_by_id(producers)))
                # The execution that made the files, not a later CACHED one that reused them.
                records.sort(key=lambda r: (r.state != 'COMPLETE', r.id))
                node.execution = records[0]
                node.inputs = {k: [build(a) for a in v] for k, v in sorted(node.execution.inputs.items())}
            return node

        return build(found[0])

    # -- spans (artifacts across runs) ----------------------------------------------------------
    def node_executions_across_runs(self, pipeline_name: str, node_id: str) -> list[ExecutionRecord]:
        """The COMPLETE and CACHED executions of a node in every run of a pipeline, oldest first, with
        their inputs and outputs (for resolvers: the spans an ExampleGen ingested in earlier runs)."""
        node = self.context(NODE, f'{pipeline_name}.{node_id}', create=False)
        if node is None:
            return []
        protos = self.retry(lambda: self._store.get_executions_by_context(node.id))
        done = [p for p in protos if pb.Execution.State.Name(p.last_known_state) in DONE_STATES]
        return sorted(self._records(done), key=lambda r: r.id)

    def producing_execution(self, artifact_id: int) -> ExecutionRecord | None:
        """The execution that made an artifact's files (the COMPLETE one, not a later CACHED reuse)."""
        events = self.retry(lambda: self._store.get_events_by_artifact_ids([artifact_id]))
        producers = sorted({e.execution_id for e in events if e.type == pb.Event.OUTPUT})
        if not producers:
            return None
        records = self._records(self.retry(lambda: self._store.get_executions_by_id(producers)))
        records.sort(key=lambda r: (r.state != 'COMPLETE', r.id))
        return records[0]


def process_start(pid: int) -> str:
    """When a process started (Linux clock ticks since boot), to tell a live process from a reused
    pid; '' where /proc is not available or the process is gone."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[19]
    except (OSError, IndexError):
        return ''


def _why(config: pb.ConnectionConfig, error: Exception) -> str:
    """The reason a server store is unreachable, probed at the TCP level when possible."""
    reason = str(error).strip().rstrip('.')
    kind = config.WhichOneof('config')
    if kind in ('postgresql', 'mysql'):
        cfg = getattr(config, kind)
        try:
            socket.create_connection((cfg.host, int(cfg.port)), timeout=5).close()
        except OSError as e:
            return f'{cfg.host}:{cfg.port}: {e.strerror or e}'
    return reason


def _sqlite_reason(text: str) -> str:
    """SQLite's own words from an ML-Metadata error ('file is not a database'), without the query."""
    found = re.search(r'executing query: (.*?) query:', text)
    return found.group(1) if found else text[:200]


def _redact(url: str) -> str:
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f':{parsed.password}@', ':***@')
    return url


def _mlmd_version() -> str:
    try:
        from importlib.metadata import version
        return 'ml-metadata ' + version('ml-metadata')
    except Exception:  # pragma: no cover - metadata missing in odd installs
        return 'ml-metadata'
