"""The one orchestration core: every way of running nodes goes through a Session.

A Session is a run being driven by this process. It

1. holds the run's **lease** in ML-Metadata (who drives the run: pid, host, command, heartbeat), so
   only one live process drives a run at a time; a lease whose holder is gone or silent is taken
   over, and a process that lost its lease can no longer publish anything (fencing);
2. knows the **plan**: for each node, reuse (done earlier in this run, or in an earlier run for a
   partial run), run, or leave alone (not selected), and why;
3. **launches** nodes through the launcher (driver -> executor -> publisher), fenced by the lease,
   and tries a failed node again as its retry policy allows (each attempt its own execution).

Runners only schedule: LocalDagRunner calls ``session.node`` for each node once its upstream nodes
have ended, several at once (sluice.orchestration.schedule), BeamDagRunner from Beam DoFns,
InteractiveContext one component at a time. Nothing else decides what a launch does.
"""
from __future__ import annotations

import contextlib
import json
import shlex
import threading
import time
from typing import Any, Callable, Sequence

from sluice.components.component import Component
from sluice.components.driver import PipelineInfo
from sluice.metadata.records import DONE_STATES, MetadataStoreError, latest_per_node
from sluice.metadata.store import MetadataStore
from sluice.orchestration import partial
from sluice.observe import after_run, before_run, start_report
from sluice.observe.trace import TRACE_PROPERTY, RunTrace
from sluice.orchestration.launcher import InFlight, NodeResult, launch
from sluice.orchestration.lease import Lease, LeaseHeld
from sluice.dsl.pipeline import Pipeline, PipelineError
from sluice.orchestration.resume import Step, format_plan, plan, settle_stale, stored_pipeline
from sluice.orchestration.run import Progress, RunResult, skipped, start_run

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
        self.retries = True  # False when the caller retries (an Airflow or KFP task: sluice run-node --no-retry)
        self.trace: RunTrace | None = None  # this process's spans of the run (sluice.observe.trace)
        self.outcome = ''  # how this process's part of the run ended, for its span
        self.ended = ''  # the run's state once finish() has it: a Ctrl-C after that stops nothing
        self.in_flight = InFlight()  # the launches whose executors run, for Ctrl-C with several nodes at once
        self.parallel = 1  # how many nodes may run at once (sluice.orchestration.schedule sets it)
        self.launched = 0  # nodes being launched now (several at once: a node's executor may run apart)

    # -- starting ---------------------------------------------------------------------------------
    @classmethod
    def start(cls, pipeline: Pipeline, store: MetadataStore, run_id: str | None, runner: str,
              progress: Progress, selected: set[str] | None = None) -> Session:
        """A new run: registered in the store, its lease taken by this process.

        ``selected`` (``Pipeline.select``) makes it a partial run: only those nodes run; each node
        they consume from is recorded in this run as reused from the newest earlier run of the
        pipeline where it succeeded (a CACHED execution pointing at those LIVE outputs); the other
        nodes are left alone (the run stays INCOMPLETE; ``sluice resume`` would not run them)."""
        started = time.time()
        before_run()
        providers, notes = partial.providers(pipeline, store, selected) if selected is not None else ({}, {})
        trace = RunTrace.new_context()  # stored with the run, then this process's span (handed over, not read back)
        info = start_run(pipeline, store, run_id, runner, trace)
        lease = Lease.acquire(store, info.run_id, 'run')
        steps: dict[str, Step] = {}
        try:
            if selected is not None:
                store.update_run(info.run_id, {'selected_nodes': json.dumps(sorted(selected))})
                for node_id, record in providers.items():
                    steps[node_id] = partial.record_reuse(store, pipeline, info.run_id, record, notes.get(node_id))
                steps.update({c.id: Step(c.id, 'skip', 'not selected') for c in pipeline.components
                              if c.id not in selected and c.id not in providers})
        except BaseException:
            lease.release()
            raise
        progress.run_started(pipeline, info.run_id, store)
        for line in partial.describe(steps):
            progress.say(line)
        return cls(pipeline, store, info.run_id, lease, progress, steps, started=started).traced(
            f'sluice run {pipeline.name}', registered=True, context=trace.get(TRACE_PROPERTY))

    @classmethod
    def for_node(cls, pipeline: Pipeline, store: MetadataStore, run_id: str, node_id: str,
                 progress: Progress, attempt: int | None = None) -> Session:
        """One node of a run, driven by this process (``sluice run-node``): the run is created on first
        use (by whichever node comes first), the node holds a lease of its own (``RUN_ID/NODE``), its
        upstream nodes must have succeeded in this run, and a node already done is reused."""
        component = pipeline.node(node_id)  # a clear error for an unknown node
        before_run()
        try:
            store.run(run_id)
        except MetadataStoreError:
            try:
                start_run(pipeline, store, run_id, 'run-node')
            except MetadataStoreError as e:  # another node's process created it at the same moment
                if 'already exists' not in str(e):
                    raise
        pipeline = stored_pipeline(store, run_id, pipeline)
        lease = Lease.acquire(store, f'{run_id}/{node_id}', 'run-node', attempt=attempt)
        try:
            latest = latest_per_node(store.executions(run_id))
            steps: dict[str, Step] = {}
            record = latest.get(node_id)
            if record is not None:
                record = settle_stale(store, pipeline, run_id, record, lease.name, then='run it again')
            if record is not None and record.state in DONE_STATES and all(
                    a.exists() for group in record.outputs.values() for a in group):
                steps[node_id] = Step(node_id, 'reuse', f'{record.state} in this run already', record)
            missing = [u.id for u in component.upstream
                       if latest.get(u.id) is None or latest[u.id].state not in DONE_STATES]
            if missing and node_id not in steps:
                states = ', '.join(f"{u} ({latest[u].state if u in latest else 'never started'})" for u in missing)
                raise PipelineError(
                    f'{node_id} needs {states} to have completed in run {run_id} first; run '
                    + '; '.join(f'sluice run-node {pipeline.source_file or "FILE.py"} --run-id {run_id} --node {u}'
                                for u in missing) + '.')
        except BaseException:
            lease.release()
            raise
        return cls(pipeline, store, run_id, lease, progress, steps).traced(f'sluice run-node {node_id}')

    @classmethod
    def resume(cls, pipeline: Pipeline | None, run_id: str, store: MetadataStore, runner: str,
               progress: Progress, take_over: bool = False) -> Session:
        """An existing run, continued: the run's own settings, its lease (taken over if its holder is
        gone or silent), and the plan, printed before anything runs."""
        started = time.time()
        before_run()
        store.run(run_id)  # a clear error for an unknown run id
        pipeline = stored_pipeline(store, run_id, pipeline, say=progress.say)
        lease = Lease.acquire(store, run_id, 'resume', take_over=take_over)
        try:
            steps = {s.node_id: s for s in plan(pipeline, store, run_id, lease.name)}
            selected = store.run(run_id).properties.get('selected_nodes')
            if selected:  # a partial run: its unselected nodes stay unselected
                chosen = set(json.loads(selected))
                steps.update({n: Step(n, 'skip', 'not selected in this run') for n, s in steps.items()
                              if n not in chosen and s.action == 'run' and s.execution is None})
            progress.say(format_plan(run_id, pipeline, list(steps.values())))
            if not all(s.action == 'reuse' for s in steps.values()):
                store.update_run(run_id, {'resumed_at': time.time(), 'runner': runner})
        except BaseException:
            lease.release()
            raise
        return cls(pipeline, store, run_id, lease, progress, steps, started=started).traced('sluice resume')

    @classmethod
    def open(cls, pipeline: Pipeline, store: MetadataStore, run_id: str, command: str) -> Session:
        """An existing run driven one node at a time (InteractiveContext): its lease, no plan."""
        return cls(pipeline, store, run_id, Lease.acquire(store, run_id, command), Progress(enabled=False))

    @classmethod
    def attach(cls, store_url: str, run_id: str, lease_name: str, plan: dict[str, Any]) -> Session:
        """The session of a run driven by another process, seen from one of its Beam workers; ``plan``
        is that session's ``shared_plan()``."""
        store = MetadataStore(store_url)
        pipeline = stored_pipeline(store, run_id)
        steps = {node: Step(node, 'reuse', 'done earlier in this run', store.execution(ex_id))
                 for node, ex_id in plan['reuse'].items()}
        steps.update({node: Step(node, 'skip', reason) for node, reason in plan['skip'].items()})
        # A Beam worker's node spans hang off the run's span itself: a worker has no end of its own to report.
        return cls(pipeline, store, run_id, Lease.attach(store, lease_name), Progress(enabled=False), steps).traced(
            None)

    def traced(self, name: str | None, registered: bool = False, context: str | None = None) -> Session:
        """Opens this process's span of the run, ``name`` (see sluice.observe.trace); ``registered``:
        this process registered the run (with the span's context, ``RunTrace.new_context``: ``context``)."""
        self.trace = RunTrace.begin(self.store, self.run_id, self.pipeline.pipeline_root, self.pipeline.name, name,
                                    registered, context)
        return self

    @property
    def complete_already(self) -> bool:
        """Does the plan leave nothing to launch (every node reused or not selected)?"""
        return all(c.id in self.steps and self.steps[c.id].action in ('reuse', 'skip') for c in self.pipeline.components)

    def shared_plan(self) -> dict[str, Any]:
        """The plan's decisions a process launching nodes for this session needs (a Beam worker:
        ``attach``): the executions reused and the nodes left alone, so that it runs what this one would."""
        return {'reuse': {n: s.execution.id for n, s in self.steps.items() if s.action == 'reuse' and s.execution},
                'skip': {n: s.reason for n, s in self.steps.items() if s.action == 'skip'}}

    # -- one node ---------------------------------------------------------------------------------
    def node(self, component: Component, upstream: Sequence[NodeResult]) -> NodeResult:
        """Reuse, skip or launch one node, and report it."""
        step = self.steps.get(component.id)
        failed = [u.node_id for u in upstream if not u.ok]
        index, total = self.index.get(component.id, len(self.index) + 1), len(self.pipeline.components)
        if step is not None and step.action == 'skip':
            self.progress.say(f'[{index}/{total}] {component.id:<20} not selected')
            return NodeResult(component.id, component.component_type, 'SKIPPED', error='not selected')
        if step is not None and step.action == 'reuse':
            result = reused(component, step)
        elif self.lease.lost_to:
            result = NodeResult(component.id, component.component_type, 'SKIPPED',
                                error=f'not run: the run was taken over by {self.lease.lost_to}')
        elif failed:
            result = skipped(component.id, component.component_type, failed)
        else:
            self.progress.node_started(index, total, component.id)
            with self._lock:
                self.launched += 1
            try:
                result = self._launch_held(component, index, total)
            finally:
                with self._lock:
                    self.launched -= 1
        with self._lock:
            self.results[component.id] = result
        self.progress.node_finished(index, total, result)
        return result

    def _launch_held(self, component: Component, index: int, total: int) -> NodeResult:
        """Launch a node under its own lease (``RUN_ID/NODE``) as well as the run's: the lease that
        ``sluice run-node`` takes, so whichever ways a run is driven at once (a resume, an orchestrator's
        tasks), a node executes under one holder at a time. It is taken when the launch first records
        more than a cache hit (``launch``'s ``hold``): a fully cached node costs no lease."""
        if self.lease.name.rpartition('@')[0] != self.run_id:  # run-node: the session's lease is the node's
            return self._launch(component, index, total)
        scope, held = f'{self.run_id}/{component.id}', []

        def hold() -> bool:
            """Take the node's lease unless held already; True when taken now."""
            if held:
                return False
            command = self.lease.record.owner.get('command') or 'run'
            # The process this one took the run over from (--take-over) loses its nodes' leases with it.
            before, node = getattr(self.lease, 'previous', None), self.store.lease_latest(scope)
            take_over = before is not None and node is not None and all(
                node.owner.get(k) == before.owner.get(k) for k in ('pid', 'pid_start', 'host', 'boot_id'))
            held.append(Lease.acquire(self.store, scope, command, take_over=take_over))
            return True

        try:
            return self._launch(component, index, total, hold)
        finally:
            for lease in held:
                lease.release()

    def _others_launched(self) -> bool:
        """Whether other nodes are being launched beside the one asking (as its executor starts)."""
        return self.launched > 1

    def _launch(self, component: Component, index: int, total: int,
                hold: Callable[[], bool] | None = None) -> NodeResult:
        """Launch a node; while it fails with an error a retry could fix, wait as its retry policy
        says and launch it again (a new execution per attempt)."""
        policy = self.pipeline.retry_for(component) if self.retries else None
        attempts = policy.attempts if policy is not None else 1
        started, attempt = time.time(), 1
        while True:
            with self._span(component.id, attempt) as span:
                try:
                    result = launch(component, self.store, self.info, enable_cache=self.pipeline.cache_for(component),
                                    lease=self.lease, attempt=attempt, in_flight=self.in_flight,
                                    beside_others=self._others_launched, hold=hold)
                except LeaseHeld as e:  # another process holds the node: nothing recorded, nothing to retry
                    result = NodeResult(component.id, component.component_type, 'FAILED',
                                        error=f'{type(e).__name__}: {e}')
                    result.retryable = False
                    held_elsewhere = True
                else:
                    held_elsewhere = False
                span.update(state=result.state, error=result.error)
            result.attempt, result.attempts = attempt, attempts
            if result.state != 'FAILED' or attempt >= attempts or held_elsewhere:
                break
            if not result.retryable:
                result.error += ' (not retried: with the same input and code it would fail the same way)'
                break
            attempt += 1
            wait = policy.wait_before(attempt)
            self.progress.say(f'[{index}/{total}] {component.id} attempt {attempt - 1}/{attempts} FAILED after '
                              f'{result.duration:.1f}s: {result.error}; retrying in {wait:.1f}s')
            lost = self._wait(wait)
            if lost:
                result = NodeResult(component.id, component.component_type, 'CANCELED', error=lost)
                break
            self.progress.say(f'[{index}/{total}] {component.id} attempt {attempt}/{attempts} running ...')
        if attempt > 1 and result.state == 'FAILED':
            result.error = f'{result.error} (attempt {attempt} of {attempts})'
        result.duration = time.time() - started
        return result

    def cancel_in_flight(self, message: str) -> None:
        """End the executions other threads are running CANCELED, and any they register from now on
        (Ctrl-C in the scheduling thread)."""
        self.in_flight.cancel(message)

    def _span(self, node_id: str, attempt: int) -> Any:
        return self.trace.node(node_id, attempt) if self.trace is not None else contextlib.nullcontext({})

    def _wait(self, seconds: float) -> str:
        """Sleep between attempts, still holding the lease; '' or why the run was lost meanwhile."""
        end, checked = time.monotonic() + seconds, time.monotonic()
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(left, 0.2))
            if time.monotonic() - checked >= 1.0:
                checked = time.monotonic()
                try:
                    self.lease.check()
                except Exception as e:  # noqa: BLE001 - LeaseLost: stop retrying, publish nothing
                    return str(e)
        return ''

    # -- ending -----------------------------------------------------------------------------------
    def finish(self, results: dict[str, NodeResult] | None = None) -> RunResult:
        """The run's result (nodes in topological order); releases the lease."""
        results = results if results is not None else self.results
        result = RunResult(self.run_id, self.pipeline.name, self.store.url)
        for component in self.pipeline.components:
            if self.steps.get(component.id) and self.steps[component.id].action == 'skip':
                continue  # not selected (a partial run): not part of this run's outcome
            if component.id in results:
                result.nodes[component.id] = results[component.id]
            elif component.id in self.steps and self.steps[component.id].action == 'reuse':
                result.nodes[component.id] = reused(component, self.steps[component.id])
        result.lost_to = self.lease.lost_to
        self.outcome = self.ended = result.state
        # The run's figures read and sent (sluice.observe) while this process still holds the lease: the
        # Pushgateway takes the push in while the lease is released. Taken over: the process that took
        # it reports the run's end.
        report = None if self.complete_already or result.lost_to else start_report(self.store, self.run_id)
        self.lease.release()
        if self.complete_already:
            self.progress.say(f'Run {self.run_id} is already COMPLETE; nothing to resume.')
        else:
            self.progress.run_finished(result, time.time() - self.started, self.store)
            if report is not None:
                after_run(self.pipeline, self.store, result, self.progress.say, report=report)
        return result

    def node_task_ended(self, node: NodeResult) -> None:
        """A ``run-node`` task ended: the run's figures, as the store has them, are exported; its
        callbacks are called when this node failed, or when it was the run's last one to finish."""
        self.outcome = node.state
        result = RunResult(self.run_id, self.pipeline.name, self.store.url)
        try:
            run = self.store.run(self.run_id)
            ended = run.state == 'COMPLETE'
            for node_id, ex in run.latest().items():
                result.nodes[node_id] = NodeResult(node_id, ex.component_type, ex.state, execution_id=ex.id,
                                                   error=ex.error)
        except Exception as e:  # noqa: BLE001 - the node's outcome stands; its report is what is lost
            self.progress.say(f'Note: run {self.run_id} could not be read to report its end: {e} (the run is not '
                              'affected).')
            return
        result.nodes[node.node_id] = node
        after_run(self.pipeline, self.store, result, self.progress.say, ended=ended,
                  failed=node.state == 'FAILED')

    def __enter__(self) -> Session:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self.lease.release()
        if self.trace is not None:
            self.trace.end('INTERRUPTED' if exc_type is KeyboardInterrupt else self.outcome or
                           ('FAILED' if exc_type is not None else 'DONE'))
            self.trace = None
        if exc_type is KeyboardInterrupt and self.ended:  # while its end was being reported
            self.progress.say(f'\nInterrupted after run {self.run_id} ended {self.ended}: nothing was stopped '
                              '(notices and exports of its end may be missing).')
        elif exc_type is KeyboardInterrupt:
            self.progress.say(f'\nInterrupted: run {self.run_id} stopped (the node that was running is recorded '
                              f'CANCELED; what finished is kept). Continue it with: sluice resume {self.run_id} '
                              f'--metadata {shlex.quote(self.store.url)}')


def reused(component: Component, step: Step) -> NodeResult:
    """A node taken as it was from an earlier attempt of the same run (or from an earlier run)."""
    record = step.execution
    assert record is not None
    if record.properties.get('skipped'):  # by a false condition: still skipped, for the same reason
        return NodeResult(step.node_id, component.component_type, 'SKIPPED', execution_id=record.id,
                          error=record.properties['skipped'], reused=True, by_condition=True)
    return NodeResult(step.node_id, component.component_type, record.state, execution_id=record.id,
                      outputs={k: v[0] for k, v in record.outputs.items() if v}, cache_key=record.cache_key,
                      reused=True, reused_from=record.properties.get('reused_from_run', ''))


