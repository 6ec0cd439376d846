"""BeamDagRunner: the pipeline's DAG itself runs as a Beam pipeline.

Each node is launched inside a DoFn through the same launcher as LocalDagRunner (driver ->
executor -> publisher, same store, same cache), and ordered after its upstream nodes by side
inputs, so a runner that schedules independent stages concurrently runs independent branches in
parallel. The component executors still run their own Beam pipelines with the pipeline's
``beam_pipeline_args``; ``dag_pipeline_args`` are the options of the DAG pipeline (DirectRunner,
in memory, by default).

    >>> BeamDagRunner().run(pipeline)
    >>> BeamDagRunner().resume(None, run_id, metadata='sqlite:///runs/penguin/metadata.db')

In this process the DoFns share the pipeline object; a DoFn running in another process (a
multi-process or distributed runner) opens the store from its URL and loads the pipeline
definition stored with the run, so the store must be reachable from the workers (SQLite on a
shared filesystem, or PostgreSQL/MySQL).
"""
from __future__ import annotations

import threading
import uuid
from typing import Any, Sequence

from components.driver import PipelineInfo
from metadata.store import MetadataStore
from pipelines.launcher import NodeResult, launch
from pipelines.local_dag_runner import LocalDagRunner, _reused
from pipelines.pipeline import Pipeline
from pipelines.resume import Step, stored_pipeline
from pipelines.runner import RunResult, skipped

# What the DoFns of a run in this process share: token -> context. DoFn instances hold only the
# token (Beam pickles them; a store connection cannot be pickled).
_CONTEXTS: dict[str, dict[str, Any]] = {}
_LOCK = threading.Lock()


def _context(token: str, store_url: str, run_id: str) -> dict[str, Any]:
    with _LOCK:
        if token not in _CONTEXTS:  # a worker in another process: open the store, load the pipeline
            store = MetadataStore(store_url)
            pipeline = stored_pipeline(store, run_id)
            _CONTEXTS[token] = {
                'pipeline': pipeline, 'store': store, 'steps': {}, 'results': {}, 'progress': None,
                'index': {c.id: i for i, c in enumerate(pipeline.components, start=1)},
                'info': PipelineInfo(pipeline.name, pipeline.pipeline_root, run_id, tuple(pipeline.beam_pipeline_args))}
        return _CONTEXTS[token]


def _launch_node(token: str, store_url: str, run_id: str, node_id: str, upstream: Sequence[NodeResult]) -> NodeResult:
    """What one DoFn does: skip, reuse or launch its node, and report it."""
    ctx = _context(token, store_url, run_id)
    pipeline: Pipeline = ctx['pipeline']
    component = pipeline.node(node_id)
    step: Step | None = ctx['steps'].get(node_id)
    failed = [u.node_id for u in upstream if not u.ok]
    if step is not None and step.action == 'reuse':
        result = _reused(pipeline, step)
    elif failed:
        result = skipped(component.id, component.component_type, failed)
    else:
        if ctx['progress'] is not None:
            ctx['progress'].node_started(ctx['index'][node_id], len(pipeline.components), node_id)
        result = launch(component, ctx['store'], ctx['info'], enable_cache=pipeline.enable_cache)
    with _LOCK:
        ctx['results'][node_id] = result
    if ctx['progress'] is not None:
        ctx['progress'].node_finished(ctx['index'][node_id], len(pipeline.components), result)
    return result


class _LaunchNode:
    """Builds the DoFn lazily so that Beam is imported only when a BeamDagRunner runs. The DoFn
    refers only to strings and module-level functions, so any Beam pickler can ship it."""

    @staticmethod
    def make(token: str, store_url: str, run_id: str, node_id: str) -> Any:
        import apache_beam as beam

        class LaunchNode(beam.DoFn):
            def process(self, _, *upstream):  # no type hints: Beam would check them
                yield _launch_node(token, store_url, run_id, node_id, upstream)

        return LaunchNode()


class BeamDagRunner(LocalDagRunner):
    """Runs the DAG as a Beam pipeline; same results and MLMD records as LocalDagRunner."""

    name = 'beam'

    def __init__(self, progress: Any = True,
                 dag_pipeline_args: Sequence[str] = ('--runner=DirectRunner', '--direct_running_mode=in_memory',
                                                     '--pickle_library=cloudpickle')):
        super().__init__(progress)
        self.dag_pipeline_args = list(dag_pipeline_args)

    def _execute(self, pipeline: Pipeline, store: MetadataStore, info: PipelineInfo,
                 steps: dict[str, Step]) -> RunResult:
        from components.executor import quiet_google_warnings
        quiet_google_warnings()
        import apache_beam as beam
        from apache_beam.options.pipeline_options import PipelineOptions
        token = uuid.uuid4().hex
        results: dict[str, NodeResult] = {}
        _CONTEXTS[token] = {'pipeline': pipeline, 'store': store, 'info': info, 'steps': steps,
                            'results': results, 'progress': self.progress,
                            'index': {c.id: i for i, c in enumerate(pipeline.components, start=1)}}
        try:
            with beam.Pipeline(options=PipelineOptions(self.dag_pipeline_args)) as p:
                start = p | 'Start' >> beam.Create([None])
                launched: dict[str, Any] = {}
                for component in pipeline.components:
                    sides = [beam.pvalue.AsSingleton(launched[u.id]) for u in component.upstream]
                    launched[component.id] = start | f'Launch[{component.id}]' >> beam.ParDo(
                        _LaunchNode.make(token, store.url, info.run_id, component.id), *sides)
        finally:
            _CONTEXTS.pop(token, None)
        result = RunResult(info.run_id, pipeline.name, store.url)
        for component in pipeline.components:  # in topological order, as LocalDagRunner reports them
            result.nodes[component.id] = results.get(component.id) or self._from_store(store, info, component)
        return result

    @staticmethod
    def _from_store(store: MetadataStore, info: PipelineInfo, component: Any) -> NodeResult:
        """A node launched in another process: its outcome as the store recorded it."""
        records = [r for r in store.executions(info.run_id) if r.node_id == component.id]
        if not records:
            return skipped(component.id, component.component_type, ['(unknown)'])
        record = records[-1]
        return NodeResult(component.id, component.component_type, record.state, execution_id=record.id,
                          outputs={k: v[0] for k, v in record.outputs.items() if v}, error=record.error,
                          cache_key=record.cache_key)
