"""LocalDagRunner: runs a pipeline's nodes in-process, one after another, in topological order."""
from __future__ import annotations

import time

from components.driver import PipelineInfo
from metadata.store import MetadataStore
from pipelines.launcher import NodeResult, launch
from pipelines.pipeline import Pipeline
from pipelines.resume import Step, format_plan, plan, stored_pipeline
from pipelines.runner import Progress, RunResult, skipped, start_run


class LocalDagRunner:
    """Runs every node of a pipeline in this process.

        >>> result = LocalDagRunner().run(pipeline)
        >>> result.run_id, result.state, result.node_states()
        >>> LocalDagRunner().resume(None, result.run_id)      # after a failure or a kill

    A node that fails stops the nodes downstream of it (SKIPPED); independent branches still run.
    """

    name = 'local'

    def __init__(self, progress: bool | Progress = True) -> None:
        self.progress = progress if isinstance(progress, Progress) else Progress(enabled=bool(progress))

    def run(self, pipeline: Pipeline, run_id: str | None = None,
            store: MetadataStore | None = None) -> RunResult:
        started = time.time()
        store = store or MetadataStore(pipeline.metadata)
        info = start_run(pipeline, store, run_id, self.name)
        self.progress.run_started(pipeline, info.run_id, store)
        result = self._execute(pipeline, store, info, {})
        self.progress.run_finished(result, time.time() - started)
        return result

    def resume(self, pipeline: Pipeline | None, run_id: str, store: MetadataStore | None = None,
               metadata: str | None = None) -> RunResult:
        """Continue ``run_id``: reuse what finished, run what failed, never started or was abandoned.
        ``pipeline=None`` uses the definition stored with the run (its store: ``metadata`` URL)."""
        started = time.time()
        if store is None:
            url = metadata or (pipeline.metadata if pipeline is not None else None)
            if url is None:
                raise ValueError('resume(None, run_id) needs the store: pass metadata=URL or store=...')
            store = MetadataStore(url)
        if pipeline is None:
            pipeline = stored_pipeline(store, run_id)
        store.run(run_id)  # a clear error for an unknown run id
        steps = {s.node_id: s for s in plan(pipeline, store, run_id)}
        info = PipelineInfo(pipeline.name, pipeline.pipeline_root, run_id, tuple(pipeline.beam_pipeline_args))
        self.progress.say(format_plan(run_id, pipeline, list(steps.values())))
        if all(s.action == 'reuse' for s in steps.values()):
            self.progress.say(f'Run {run_id} is already COMPLETE; nothing to resume.')
            return RunResult(run_id, pipeline.name, store.url,
                             {k: _reused(pipeline, s) for k, s in steps.items()})
        store.update_run(run_id, {'resumed_at': time.time(), 'runner': self.name})
        result = self._execute(pipeline, store, info, steps)
        self.progress.run_finished(result, time.time() - started)
        return result

    def _execute(self, pipeline: Pipeline, store: MetadataStore, info: PipelineInfo,
                 steps: dict[str, Step]) -> RunResult:
        result = RunResult(info.run_id, pipeline.name, store.url)
        total = len(pipeline.components)
        for index, component in enumerate(pipeline.components, start=1):
            step = steps.get(component.id)
            failed = [u.id for u in component.upstream if not result.nodes[u.id].ok]
            if step is not None and step.action == 'reuse':
                node = _reused(pipeline, step)
            elif failed:
                node = skipped(component.id, component.component_type, failed)
            else:
                self.progress.node_started(index, total, component.id)
                node = launch(component, store, info, enable_cache=pipeline.enable_cache)
            result.nodes[component.id] = node
            self.progress.node_finished(index, total, node)
        return result


def _reused(pipeline: Pipeline, step: Step) -> NodeResult:
    record = step.execution
    assert record is not None
    return NodeResult(step.node_id, pipeline.node(step.node_id).component_type, record.state,
                      execution_id=record.id, outputs={k: v[0] for k, v in record.outputs.items() if v},
                      cache_key=record.cache_key, reused=True)
