"""LocalDagRunner: runs a pipeline's nodes in-process, one after another, in topological order."""
from __future__ import annotations

import time

from metadata.store import MetadataStore
from pipelines.launcher import launch
from pipelines.pipeline import Pipeline
from pipelines.runner import Progress, RunResult, skipped, start_run


class LocalDagRunner:
    """Runs every node of a pipeline in this process.

        >>> result = LocalDagRunner().run(pipeline)
        >>> result.run_id, result.state, result.node_states()

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
        result = RunResult(info.run_id, pipeline.name, store.url)
        self.progress.run_started(pipeline, info.run_id, store)
        total = len(pipeline.components)
        for index, component in enumerate(pipeline.components, start=1):
            failed = [u.id for u in component.upstream if not result.nodes[u.id].ok]
            if failed:
                node = skipped(component.id, component.component_type, failed)
            else:
                self.progress.node_started(index, total, component.id)
                node = launch(component, store, info, enable_cache=pipeline.enable_cache)
            result.nodes[component.id] = node
            self.progress.node_finished(index, total, node)
        self.progress.run_finished(result, time.time() - started)
        return result
