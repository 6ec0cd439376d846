"""The one orchestration core: every way of running nodes goes through a Session.

A Session is a run being driven by this process. It

1. holds the run's **lease** in ML-Metadata (who drives the run: pid, host, command, heartbeat), so
   only one live process drives a run at a time; a lease whose holder is gone or silent is taken
   over, and a process that lost its lease can no longer publish anything (fencing);
2. knows the **plan**: for each node, reuse (done earlier in this run), or run, and why;
3. **launches** nodes through the launcher (driver -> executor -> publisher), fenced by the lease.

Runners only schedule: LocalDagRunner calls ``session.node`` in topological order, BeamDagRunner
from Beam DoFns, InteractiveContext one component at a time. Nothing else decides what a launch
does.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Sequence

from components.component import Component
from components.driver import PipelineInfo
from metadata.store import MetadataStore
from pipelines.launcher import NodeResult, launch
from pipelines.lease import Lease
from pipelines.pipeline import Pipeline
from pipelines.resume import Step, format_plan, plan, stored_pipeline
from pipelines.runner import Progress, RunResult, skipped, start_run

class Session:
    """A run driven by this process: its pipeline, store, lease, plan and progress.

        >>> with Session.start(pipeline, store, None, 'local', progress) as session:
        ...     results = {c.id: session.node(c, [results[u.id] for u in c.upstream]) ...}
        ...     session.finish(results)
    """

    def __init__(self, pipeline: Pipeline, store: MetadataStore, run_id: str, lease: Lease,
                 progress: Progress, steps: dict[str, Step] | None = None, started: float | None = None) -> None:
        self.pipeline, self.store, self.run_id, self.lease = pipeline, store, run_id, lease
        self.progress = progress
        self.steps = steps or {}
        self.started = time.time() if started is None else started
        self.info = PipelineInfo(pipeline.name, pipeline.pipeline_root, run_id, tuple(pipeline.beam_pipeline_args),
                                 lease=lease.name)
        self.index = {c.id: i for i, c in enumerate(pipeline.components, start=1)}
        self._lock = threading.Lock()
        self.results: dict[str, NodeResult] = {}

    # -- starting ---------------------------------------------------------------------------------
    @classmethod
    def start(cls, pipeline: Pipeline, store: MetadataStore, run_id: str | None, runner: str,
              progress: Progress) -> Session:
        """A new run: registered in the store, its lease taken by this process."""
        started = time.time()
        info = start_run(pipeline, store, run_id, runner)
        lease = Lease.acquire(store, info.run_id, 'run')
        progress.run_started(pipeline, info.run_id, store)
        return cls(pipeline, store, info.run_id, lease, progress, started=started)

    @classmethod
    def resume(cls, pipeline: Pipeline | None, run_id: str, store: MetadataStore, runner: str,
               progress: Progress, take_over: bool = False) -> Session:
        """An existing run, continued: the run's own settings, its lease (taken over if its holder is
        gone or silent), and the plan, printed before anything runs."""
        started = time.time()
        store.run(run_id)  # a clear error for an unknown run id
        pipeline = stored_pipeline(store, run_id, pipeline)
        lease = Lease.acquire(store, run_id, 'resume', take_over=take_over)
        try:
            steps = {s.node_id: s for s in plan(pipeline, store, run_id, lease.name)}
            progress.say(format_plan(run_id, pipeline, list(steps.values())))
            if not all(s.action == 'reuse' for s in steps.values()):
                store.update_run(run_id, {'resumed_at': time.time(), 'runner': runner})
        except BaseException:
            lease.release()
            raise
        return cls(pipeline, store, run_id, lease, progress, steps, started=started)

    @classmethod
    def open(cls, pipeline: Pipeline, store: MetadataStore, run_id: str, command: str) -> Session:
        """An existing run driven one node at a time (InteractiveContext): its lease, no plan."""
        return cls(pipeline, store, run_id, Lease.acquire(store, run_id, command), Progress(enabled=False))

    @classmethod
    def attach(cls, store_url: str, run_id: str, lease_name: str, reuse: dict[str, int]) -> Session:
        """The session of a run driven by another process, seen from one of its Beam workers."""
        store = MetadataStore(store_url)
        pipeline = stored_pipeline(store, run_id)
        steps = {node: Step(node, 'reuse', 'done earlier in this run', store.execution(ex_id))
                 for node, ex_id in reuse.items()}
        return cls(pipeline, store, run_id, Lease.attach(store, lease_name), Progress(enabled=False), steps)

    @property
    def complete_already(self) -> bool:
        return bool(self.steps) and all(s.action == 'reuse' for s in self.steps.values())

    def reuse_ids(self) -> dict[str, int]:
        return {n: s.execution.id for n, s in self.steps.items() if s.action == 'reuse' and s.execution}

    # -- one node ---------------------------------------------------------------------------------
    def node(self, component: Component, upstream: Sequence[NodeResult]) -> NodeResult:
        """Reuse, skip or launch one node, and report it."""
        step = self.steps.get(component.id)
        failed = [u.node_id for u in upstream if not u.ok]
        index, total = self.index.get(component.id, len(self.index) + 1), len(self.pipeline.components)
        if step is not None and step.action == 'reuse':
            result = reused(component, step)
        elif self.lease.lost_to:
            result = NodeResult(component.id, component.component_type, 'SKIPPED',
                                error=f'not run: the run was taken over by {self.lease.lost_to}')
        elif failed:
            result = skipped(component.id, component.component_type, failed)
        else:
            self.progress.node_started(index, total, component.id)
            result = launch(component, self.store, self.info, enable_cache=self.pipeline.enable_cache,
                            lease=self.lease)
        with self._lock:
            self.results[component.id] = result
        self.progress.node_finished(index, total, result)
        return result

    # -- ending -----------------------------------------------------------------------------------
    def finish(self, results: dict[str, NodeResult] | None = None) -> RunResult:
        """The run's result (nodes in topological order); releases the lease."""
        results = results if results is not None else self.results
        result = RunResult(self.run_id, self.pipeline.name, self.store.url)
        for component in self.pipeline.components:
            if component.id in results:
                result.nodes[component.id] = results[component.id]
            elif component.id in self.steps and self.steps[component.id].action == 'reuse':
                result.nodes[component.id] = reused(component, self.steps[component.id])
        result.lost_to = self.lease.lost_to
        self.lease.release()
        if self.complete_already:
            self.progress.say(f'Run {self.run_id} is already COMPLETE; nothing to resume.')
        else:
            self.progress.run_finished(result, time.time() - self.started)
        return result

    def __enter__(self) -> Session:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self.lease.release()
        if exc_type is KeyboardInterrupt:
            self.progress.say(f'\nInterrupted: run {self.run_id} stopped (the node that was running is recorded '
                              f'CANCELED; what finished is kept). Continue it with: sluice resume {self.run_id} '
                              f'--metadata {self.store.url}')


def reused(component: Component, step: Step) -> NodeResult:
    """A node taken as it was from an earlier attempt of the same run."""
    record = step.execution
    assert record is not None
    return NodeResult(step.node_id, component.component_type, record.state, execution_id=record.id,
                      outputs={k: v[0] for k, v in record.outputs.items() if v}, cache_key=record.cache_key,
                      reused=True)
