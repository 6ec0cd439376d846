"""What every runner shares: starting a run in the store, its result, and progress output."""
from __future__ import annotations

import datetime
import json
import secrets
import shlex
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TextIO

from sluice.metadata import storage
from sluice.components.driver import PipelineInfo
from sluice.metadata.store import MetadataStore
from sluice.orchestration.launcher import NodeResult
from sluice.dsl.pipeline import Pipeline


def new_run_id() -> str:
    """A sortable, unique run id such as ``20261122-101500-3f9a``."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return f'{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}'


@dataclass
class RunResult:
    """The outcome of a pipeline run: its id, overall state and each node's result. ``metadata`` is
    the store's URL as it may be shown (a password masked as ``***``)."""
    run_id: str
    pipeline_name: str
    metadata: str
    nodes: dict[str, NodeResult] = field(default_factory=dict)
    lost_to: str = ''  # set when another process took the run over while this one drove it

    @property
    def state(self) -> str:
        return 'COMPLETE' if self.nodes and all(n.ok for n in self.nodes.values()) else 'FAILED'

    def __getitem__(self, node_id: str) -> NodeResult:
        return self.nodes[node_id]

    def node_states(self) -> dict[str, str]:
        return {k: n.state for k, n in self.nodes.items()}

    def ids_in_state(self, state: str) -> list[str]:
        return [k for k, n in self.nodes.items() if n.state == state]


class Progress:
    """Prints what a run is doing, one line per event, on the terminal; with ``sluice --quiet`` only the
    outcome line. Under the command line's log (``sluice.ui.logs``), what a node's executor prints goes to
    the run's log while the node runs."""

    def __init__(self, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.stream, self.enabled = stream, enabled
        self.started = time.time()
        self._lock = threading.RLock()  # nodes at once report from their own threads
        self._running = 0  # nodes started and not finished
        self._live = ''  # the node whose 'running ...' line the cursor is still on (a terminal)
        self._begun: set[str] = set()  # nodes started and not finished

    def _out(self) -> TextIO:
        from sluice.ui import logs
        return self.stream or logs.console()

    def _quiet(self) -> bool:
        from sluice.ui import logs
        return logs.level() <= logs.QUIET

    def say(self, text: str, outcome: bool = False) -> None:
        if not self.enabled:
            return
        with self._lock:
            if self._quiet() and not outcome:
                print(text, file=sys.stdout, flush=True)  # the log, under --quiet
                return
            print(text, file=self._out(), flush=True)

    def run_started(self, pipeline: Pipeline, run_id: str, store: MetadataStore) -> None:
        from sluice.ui import logs
        self.started = time.time()
        if self.enabled and logs.active() is not None:
            logs.active().attach(pipeline.pipeline_root, run_id)
        self.say(f"Run {run_id} of pipeline '{pipeline.name}': {len(pipeline.components)} nodes, "
                 f'store {store.url}')

    def _tty(self) -> bool:
        stream = self._out()
        return self.enabled and not self._quiet() and hasattr(stream, 'isatty') and stream.isatty()

    def node_started(self, index: int, total: int, node_id: str) -> None:
        from sluice.ui import logs
        line = f'[{index}/{total}] {node_id} running ... ({time.time() - self.started:.0f}s into the run)'
        with self._lock:
            self._end_live_line()
            if self._tty() and not self._running:  # a live line, overwritten when the node finishes
                print(line, end='\r', file=self._out(), flush=True)
                self._live = node_id
            else:  # or a line of its own (another node is running: their lines interleave)
                self.say(line)
            self._running += 1
            self._begun.add(node_id)
            if self.enabled and logs.active() is not None:
                logs.active().begin_node()

    def node_finished(self, index: int, total: int, result: NodeResult) -> None:
        from sluice.ui import logs
        reuse = f' (reused from run {result.reused_from})' if result.reused_from else ' (reused from earlier in this run)'
        detail = f'  {result.error}' if result.error else (reuse if result.reused else '')
        line = f'[{index}/{total}] {result.node_id:<20} {result.state:<9} {result.duration:6.1f}s{detail}'
        with self._lock:
            if result.node_id in self._begun:  # a node reused or skipped never began
                self._begun.discard(result.node_id)
                self._running = max(0, self._running - 1)
                if self.enabled and logs.active() is not None:
                    logs.active().end_node()
            if self._live == result.node_id:  # over its live line (and clear what is left of it)
                self._live = ''
                self.say(line + '\x1b[K')
            else:
                self._end_live_line()
                self.say(line)

    def _end_live_line(self) -> None:
        """Keep another node's live line as it is: what follows goes on the next line."""
        if self._live:
            self._live = ''
            print(file=self._out(), flush=True)

    def run_finished(self, result: RunResult, elapsed: float, store: MetadataStore | None = None) -> None:
        from sluice.ui import logs
        run_log = logs.active() if self.enabled else None
        if run_log is not None and not run_log.attached:  # a resume: the run's root is in the store
            root = self._run_root(result, store)
            if root:
                run_log.attach(root, result.run_id)
        nodes = result.nodes.values()
        reused = sum(1 for n in nodes if n.reused and not n.reused_from)
        borrowed = sorted({n.reused_from for n in nodes if n.reused_from})
        counts = {s: sum(1 for n in nodes if n.state == s and not n.reused)
                  for s in ('COMPLETE', 'CACHED', 'FAILED', 'SKIPPED')}
        self.say(f'Run {result.run_id} {result.state} in {elapsed:.1f}s: {counts["COMPLETE"]} executed, '
                 f'{counts["CACHED"]} cached, {counts["FAILED"]} failed, {counts["SKIPPED"]} skipped'
                 + (f', {reused} reused from earlier in this run' if reused else '')
                 + (f', {sum(1 for n in nodes if n.reused_from)} reused from run {", ".join(borrowed)}'
                    if borrowed else ''), outcome=True)
        if run_log is None:
            return
        if self._quiet() and result.state != 'COMPLETE':  # --quiet: what failed, and how to go on
            for node in result.nodes.values():
                if node.state == 'FAILED':
                    self.say(f'{node.node_id} failed: {node.error}', outcome=True)
            self.say(f'Resume: sluice resume {result.run_id} --metadata {shlex.quote(result.metadata)}', outcome=True)
        if not self._quiet() or result.state != 'COMPLETE':
            self.say(f'Log (library messages; --verbose prints them): {run_log.path}', outcome=True)

    @staticmethod
    def _run_root(result: RunResult, store: MetadataStore | None = None) -> str:
        """The pipeline root a run was registered with (where a resumed run's log goes)."""
        try:
            run = (store or MetadataStore(result.metadata, create=False)).run(result.run_id)
            return str(run.properties.get('pipeline_root') or '')
        except Exception:  # noqa: BLE001 - no place for the log is no reason to fail a finished run
            return ''


def start_run(pipeline: Pipeline, store: MetadataStore, run_id: str | None, runner: str,
              trace: dict[str, str] | None = None) -> PipelineInfo:
    """Register a new run (pipeline and pipeline_run contexts) and return what launches need. ``trace``:
    the run's trace context (``RunTrace.new_context()``, made here when not given)."""
    from sluice.observe.trace import RunTrace
    from sluice.orchestration.resume import definition_properties
    from sluice.dsl.pipeline import PipelineError

    try:
        storage.make_dirs(pipeline.pipeline_root)
        storage.listdir(pipeline.pipeline_root)  # an object store: reachable, with credentials that work
    except storage.StorageError as e:
        raise PipelineError(f'{e} The run was not started.') from None
    except OSError as e:
        raise PipelineError(f'Cannot create the pipeline root {pipeline.pipeline_root}: {e.strerror}. Choose a '
                            'writable directory as pipeline_root.') from None
    run_id = run_id or new_run_id()
    store.register_run(pipeline.name, run_id, {
        'node_ids': json.dumps(pipeline.node_ids),
        'pipeline_root': pipeline.pipeline_root,
        'runner': runner,
        **definition_properties(pipeline),
        **(RunTrace.new_context() if trace is None else trace),  # this process's span (Session.traced), same write
    })
    return PipelineInfo(name=pipeline.name, root=pipeline.pipeline_root, run_id=run_id,
                        beam_pipeline_args=tuple(pipeline.beam_pipeline_args))


def skipped(node_id: str, component_type: str, failed_upstream: list[str]) -> NodeResult:
    return NodeResult(node_id, component_type, 'SKIPPED',
                      error=f'not run: upstream {", ".join(failed_upstream)} did not succeed')
