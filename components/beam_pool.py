"""A warm pool of Beam SDK worker processes, shared by every Beam pipeline this process runs.

With ``--direct_running_mode=multi_processing --direct_num_workers=N``, Beam's DirectRunner starts N
new worker processes for every Beam pipeline, and each imports TensorFlow, tfx_bsl, TFDV and
tf.Transform again: about 3 s to start and 2.6 s to import per pipeline on a small machine, several
times per node (``bench/README.md``). Sluice runs those pipelines on the same runner (Beam's
FnApiRunner, which DirectRunner uses) with an EXTERNAL environment instead: N worker processes
started once, the first time a pipeline asks for them, importing those libraries while idle,
and kept for every later pipeline of the process: every node of a run, every run of a
``sluice watch``. Each process hosts one SDK harness per pipeline (a thread, as Beam's own worker
pool does in its thread mode); the pipeline, its options and its functions reach the worker as they
would reach a fresh one.

What must never happen is a worker running a user's code as it was before an edit. Code shipped
with the pipeline (pickled by value) is always the new one; a module a worker imported by name stays
in that process. So before taking a pipeline, a worker checks every module it holds that is not
part of Python or an installed library: if one's file changed since it could have been imported, or
is gone, the worker is replaced by a fresh process (which costs the start-up this pool saves, once).

A pipeline that reads fewer than MIN_ROWS rows runs in this process instead: for it, the pool's
start and the trips between processes cost more than sharing the work saves.

The workers end with this process: when it exits, and, if it is killed, as soon as they see their
standard input closed (their side: ``sluice.components.beam_pool_worker``). A worker imports the
heavy libraries only while it has no pipeline to run, and a pipeline that arrives meanwhile waits
for the import to end: Python hands a thread that meets another's import of a package with circular
imports the half-initialized module ("cannot import name 'AnalyzeAndTransformDataset' from
partially initialized module", seen in CI when this process imported tf.Transform in a thread while
a node's executor did). In this process, executors import them one node at a time
(``Executor.imports``). ``SLUICE_BEAM_WORKER_POOL=0`` turns the pool off (Beam's own worker
processes per pipeline), for comparison.
"""
from __future__ import annotations

import atexit
import logging
import os
import subprocess
import sys
import threading
from typing import Any

log = logging.getLogger(__name__)

RUNNER = f'{__name__}.WarmPoolRunner'
OFF_ENV = 'SLUICE_BEAM_WORKER_POOL'
STALE = 'sluice-stale-worker: '
_SYS_PATH_ENV = 'SLUICE_POOL_SYS_PATH'
_PORT_LINE = b'sluice-pool-port '
# Modules that libraries write and import as they run (TensorFlow's AutoGraph): new files, not edits.
_GENERATED = ('__autograph_generated_file',)


# Fewer rows than this in a Beam pipeline's input, and it runs in this process even when several
# worker processes are asked for: starting the pool (each worker importing TensorFlow) and moving
# the rows between processes cost more than sharing the work saves. On the 2-core machine, taxi
# data components with two workers took 1.14x one worker's time at 15,000 rows, 1.24x at 45,000 and
# 0.86x at 150,000 (bench/beam_workers.py, bench/README.md). SLUICE_POOL_MIN_ROWS sets it (0: always).
MIN_ROWS_ENV, MIN_ROWS = 'SLUICE_POOL_MIN_ROWS', 100_000


def rewrite_options(options: Any, rows: int | None = None) -> Any:
    """``options`` (Beam PipelineOptions) to run on the warm pool when they ask DirectRunner for
    several worker processes and the pool is not turned off; in this process instead when the
    pipeline reads fewer than MIN_ROWS ``rows`` (None: not known, the pool); otherwise unchanged."""
    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

    standard, direct = options.view_as(StandardOptions), options.view_as(DirectOptions)
    if os.environ.get(OFF_ENV, '1') == '0' or direct.direct_running_mode != 'multi_processing':
        return options
    if standard.runner not in (None, 'DirectRunner', 'direct', 'Direct'):
        return options
    least = int(os.environ.get(MIN_ROWS_ENV) or MIN_ROWS)
    if rows is not None and rows < least:
        log.info('A Beam pipeline of %d rows runs in this process rather than on the worker processes asked '
                 'for (it has fewer than %d rows: %s)', rows, least, MIN_ROWS_ENV)
        direct.direct_running_mode, direct.direct_num_workers = 'in_memory', 1
        return options
    standard.runner = RUNNER
    return options


class _QuietModeWarning(logging.Filter):
    """FnApiRunner warns that several workers 'in memory' run in one process; on the pool they do not."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith('If direct_num_workers is not equal to 1')


def _runner_class() -> type:
    from apache_beam.runners.portability.fn_api_runner.fn_runner import FnApiRunner as base

    class Runner(base):  # type: ignore[misc, valid-type]
        def run_pipeline(self, pipeline: Any, options: Any) -> Any:
            from apache_beam.options.pipeline_options import DebugOptions, DirectOptions, SetupOptions, WorkerOptions
            from apache_beam.transforms import environments

            direct = options.view_as(DirectOptions)
            workers = direct.direct_num_workers or os.cpu_count() or 1
            pool = worker_pool(workers)
            experiments = options.view_as(DebugOptions).experiments or []
            buffer_ms = next((e.split('=', 1)[1] for e in experiments if e.startswith('data_buffer_time_limit_ms=')),
                             '0')
            self._default_environment = environments.ExternalEnvironment(pool.url, params={
                'pickle_library': options.view_as(SetupOptions).pickle_library or 'default',
                'state_cache_bytes': str((options.view_as(WorkerOptions).max_cache_memory_usage_mb or 0) << 20),
                'data_buffer_time_limit_ms': buffer_ms})
            direct.direct_running_mode = 'in_memory'  # keeps the environment above (see _QuietModeWarning)
            try:
                return super().run_pipeline(pipeline, options)
            finally:
                direct.direct_running_mode = 'multi_processing'

    Runner.__name__ = Runner.__qualname__ = 'WarmPoolRunner'
    logging.getLogger(base.__module__).addFilter(_QuietModeWarning())
    return Runner


def __getattr__(name: str) -> Any:  # Beam's --runner=sluice.components.beam_pool.WarmPoolRunner
    if name == 'WarmPoolRunner':
        cls = _runner_class()
        globals()['WarmPoolRunner'] = cls
        return cls
    raise AttributeError(name)


# -- the driver's side: the pool ------------------------------------------------------------------
class WorkerPool:
    """Worker processes and the front that Beam's EXTERNAL environment talks to (Beam's worker-pool
    protocol, on loopback): each StartWorker goes to the next process in turn."""

    def __init__(self) -> None:
        import grpc
        from apache_beam.portability.api import beam_fn_api_pb2_grpc
        from concurrent import futures

        self._lock = threading.Lock()
        self.workers: list[_Worker] = []
        self._retired: list[_Worker] = []  # replaced, ending once idle
        self.started = 0  # worker processes started, replacements included
        self.replaced: list[str] = []  # why each replaced worker was replaced
        self.served = 0  # SDK harnesses started (one per worker per Beam pipeline)
        self._next = 0
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix='sluice-pool'))
        port = self._server.add_insecure_port('127.0.0.1:0')
        beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(_Front(self), self._server)
        self._server.start()
        self.url = f'127.0.0.1:{port}'

    def grow(self, n: int) -> None:
        """At least ``n`` worker processes, the missing ones started at once (each takes about a
        second to import Beam and listen)."""
        with self._lock:
            missing = n - len(self.workers)
            if missing > 0:
                self.started += missing
                self.workers += _Worker.spawn_many(missing)

    def _spawn(self) -> _Worker:
        self.started += 1
        return _Worker.spawn_many(1)[0]

    def start_worker(self, request: Any) -> Any:
        from apache_beam.portability.api import beam_fn_api_pb2

        with self._lock:
            index = self._next % len(self.workers)
            self._next += 1
            worker = self.workers[index]
        for tries in range(3):
            try:
                response = worker.start(request)
            except Exception as e:  # noqa: BLE001 - the process died (out of memory, killed): replace it
                response = beam_fn_api_pb2.StartWorkerResponse(error=f'{STALE}worker process gone ({e})')
            if not response.error.startswith(STALE) or tries == 2:
                break
            with self._lock:  # a stale or dead worker: a fresh process takes its place
                if self.workers[index] is worker:  # (unless another pipeline replaced it meanwhile)
                    self.replaced.append(response.error[len(STALE):])
                    log.info('Beam worker pool: replacing worker pid %s: %s', worker.process.pid,
                             response.error[len(STALE):])
                    worker.retire()  # it ends once the pipelines it is running (another node's) have ended
                    self._retired.append(worker)
                    self.workers[index] = self._spawn()
                worker = self.workers[index]
                self._reap()
        if not response.error:
            with self._lock:
                self.served += 1
        return response

    def _reap(self) -> None:
        """Let go of retired workers that have ended."""
        for worker in [w for w in self._retired if w.process.poll() is not None]:
            worker.stop()
            self._retired.remove(worker)

    def close(self) -> None:
        with self._lock:
            workers, self.workers, self._retired = self.workers + self._retired, [], []
        for worker in workers:
            worker.stop()
        self._server.stop(grace=None)


class _Front:
    """Beam's BeamFnExternalWorkerPool service, in front of the pool's processes."""

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool

    def StartWorker(self, request: Any, context: Any) -> Any:  # noqa: N802 - the gRPC method's name
        return self.pool.start_worker(request)

    def StopWorker(self, request: Any, context: Any) -> Any:  # noqa: N802
        from apache_beam.portability.api import beam_fn_api_pb2
        return beam_fn_api_pb2.StopWorkerResponse()  # a harness ends when its pipeline's control stream does


class _Worker:
    """One worker process: its port, its standard input (closing it ends the process), its output
    forwarded to this process's standard error as it comes (wherever that points now: a run's log)."""

    def __init__(self, process: subprocess.Popen, url: str) -> None:
        self.process, self.url = process, url
        self._stub: Any = None
        self._channel: Any = None
        self._lock = threading.Lock()
        self._forwarder: threading.Thread | None = None

    @staticmethod
    def popen() -> subprocess.Popen:
        """A worker process, started: it listens about a second later (``_listening``)."""
        env = dict(os.environ)
        env[_SYS_PATH_ENV] = os.pathsep.join(p for p in sys.path if p)
        return subprocess.Popen([sys.executable, '-m', 'sluice.components.beam_pool_worker'], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)

    @classmethod
    def spawn_many(cls, n: int) -> list[_Worker]:
        """``n`` worker processes started together, each once it listens; if one fails, the others
        are stopped and the error raised."""
        processes: list[subprocess.Popen] = []
        workers: list[_Worker] = []
        try:
            for _ in range(n):
                processes.append(cls.popen())
            for process in processes:
                workers.append(cls._listening(process))
        except BaseException:
            for worker in workers:
                worker.stop()
            for process in processes[len(workers):]:
                process.kill()
                process.wait()
                for pipe in (process.stdin, process.stdout):
                    if pipe is not None:
                        pipe.close()
            raise
        return workers

    @classmethod
    def _listening(cls, process: subprocess.Popen) -> _Worker:
        """The worker of a process just started, once it prints the port it listens on."""
        assert process.stdout is not None
        port = ''
        for line in iter(process.stdout.readline, b''):  # what it prints before listening: to the log
            if line.startswith(_PORT_LINE):
                port = line[len(_PORT_LINE):].decode().strip()
                break
            _write_err(line)
        if not port:
            process.kill()
            process.wait()
            raise RuntimeError(f'A Beam worker process of the warm pool exited with status {process.returncode} '
                               'before listening (its messages are above, in the log).')
        worker = cls(process, f'127.0.0.1:{port}')
        worker._forwarder = threading.Thread(target=_forward, args=(process.stdout,), daemon=True,
                                             name=f'sluice-pool-{process.pid}')
        worker._forwarder.start()
        return worker

    def start(self, request: Any) -> Any:
        import grpc
        from apache_beam.portability.api import beam_fn_api_pb2_grpc

        with self._lock:
            if self._stub is None:
                self._channel = grpc.insecure_channel(self.url)
                self._stub = beam_fn_api_pb2_grpc.BeamFnExternalWorkerPoolStub(self._channel)
        return self._stub.StartWorker(request, timeout=120)

    def retire(self) -> None:
        """No more pipelines for this process: it ends once those it runs have ended."""
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(b'retire\n')
            self.process.stdin.flush()
        except (OSError, ValueError):  # gone already
            pass

    def stop(self) -> None:
        """End the process now (closing its standard input), whatever it runs."""
        if self._channel is not None:
            self._channel.close()
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
            self.process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        if self._forwarder is not None:
            self._forwarder.join(timeout=5)  # what it printed last reaches the log
        if self.process.stdout is not None:
            self.process.stdout.close()


def _forward(stream: Any) -> None:
    for chunk in iter(lambda: stream.read1(65536), b''):
        _write_err(chunk)


def _write_err(data: bytes) -> None:
    try:
        os.write(2, data)
    except OSError:
        pass


_POOL: WorkerPool | None = None
_POOL_LOCK = threading.Lock()


def worker_pool(workers: int) -> WorkerPool:
    """This process's pool, started on first use, with at least ``workers`` processes."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = WorkerPool()
            atexit.register(shutdown)
        pool = _POOL
    pool.grow(workers)
    return pool


def current_pool() -> WorkerPool | None:
    return _POOL


def shutdown() -> None:
    """Stop this process's pool (it is started again when a pipeline needs it)."""
    global _POOL
    with _POOL_LOCK:
        pool, _POOL = _POOL, None
    if pool is not None:
        pool.close()

