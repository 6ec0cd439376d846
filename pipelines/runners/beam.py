"""BeamDagRunner: the pipeline's DAG itself runs as a Beam pipeline.

Each node is launched inside a DoFn through the same Session as LocalDagRunner (same lease, plan,
launcher, store and cache), and ordered after its upstream nodes by side inputs, so a runner that
schedules independent stages concurrently runs independent branches in parallel. The component
executors still run their own Beam pipelines with the pipeline's ``beam_pipeline_args``;
``dag_pipeline_args`` are the options of the DAG pipeline (DirectRunner, in memory, by default).

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
from sluice.runners.local import LocalDagRunner

# The sessions of runs driven from this process: token -> session. DoFn instances hold only the
# token and strings (Beam pickles them; a store connection cannot be pickled).
_SESSIONS: dict[str, Session] = {}
_LOCK = threading.Lock()


def _launch_node(token: str, attach: dict[str, Any], node_id: str, upstream: Sequence[NodeResult]) -> NodeResult:
    """What one DoFn does: hand its node to the run's session."""
    with _LOCK:
        if token not in _SESSIONS:  # a worker in another process
            _SESSIONS[token] = Session.attach(attach['store'], attach['run_id'], attach['lease'], attach['plan'])
        session = _SESSIONS[token]
    return session.node(session.pipeline.node(node_id), list(upstream))


class _LaunchNode:
    """Builds the DoFn lazily so that Beam is imported only when a BeamDagRunner runs. The DoFn
    refers only to strings and module-level functions, so any Beam pickler can ship it."""

    @staticmethod
    def make(token: str, attach: dict[str, Any], node_id: str) -> Any:
        import apache_beam as beam

        class LaunchNode(beam.DoFn):
            def process(self, _, *upstream):  # no type hints: Beam would check them
                # Downstream nodes need only whether this one succeeded; its outputs stay out of Beam's
                # pickling (their classes may live only in the pipeline's stored copy, shipped by value).
                yield dataclasses.replace(_launch_node(token, attach, node_id, upstream), outputs={})

        return LaunchNode()


class BeamDagRunner(LocalDagRunner):
    """Runs the DAG as a Beam pipeline; same results and MLMD records as LocalDagRunner."""

    name = 'beam'

    def __init__(self, progress: Any = True,
                 dag_pipeline_args: Sequence[str] = ('--runner=DirectRunner', '--direct_running_mode=in_memory',
                                                     '--pickle_library=cloudpickle')):
        super().__init__(progress, parallel=1)
        self.dag_pipeline_args = list(dag_pipeline_args)

    def _schedule(self, session: Session) -> dict[str, NodeResult]:
        from sluice.components.executor import quiet_google_warnings
        quiet_google_warnings()
        import apache_beam as beam
        from apache_beam.options.pipeline_options import PipelineOptions

        token = uuid.uuid4().hex
        attach = {'store': without_password(session.store.connect_url), 'run_id': session.run_id,
                  'lease': session.lease.name, 'plan': session.shared_plan()}
        _SESSIONS[token] = session
        try:
            with password_in_environment(session.store.connect_url), \
                    beam.Pipeline(options=PipelineOptions(self.dag_pipeline_args)) as p:
                start = p | 'Start' >> beam.Create([None])
                launched: dict[str, Any] = {}
                for component in session.pipeline.components:
                    sides = [beam.pvalue.AsSingleton(launched[u.id]) for u in component.upstream]
                    launched[component.id] = start | f'Launch[{component.id}]' >> beam.ParDo(
                        _LaunchNode.make(token, attach, component.id), *sides)
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
