"""One launch of one component: driver -> executor -> publisher.

1. The driver resolves the inputs and computes the cache key. On a cache hit it records a CACHED
   execution pointing at the reused LIVE artifacts; otherwise it registers a RUNNING execution with
   INPUT events and creates the output directories.
2. The executor does the work, with a scratch directory under the pipeline root.
3. The publisher marks the outputs LIVE and the execution COMPLETE in one transaction, or, if
   anything raised, removes the output directories and marks the execution FAILED. Both are fenced
   by the run's lease: an execution another process declared abandoned is never published.

Every runner goes through ``sluice.orchestration.core.Session``, which launches through ``launch``.
"""
from __future__ import annotations

import os
import shutil
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from sluice.components import beam_pool
from sluice.components.component import Component
from sluice.components.conditions import NodeSkipped
from sluice.components.driver import InputError, PipelineInfo, StaleCodeError
from sluice.components.executor import rows_in
from sluice.components.libraries import import_first
from sluice.components.publisher import Publisher, remove_outputs
from sluice.metadata.artifact import Artifact
from sluice.metadata.records import FencingError
from sluice.metadata.store import MetadataStore
from sluice.metadata import storage
from sluice.orchestration import isolated, staging
from sluice.orchestration.lease import LeaseLost
from sluice.components.retry import retryable

KILL_ENV = 'SLUICE_KILL_AT'


def fault_point(node_id: str, phase: str) -> None:
    """Fault injection for crash tests: ``SLUICE_KILL_AT=<node_id>:<phase>[:<seconds>]`` SIGKILLs this
    process at that point of that node's launch. Phases: ``start`` (execution registered, executor
    not started), ``executor`` (while the executor runs, after <seconds>, default 0.5, or as it returns
    if it returns sooner: the kill lands inside the node on a fast machine too), ``upload``
    (an object-store root: the first output uploaded, the others not), ``publish`` (executor done,
    outputs uploaded, before the publish), ``published`` (just after it)."""
    spec = os.environ.get(KILL_ENV)
    if not spec:
        return
    node, _, rest = spec.partition(':')
    wanted, _, delay = rest.partition(':')
    returned = phase == 'executor_returned'  # the executor beat the timer: kill before anything is published
    if node != node_id or wanted != ('executor' if returned else phase):
        return
    if phase == 'executor':
        timer = threading.Timer(float(delay or 0.5), os.kill, (os.getpid(), signal.SIGKILL))
        timer.daemon = True
        timer.start()
    else:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class NodeResult:
    """The outcome of one node in one run."""
    node_id: str
    component_type: str
    state: str  # COMPLETE | CACHED | FAILED | CANCELED | SKIPPED
    execution_id: int | None = None
    outputs: dict[str, Artifact] = field(default_factory=dict)
    error: str = ''
    duration: float = 0.0
    cache_key: str = ''
    reused: bool = False  # taken as it was from an earlier attempt of the same run (resume), or another run
    reused_from: str = ''  # the run it was taken from (a partial run: sluice run --from/--to/--only)
    attempt: int = 1
    attempts: int = 1  # how many the node's retry policy allows
    retryable: bool = True  # False when a retry cannot change the outcome (bad input, bad code, ...)
    by_condition: bool = False  # SKIPPED by a false condition (sluice.components.conditions): not a failure

    @property
    def ok(self) -> bool:
        return self.state in ('COMPLETE', 'CACHED') or self.by_condition


TMP_DIR = '.sluice-tmp'


def execution_tmp_dir(root: str, node_id: str, execution_id: int) -> str:
    """Scratch space of one execution (Beam and tf.Transform temp files, a Trainer's working_dir),
    under the pipeline root (under its local stand-in when the root is an object store:
    ``sluice.metadata.storage.local_dir``); removed when the execution ends, and by resume for abandoned ones."""
    return os.path.join(storage.local_dir(root), TMP_DIR, f'{node_id}-{execution_id}')


WITHDRAWN = 'its outputs were being deleted by sluice gc when this cache hit was recorded; the node ran instead'


def launch(component: Component, store: MetadataStore, pipeline: PipelineInfo,
           enable_cache: bool = True, lease: Any = None, attempt: int = 1,
           in_flight: InFlight | None = None, beside_others: Callable[[], bool] | None = None,
           hold: Callable[[], bool] | None = None) -> NodeResult:
    """Run one component through driver, executor and publisher; never raises for executor errors
    (the result says FAILED and why, and whether a retry could help), but re-raises KeyboardInterrupt
    after recording CANCELED. ``attempt`` is recorded on the execution (retries: sluice.orchestration.core). A
    component with ``timeout_seconds`` runs its executor in a process of its own (sluice.orchestration.isolated),
    stopped at the limit; so does a component whose class sets ``apart_when_parallel`` when, as its executor
    starts, other nodes are being launched (``beside_others()``: its executor's Python work would otherwise
    hold the GIL against theirs) and its input has at least ``apart_from_rows`` rows. That process is forked from the run's warm Beam pool when it has
    one (``beam_pool.fork_executor``).

    ``lease`` (a ``sluice.orchestration.lease.Lease``) fences the launch: it is checked before anything is
    recorded and just after the execution is registered, and publishing or failing the execution
    succeeds only while it is still RUNNING and this lease's (``pipeline.lease`` names it).

    ``in_flight`` (several nodes at once: sluice.orchestration.schedule) holds the launch while its
    executor runs, so that another thread can end it (``InFlight.cancel``).

    ``hold`` (the node's own lease, ``sluice.orchestration.core``) is called before the launch records
    anything but a CACHED execution: registering it to execute, skipping it, or failing its driver. It
    raises (LeaseHeld) when another process holds the node; nothing is recorded then; it returns True
    when it has just taken the lease, and the cache is then looked up again (the holder before may
    have completed the node). A cache hit records a CACHED execution without it, as true whoever
    records it (those outputs exist)."""
    steps = _Launch(component, store, pipeline, lease, attempt)
    steps.hold = hold or _nothing
    steps.beside_others = beside_others or _nothing
    ended = steps.drive()
    if ended is None and enable_cache:
        ended = steps.reuse_cached()
    if ended is None and steps.hold() and enable_cache:
        # The node's lease just taken: whoever held it before may have finished the node meanwhile
        # (a run-node task of this run), and the cache says so now.
        ended = steps.reuse_cached()
    if ended is None:
        ended = steps.register()
    if ended is not None:
        return ended
    if in_flight is None:
        return steps.execute_and_publish()
    if not in_flight.add(component.id, steps):  # cancelled while it was being registered
        return steps.cancelled(in_flight.reason)
    try:
        return steps.execute_and_publish()
    finally:
        in_flight.remove(component.id)


def _nothing() -> bool:
    return False


class InFlight:
    """The launches other threads are executing, and whether they were all cancelled (Ctrl-C): a
    launch registered after that is ended CANCELED before its executor starts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._launches: dict[str, _Launch] = {}
        self.reason = ''

    def add(self, node_id: str, steps: _Launch) -> bool:
        with self._lock:
            if self.reason:
                return False
            self._launches[node_id] = steps
            return True

    def remove(self, node_id: str) -> None:
        with self._lock:
            self._launches.pop(node_id, None)

    def cancel(self, reason: str) -> None:
        """End every launch in flight CANCELED now, and every one that registers from now on."""
        with self._lock:
            self.reason = reason
            launches = list(self._launches.values())
        for steps in launches:
            steps.cancelled(reason)


class _Launch:
    """One launch, step by step: ``drive`` (inputs and cache key), then on a cache hit
    ``reuse_cached``, otherwise ``register`` (a RUNNING execution and its directories) and
    ``execute_and_publish``. A step that ends the launch returns its result; None goes on."""

    def __init__(self, component: Component, store: MetadataStore, pipeline: PipelineInfo, lease: Any,
                 attempt: int) -> None:
        self.start = time.time()
        self.component, self.store, self.pipeline, self.lease, self.attempt = component, store, pipeline, lease, attempt
        self.result = NodeResult(component.id, component.component_type, 'FAILED')
        self.driver = type(component).driver(component, store, pipeline)
        self.driver.attempt = attempt
        self.publisher = Publisher(store, pipeline, component.id)
        self.fenced = pipeline.lease or None
        self.inputs: dict[str, Any] = {}
        self.key = ''
        self.execution_id = 0
        self.outputs: dict[str, Artifact] = {}
        self.tmp_dir = ''
        self.child: Any = None  # the executor's own process (timeout_seconds, apart), while it runs
        self.beside_others: Callable[[], bool] = _nothing  # other nodes being launched now (see launch)
        self.hold: Callable[[], bool] = _nothing  # the node's lease, taken before recording more than CACHED

    def drive(self) -> NodeResult | None:
        """Driver: resolve the inputs and compute the cache key; if it cannot even start, record why
        on a FAILED execution."""
        try:
            self._check_lease()
            self.inputs = self.driver.resolve_inputs()
            self.key = self.driver.cache_key(self.inputs)
        except LeaseLost as e:
            return self._lost(e)
        except NodeSkipped as e:
            return self._skip(str(e))
        except Exception as e:  # the driver could not even start: record why on a FAILED execution
            self.hold()
            c, p = self.component, self.pipeline
            execution_id = self.store.register_execution(
                c.component_type, p.name, p.run_id, c.id, {},
                {'attempt': self.attempt, **({'lease': self.fenced} if self.fenced else {})})
            message = _message(e)
            self.result.retryable = retryable(e)
            self.store.fail_execution(execution_id, type(e).__name__, message, traceback.format_exc(),
                                      lease=self.fenced)
            self.result.execution_id, self.result.error = execution_id, message
            self.result.duration = time.time() - self.start
            return self.result
        self.result.cache_key = self.key
        return None

    def _skip(self, reason: str) -> NodeResult:
        """A false condition (or an input from a skipped node): recorded as a COMPLETE execution
        without outputs whose ``skipped`` property says why, so the run completes and resume keeps it."""
        self.hold()
        c, p = self.component, self.pipeline
        self.result.execution_id = self.store.register_execution(
            c.component_type, p.name, p.run_id, c.id, {},
            {'attempt': self.attempt, 'skipped': reason, **({'lease': self.fenced} if self.fenced else {})})
        try:
            self.publisher.publish(self.result.execution_id, {})  # fenced: taken over meanwhile, nothing recorded
        except FencingError as e:
            self.result.state, self.result.error = 'CANCELED', str(e)
            return self.result
        self.result.state, self.result.error, self.result.by_condition = 'SKIPPED', reason, True
        self.result.duration = time.time() - self.start
        return self.result

    def reuse_cached(self) -> NodeResult | None:
        """Driver, cache hit: a CACHED execution pointing at the reused LIVE outputs (None on a miss)."""
        cached = self.driver.cached_outputs(self.key)
        if cached is None:
            return None
        try:  # recorded, then checked, as for a new execution: a takeover in between is seen
            self._check_lease()
        except LeaseLost as e:
            return self._lost(e)
        c, p = self.component, self.pipeline
        self.result.execution_id = self.store.record_cached_execution(
            c.component_type, p.name, p.run_id, c.id,
            {k: [a] for k, a in self.inputs.items() if a is not None}, {k: [a] for k, a in cached.items()},
            self.driver.key_properties(self.inputs, self.key))
        try:
            self._check_lease()
        except LeaseLost as e:  # the CACHED record stays (it is true: those outputs exist)
            return self._lost(e)
        if not self.store.all_live([a.id for a in cached.values()]):  # recorded, then checked: see sluice.ops.gc
            self.store.withdraw_cached_execution(self.result.execution_id, WITHDRAWN)
            self.result.execution_id = 0
            return None
        self.result.state, self.result.outputs, self.result.duration = 'CACHED', cached, time.time() - self.start
        return self.result

    def register(self) -> NodeResult | None:
        """Driver, cache miss: a RUNNING execution with INPUT events, its output and scratch directories."""
        self.hold()
        self.execution_id, self.outputs = self.driver.register(self.inputs, self.key)
        self.result.execution_id = self.execution_id
        self.tmp_dir = execution_tmp_dir(self.pipeline.root, self.component.id, self.execution_id)
        try:
            self._check_lease()  # registered, then checked: a takeover in between is seen by one of the two
            self.driver.make_output_dirs(self.outputs)
            os.makedirs(self.tmp_dir, exist_ok=True)
        except LeaseLost as e:
            _end_quietly(self.publisher, self.execution_id, self.outputs, 'LeaseLost', str(e), 'CANCELED')
            return self._lost(e)
        except Exception as e:  # leave directories we did not create alone
            self.result.error, self.result.duration = _message(e), time.time() - self.start
            _end_quietly(self.publisher, self.execution_id, {}, type(e).__name__, self.result.error, 'FAILED')
            return self.result
        return None

    def execute_and_publish(self) -> NodeResult:
        """Executor, then publisher: the outputs LIVE and the execution COMPLETE, or nothing published
        and the execution ended FAILED (CANCELED if interrupted or taken over). The scratch directory
        goes either way."""
        node_id = self.component.id
        try:
            fault_point(node_id, 'start')
            fault_point(node_id, 'executor')
            self._run_executor()
            fault_point(node_id, 'executor_returned')
            fault_point(node_id, 'publish')
            self.publisher.publish(self.execution_id, self.outputs)
            fault_point(node_id, 'published')
        except KeyboardInterrupt:
            _end_quietly(self.publisher, self.execution_id, self.outputs, 'KeyboardInterrupt',
                         'interrupted by the user', 'CANCELED')
            raise
        except FencingError as e:  # ended by another process meanwhile: publish nothing, touch nothing of theirs
            remove_outputs(self.outputs)
            self.result.state, self.result.error, self.result.duration = 'CANCELED', str(e), time.time() - self.start
            return self.result
        except BaseException as e:  # noqa: BLE001 - any executor failure is recorded, never published
            return self._failed(e)
        finally:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)
        self.result.state, self.result.outputs = 'COMPLETE', self.outputs
        self.result.duration = time.time() - self.start
        return self.result

    def _child_started(self, child: Any) -> None:
        self.child = child

    def cancelled(self, message: str) -> NodeResult:
        """End this launch CANCELED from another thread (Ctrl-C while several nodes run): the fenced
        state first, so that an execution its thread has just published keeps its outputs; then its
        outputs and scratch space go, and whatever its thread does next is fenced off."""
        try:
            self.store.fail_execution(self.execution_id, 'KeyboardInterrupt', message, '', 'CANCELED',
                                      lease=self.pipeline.lease or None)
        except FencingError:  # ended meanwhile (published, failed, taken over): not ours to touch
            pass
        else:
            if self.child is not None:  # its own process (with_timeout) would outlive this one
                isolated.stop(self.child)
            remove_outputs(self.outputs)
            shutil.rmtree(self.tmp_dir, ignore_errors=True)
        self.result.state, self.result.error, self.result.duration = 'CANCELED', message, time.time() - self.start
        return self.result

    def _run_executor(self) -> None:
        component, pipeline = self.component, self.pipeline
        with staging.staged(self.inputs, self.outputs, self.tmp_dir,
                            lambda: fault_point(component.id, 'upload')) as (inputs, outputs):
            rows = rows_in(inputs)
            if getattr(component, 'timeout_seconds', None) or runs_apart(type(component), self.beside_others(), rows):
                isolated.run(type(component).executor, {**inputs, **outputs, **self.driver.parameters()},
                             pipeline.beam_pipeline_args, self.tmp_dir, component.id,
                             getattr(component, 'timeout_seconds', None), started=self._child_started, rows=rows)
            else:
                beam_pool.prestart(pipeline.beam_pipeline_args, rows)  # worker processes asked for: start them now
                executor = type(component).executor(beam_pipeline_args=pipeline.beam_pipeline_args,
                                                    tmp_dir=self.tmp_dir, node_id=component.id)
                executor.input_rows = rows
                if executor.imports:  # the warm pool's zygote, if this process has one, imports them meanwhile
                    beam_pool.warm_up()
                import_first(executor.imports)
                executor.run(**inputs, **outputs, **self.driver.parameters())

    def _failed(self, e: BaseException) -> NodeResult:
        """The executor (or the publish) raised: the execution FAILED with the error recorded."""
        try:  # the work may have failed because another process took the run over meanwhile
            self._check_lease()
        except LeaseLost as lost:
            remove_outputs(self.outputs)
            return self._lost(lost)
        message = _message(e)
        _end_quietly(self.publisher, self.execution_id, self.outputs, getattr(e, 'type_name', type(e).__name__),
                     message, 'FAILED', getattr(e, 'details', '') or traceback.format_exc())
        self.result.error, self.result.duration, self.result.retryable = message, time.time() - self.start, retryable(e)
        return self.result

    def _check_lease(self) -> None:
        """LeaseLost if another process took the run over (nothing to check without a lease)."""
        if self.lease is not None:
            self.lease.check()

    def _lost(self, error: Exception) -> NodeResult:
        self.result.state, self.result.error, self.result.duration = 'CANCELED', str(error), time.time() - self.start
        return self.result


def runs_apart(component_cls: type, beside_others: bool, rows: int | None) -> bool:
    """Whether an executor runs in a process of its own with other nodes being launched beside it: its
    class sets ``apart_when_parallel`` and its input has at least ``apart_from_rows`` rows (None: not known)."""
    return beside_others and component_cls.apart_when_parallel and (rows or 0) >= component_cls.apart_from_rows


def _end_quietly(publisher: Publisher, execution_id: int, outputs: dict[str, Artifact], error_type: str,
                 message: str, state: str, details: str = '') -> None:
    """Fail an execution; if another process already ended it (fencing), only remove our outputs."""
    try:
        publisher.fail(execution_id, outputs, error_type, message, details, state=state)
    except FencingError:
        remove_outputs(outputs)


def _message(e: BaseException) -> str:
    text = str(e).strip()
    if isinstance(e, (InputError, StaleCodeError, isolated.NodeTimeout)):  # already say which node
        return text
    name = getattr(e, 'type_name', type(e).__name__)
    return f'{name}: {text}' if text else name
