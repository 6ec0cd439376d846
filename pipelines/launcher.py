"""One launch of one component: driver -> executor -> publisher.

1. The driver resolves the inputs and computes the cache key. On a cache hit it records a CACHED
   execution pointing at the reused LIVE artifacts; otherwise it registers a RUNNING execution with
   INPUT events and creates the output directories.
2. The executor does the work (a heartbeat thread keeps the execution's heartbeat fresh).
3. The publisher marks the outputs LIVE and the execution COMPLETE in one transaction, or, if
   anything raised, removes the output directories and marks the execution FAILED.

Every runner (LocalDagRunner, BeamDagRunner, InteractiveContext) launches through ``launch``.
"""
from __future__ import annotations

import os
import signal
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from components.component import Component
from components.driver import InputError, PipelineInfo
from components.publisher import Publisher
from metadata.artifact import Artifact
from metadata.store import MetadataStore

HEARTBEAT_SECONDS = 15.0
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
    reused: bool = False  # taken as it was from an earlier attempt of the same run (resume)

    @property
    def ok(self) -> bool:
        return self.state in ('COMPLETE', 'CACHED')


@contextmanager
def _heartbeat(store: MetadataStore, execution_id: int, every: float) -> Iterator[None]:
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every):
            try:
                store.heartbeat(execution_id)
            except Exception:  # a missed beat must never break the executor
                pass

    thread = threading.Thread(target=beat, name=f'sluice-heartbeat-{execution_id}', daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def launch(component: Component, store: MetadataStore, pipeline: PipelineInfo,
           enable_cache: bool = True, heartbeat_seconds: float = HEARTBEAT_SECONDS) -> NodeResult:
    """Run one component through driver, executor and publisher; never raises for executor errors
    (the result says FAILED and why), but re-raises KeyboardInterrupt after recording CANCELED."""
    start = time.time()
    result = NodeResult(component.id, component.component_type, 'FAILED')
    driver = type(component).driver(component, store, pipeline)
    publisher = Publisher(store, pipeline, component.id)

    try:
        inputs = driver.resolve_inputs()
        key = driver.cache_key(inputs)
    except Exception as e:  # the driver could not even start: record why on a FAILED execution
        execution_id = store.register_execution(component.component_type, pipeline.name, pipeline.run_id,
                                                component.id, {}, {})
        message = _message(e)
        store.fail_execution(execution_id, type(e).__name__, message, traceback.format_exc())
        result.execution_id, result.error, result.duration = execution_id, message, time.time() - start
        return result
    result.cache_key = key

    if enable_cache:
        cached = driver.cached_outputs(key)
        if cached is not None:
            result.execution_id = store.record_cached_execution(
                component.component_type, pipeline.name, pipeline.run_id, component.id,
                {k: [a] for k, a in inputs.items() if a is not None}, {k: [a] for k, a in cached.items()},
                {'cache_key': key, 'component_version': component.version})
            result.state, result.outputs, result.duration = 'CACHED', cached, time.time() - start
            return result

    execution_id, outputs = driver.register(inputs, key)
    result.execution_id = execution_id
    try:
        driver.make_output_dirs(outputs)
    except Exception as e:  # leave directories we did not create alone
        result.error, result.duration = _message(e), time.time() - start
        store.fail_execution(execution_id, type(e).__name__, result.error)
        return result
    try:
        fault_point(component.id, 'start')
        executor = type(component).executor(beam_pipeline_args=pipeline.beam_pipeline_args,
                                            node_id=component.id)
        fault_point(component.id, 'executor')
        with _heartbeat(store, execution_id, heartbeat_seconds):
            executor.run(**inputs, **outputs, **driver.parameters())
        fault_point(component.id, 'publish')
        publisher.publish(execution_id, outputs)
        fault_point(component.id, 'published')
    except KeyboardInterrupt:
        publisher.fail(execution_id, outputs, 'KeyboardInterrupt', 'interrupted by the user', state='CANCELED')
        raise
    except BaseException as e:  # noqa: BLE001 - any executor failure is recorded, never published
        message = _message(e)
        publisher.fail(execution_id, outputs, type(e).__name__, message, traceback.format_exc())
        result.error, result.duration = message, time.time() - start
        return result
    result.state, result.outputs, result.duration = 'COMPLETE', outputs, time.time() - start
    return result


def _message(e: BaseException) -> str:
    text = str(e).strip()
    if isinstance(e, InputError):  # already says which node and input
        return text
    return f'{type(e).__name__}: {text}' if text else type(e).__name__
