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
from typing import Any

from sluice.components.component import Component
from sluice.components.driver import InputError, PipelineInfo, StaleCodeError
from sluice.components.publisher import Publisher, remove_outputs
from sluice.metadata.artifact import Artifact
from sluice.metadata.store import FencingError, MetadataStore
from sluice.orchestration import isolated
from sluice.orchestration.lease import LeaseLost
from sluice.components.retry import retryable

KILL_ENV = 'SLUICE_KILL_AT'


def fault_point(node_id: str, phase: str) -> None:
    """Fault injection for crash tests: ``SLUICE_KILL_AT=<node_id>:<phase>[:<seconds>]`` SIGKILLs this
    process at that point of that node's launch. Phases: ``start`` (execution registered, executor
    not started), ``executor`` (while the executor runs, after <seconds>, default 0.5), ``publish``
    (executor done, before the publish), ``published`` (just after it)."""
    spec = os.environ.get(KILL_ENV)
    if not spec:
        return
    node, _, rest = spec.partition(':')
    wanted, _, delay = rest.partition(':')
    if node != node_id or wanted != phase:
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

    @property
    def ok(self) -> bool:
        return self.state in ('COMPLETE', 'CACHED')


TMP_DIR = '.sluice-tmp'


def execution_tmp_dir(root: str, node_id: str, execution_id: int) -> str:
    """Scratch space of one execution (Beam and tf.Transform temp files, a Trainer's working_dir),
    under the pipeline root; removed when the execution ends, and by resume for abandoned ones."""
    return os.path.join(root, TMP_DIR, f'{node_id}-{execution_id}')


def launch(component: Component, store: MetadataStore, pipeline: PipelineInfo,
           enable_cache: bool = True, lease: Any = None, attempt: int = 1) -> NodeResult:
    """Run one component through driver, executor and publisher; never raises for executor errors
    (the result says FAILED and why, and whether a retry could help), but re-raises KeyboardInterrupt
    after recording CANCELED. ``attempt`` is recorded on the execution (retries: sluice.orchestration.core). A
    component with ``timeout_seconds`` runs its executor in a process of its own (sluice.orchestration.isolated),
    stopped at the limit.

    ``lease`` (a ``sluice.orchestration.core.Lease``) fences the launch: it is checked before anything is
    recorded and just after the execution is registered, and publishing or failing the execution
    succeeds only while it is still RUNNING and this lease's (``pipeline.lease`` names it)."""
    start = time.time()
    result = NodeResult(component.id, component.component_type, 'FAILED')
    driver = type(component).driver(component, store, pipeline)
    driver.attempt = attempt
    publisher = Publisher(store, pipeline, component.id)
    fenced = pipeline.lease or None

    try:
        if lease is not None:
            lease.check()
        inputs = driver.resolve_inputs()
        key = driver.cache_key(inputs)
    except LeaseLost as e:
        return _lost(result, e, start)
    except Exception as e:  # the driver could not even start: record why on a FAILED execution
        execution_id = store.register_execution(component.component_type, pipeline.name, pipeline.run_id,
                                                component.id, {}, {'attempt': attempt, **({'lease': fenced} if fenced else {})})
        message = _message(e)
        result.retryable = retryable(e)
        store.fail_execution(execution_id, type(e).__name__, message, traceback.format_exc(), lease=fenced)
        result.execution_id, result.error, result.duration = execution_id, message, time.time() - start
        return result
    result.cache_key = key

    if enable_cache:
        cached = driver.cached_outputs(key)
        if cached is not None:
            try:  # recorded, then checked, as for a new execution: a takeover in between is seen
                if lease is not None:
                    lease.check()
            except LeaseLost as e:
                return _lost(result, e, start)
            result.execution_id = store.record_cached_execution(
                component.component_type, pipeline.name, pipeline.run_id, component.id,
                {k: [a] for k, a in inputs.items() if a is not None}, {k: [a] for k, a in cached.items()},
                driver.key_properties(inputs, key))
            if lease is not None:
                try:
                    lease.check()
                except LeaseLost as e:  # the CACHED record stays (it is true: those outputs exist)
                    return _lost(result, e, start)
            result.state, result.outputs, result.duration = 'CACHED', cached, time.time() - start
            return result

    execution_id, outputs = driver.register(inputs, key)
    result.execution_id = execution_id
    tmp_dir = execution_tmp_dir(pipeline.root, component.id, execution_id)
    try:
        if lease is not None:  # registered, then checked: a takeover in between is seen by one of the two
            lease.check()
        driver.make_output_dirs(outputs)
        os.makedirs(tmp_dir, exist_ok=True)
    except LeaseLost as e:
        _end_quietly(publisher, execution_id, outputs, 'LeaseLost', str(e), 'CANCELED')
        return _lost(result, e, start)
    except Exception as e:  # leave directories we did not create alone
        result.error, result.duration = _message(e), time.time() - start
        _end_quietly(publisher, execution_id, {}, type(e).__name__, result.error, 'FAILED')
        return result
    try:
        fault_point(component.id, 'start')
        fault_point(component.id, 'executor')
        if getattr(component, 'timeout_seconds', None):
            isolated.run(type(component).executor, {**inputs, **outputs, **driver.parameters()},
                         pipeline.beam_pipeline_args, tmp_dir, component.id, component.timeout_seconds)
        else:
            executor = type(component).executor(beam_pipeline_args=pipeline.beam_pipeline_args,
                                                tmp_dir=tmp_dir, node_id=component.id)
            executor.run(**inputs, **outputs, **driver.parameters())
        fault_point(component.id, 'publish')
        publisher.publish(execution_id, outputs)
        fault_point(component.id, 'published')
    except KeyboardInterrupt:
        _end_quietly(publisher, execution_id, outputs, 'KeyboardInterrupt', 'interrupted by the user', 'CANCELED')
        raise
    except FencingError as e:  # ended by another process meanwhile: publish nothing, touch nothing of theirs
        remove_outputs(outputs)
        result.state, result.error, result.duration = 'CANCELED', str(e), time.time() - start
        return result
    except BaseException as e:  # noqa: BLE001 - any executor failure is recorded, never published
        if lease is not None:
            try:  # the work may have failed because another process took the run over meanwhile
                lease.check()
            except LeaseLost as lost:
                remove_outputs(outputs)
                return _lost(result, lost, start)
        message = _message(e)
        _end_quietly(publisher, execution_id, outputs, getattr(e, 'type_name', type(e).__name__), message, 'FAILED',
                     getattr(e, 'details', '') or traceback.format_exc())
        result.error, result.duration, result.retryable = message, time.time() - start, retryable(e)
        return result
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    result.state, result.outputs, result.duration = 'COMPLETE', outputs, time.time() - start
    return result


def _end_quietly(publisher: Publisher, execution_id: int, outputs: dict[str, Artifact], error_type: str,
                 message: str, state: str, details: str = '') -> None:
    """Fail an execution; if another process already ended it (fencing), only remove our outputs."""
    try:
        publisher.fail(execution_id, outputs, error_type, message, details, state=state)
    except FencingError:
        remove_outputs(outputs)


def _lost(result: NodeResult, error: Exception, start: float) -> NodeResult:
    result.state, result.error, result.duration = 'CANCELED', str(error), time.time() - start
    return result


def _message(e: BaseException) -> str:
    text = str(e).strip()
    if isinstance(e, (InputError, StaleCodeError, isolated.NodeTimeout)):  # already say which node
        return text
    name = getattr(e, 'type_name', type(e).__name__)
    return f'{name}: {text}' if text else name
