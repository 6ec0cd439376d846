"""BeamDagRunner: the pipeline's DAG itself runs as a Beam pipeline.

Each node is launched inside a DoFn through the same Session as LocalDagRunner (same lease, plan,
launcher, store and cache). The nodes go in waves by depth in the DAG (the nodes with no upstream
node, then those whose upstream nodes are all in earlier waves, ...): each wave is one Beam stage over
its node ids, ordered after the earlier waves by a side input holding their results, so the nodes of
one wave run at once as the runner spreads the stage's elements over its workers. By default the DAG
pipeline runs on the DirectRunner with ``parallel`` worker threads (the cores available), so that
CsvExampleGen and ImportSchemaGen, or the Evaluator and the Trainer's ONNX export, overlap as with
``sluice run``; ``parallel=1`` runs one node at a time. A wave waits for the whole earlier wave, where
``sluice run`` starts a node as soon as its own upstream nodes end. The component executors still run
their own Beam pipelines with the pipeline's ``beam_pipeline_args``; ``dag_pipeline_args`` are the
options of the DAG pipeline.

    >>> BeamDagRunner().run(pipeline)
    >>> BeamDagRunner().resume(None, run_id, metadata='sqlite:///runs/penguin/metadata.db')

In this process the DoFns share the session; a DoFn running in another process (a multi-process or
distributed runner) attaches to the run from strings only (store URL, run id, lease name, the
executions to reuse): it opens the store and loads the pipeline definition stored with the run, so
the store must be reachable from the workers (SQLite on a shared filesystem, or PostgreSQL/MySQL).
Its launches are fenced by the lease of the process that drives the run. The store URL it gets has
no password: a worker finds it in its environment (``$SLUICE_METADATA_PASSWORD``, which holds the
URL's own password while the DAG pipeline runs, so workers started from here inherit it; or
``$PGPASSWORD``, ``~/.pgpass``).
"""
from __future__ import annotations

import dataclasses
import threading
import uuid
from typing import Any, Sequence

from sluice.metadata.credentials import password_in_environment, without_password
from sluice.metadata.records import ExecutionRecord, latest_per_node
from sluice.orchestration.core import Session
from sluice.orchestration.launcher import NodeResult
from sluice.orchestration.schedule import available_cores, serialise_ast_parse
from sluice.runners.local import LocalDagRunner

# The sessions of runs driven from this process: token -> session. DoFn instances hold only the
# token and strings (Beam pickles them; a store connection cannot be pickled).
_SESSIONS: dict[str, Session] = {}
_LOCK = threading.Lock()


def _launch_node(token: str, attach: dict[str, Any], node_id: str, done: Sequence[NodeResult]) -> NodeResult:
    """What one DoFn does: hand its node to the run's session, with its upstream nodes' results
    (among ``done``, the results of the earlier waves)."""
    with _LOCK:
        if token not in _SESSIONS:  # a worker in another process
            _SESSIONS[token] = Session.attach(attach['store'], attach['run_id'], attach['lease'], attach['plan'])
        session = _SESSIONS[token]
    component = session.pipeline.node(node_id)
    by_id = {r.node_id: r for r in done}
    return session.node(component, [by_id[u.id] for u in component.upstream])


def waves(components: Sequence[Any]) -> list[list[str]]:
    """The node ids by depth: those with no upstream node first, then those whose upstream nodes are
    all in earlier waves; in the pipeline's order within a wave."""
    depth: dict[str, int] = {}
    for component in components:  # topological order
        depth[component.id] = 1 + max((depth[u.id] for u in component.upstream), default=-1)
    grouped: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for component in components:
        grouped[depth[component.id]].append(component.id)
    return grouped


class _LaunchNode:
    """Builds the DoFn lazily so that Beam is imported only when a BeamDagRunner runs. The DoFn
    refers only to strings and module-level functions, so any Beam pickler can ship it."""

    @staticmethod
    def make(token: str, attach: dict[str, Any]) -> Any:
        import apache_beam as beam

        class LaunchNode(beam.DoFn):
            def process(self, node_id, done=()):  # no type hints: Beam would check them
                # Downstream nodes need only whether this one succeeded; its outputs stay out of Beam's
                # pickling (their classes may live only in the pipeline's stored copy, shipped by value).
                yield dataclasses.replace(_launch_node(token, attach, node_id, done), outputs={})

        return LaunchNode()


class BeamDagRunner(LocalDagRunner):
    """Runs the DAG as a Beam pipeline; same results and MLMD records as LocalDagRunner."""

    name = 'beam'

    def __init__(self, progress: Any = True, dag_pipeline_args: Sequence[str] | None = None,
                 parallel: int | None = None):
        """``parallel``: nodes at once (default: the cores available), the DirectRunner's worker
        threads for the DAG pipeline; ignored when ``dag_pipeline_args`` are given (they choose)."""
        super().__init__(progress, parallel=parallel)
        self.dag_pipeline_args = list(dag_pipeline_args) if dag_pipeline_args is not None else None

    def _dag_args(self) -> list[str]:
        if self.dag_pipeline_args is not None:
            return self.dag_pipeline_args
        workers = available_cores() if self.parallel is None else self.parallel
        mode = ['--direct_running_mode=multi_threading', f'--direct_num_workers={workers}'] if workers > 1 else \
            ['--direct_running_mode=in_memory']
        return ['--runner=DirectRunner', *mode, '--pickle_library=cloudpickle']

    @staticmethod
    def _workers(args: Sequence[str]) -> int:
        """Nodes that may run at once in this process under ``args``: the DirectRunner's threads."""
        from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions
        options = PipelineOptions(list(args))
        direct = options.view_as(DirectOptions)
        local = options.view_as(StandardOptions).runner in (None, 'DirectRunner', 'direct', 'FnApiRunner')
        if local and direct.direct_running_mode == 'multi_threading':  # Beam: 0 workers is one per core
            return direct.direct_num_workers if direct.direct_num_workers > 0 else available_cores()
        return 1

    def _schedule(self, session: Session) -> dict[str, NodeResult]:
        from sluice.components.executor import quiet_google_warnings
        quiet_google_warnings()
        import apache_beam as beam
        from apache_beam.options.pipeline_options import PipelineOptions

        token = uuid.uuid4().hex
        attach = {'store': without_password(session.store.connect_url), 'run_id': session.run_id,
                  'lease': session.lease.name, 'plan': session.shared_plan()}
        args = self._dag_args()
        workers = self._workers(args)
        if workers > 1:
            serialise_ast_parse()
            session.parallel = workers
        _SESSIONS[token] = session
        try:
            with password_in_environment(session.store.connect_url), \
                    beam.Pipeline(options=PipelineOptions(args)) as p:
                earlier: list[Any] = []
                for i, ids in enumerate(waves(session.pipeline.components)):
                    done = () if not earlier else (beam.pvalue.AsList(
                        earlier[0] if len(earlier) == 1 else tuple(earlier) | f'Done[{i}]' >> beam.Flatten()),)
                    earlier.append(p | f'Wave[{i}]' >> beam.Create(ids)
                                     | f'Launch[{",".join(ids)}]' >> beam.ParDo(_LaunchNode.make(token, attach), *done))
        except BaseException as e:  # the nodes still running in the DAG pipeline's other threads end CANCELED
            session.cancel_in_flight('interrupted by the user' if isinstance(e, KeyboardInterrupt) else
                                     f'the DAG pipeline stopped: {type(e).__name__}: {e}')
            raise
        finally:
            _SESSIONS.pop(token, None)
        results = dict(session.results)
        others = [c for c in session.pipeline.components if c.id not in results]
        if others:  # launched in another process: as the store says
            latest = latest_per_node(session.store.executions(session.run_id))
            for component in others:
                results[component.id] = self._from_store(latest.get(component.id), component)
        return results

    @staticmethod
    def _from_store(record: ExecutionRecord | None, component: Any) -> NodeResult:
        """A node launched in another process: its outcome as the store recorded it (``record``, its
        latest execution in the run, or None)."""
        if record is None:
            return NodeResult(component.id, component.component_type, 'SKIPPED', error='not run (no execution recorded)')
        return NodeResult(component.id, component.component_type, record.state, execution_id=record.id,
                          outputs={k: v[0] for k, v in record.outputs.items() if v}, error=record.error,
                          cache_key=record.cache_key)
