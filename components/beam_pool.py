"""A warm pool of Beam SDK worker processes, shared by every Beam pipeline this process runs.

With ``--direct_running_mode=multi_processing --direct_num_workers=N``, Beam's DirectRunner starts N
new worker processes for every Beam pipeline, and each imports TensorFlow, tfx_bsl, TFDV and
tf.Transform again: about 3 s to start and 2.6 s to import per pipeline on a small machine, several
times per node (``bench/README.md``). Sluice runs those pipelines on the same runner (Beam's
FnApiRunner, which DirectRunner uses) with an EXTERNAL environment instead: N worker processes
started once, the first time a pipeline asks for them, with those libraries imported while they wait,
and kept for every later pipeline of the process: every node of a run, every run of a
``sluice watch``. Each process hosts one SDK harness per pipeline (a thread, as Beam's own worker
pool does in its thread mode); the pipeline, its options and its functions reach the worker as they
would reach a fresh one.

What must never happen is a worker running a user's code as it was before an edit. Code shipped
with the pipeline (pickled by value) is always the new one; a module a worker imported by name stays
in that process. So before taking a pipeline, a worker checks every module it holds that is not
part of Python or an installed library: if one's file changed since it could have been imported, or
is gone, the worker is replaced by a fresh process (which costs the start-up this pool saves, once).

The workers end with this process: when it exits, and, if it is killed, as soon as they see their
standard input closed. ``SLUICE_BEAM_WORKER_POOL=0`` turns the pool off (Beam's own worker processes
per pipeline), for comparison.
"""
from __future__ import annotations

import atexit
import logging
import os
import subprocess
import sys
import threading
import time
from typing import Any

log = logging.getLogger(__name__)

RUNNER = f'{__name__}.WarmPoolRunner'
OFF_ENV = 'SLUICE_BEAM_WORKER_POOL'
STALE = 'sluice-stale-worker: '
# What the data components' Beam stages import in a worker, imported by each worker while it waits.
WARM_IMPORTS = ('tensorflow', 'tfx_bsl.public.tfxio', 'tensorflow_data_validation', 'tensorflow_transform.beam')
_SYS_PATH_ENV = 'SLUICE_POOL_SYS_PATH'
_PORT_LINE = b'sluice-pool-port '
# Modules that libraries write and import as they run (TensorFlow's AutoGraph): new files, not edits.
_GENERATED = ('__autograph_generated_file',)


def rewrite_options(options: Any) -> Any:
    """``options`` (Beam PipelineOptions) to run on the warm pool when they ask DirectRunner for
    several worker processes and the pool is not turned off; otherwise unchanged."""
    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

    standard, direct = options.view_as(StandardOptions), options.view_as(DirectOptions)
    if os.environ.get(OFF_ENV, '1') == '0' or direct.direct_running_mode != 'multi_processing':
        return options
    if standard.runner not in (None, 'DirectRunner', 'direct', 'Direct'):
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
        return subprocess.Popen([sys.executable, '-m', __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=env)

    @classmethod
    def spawn_many(cls, n: int) -> list[_Worker]:
        """``n`` worker processes (those ``prestart`` started first), each once it listens; if one
        fails, the others are stopped and the error raised."""
        with _POOL_LOCK:
            processes = [_PRESTARTED.pop(0) for _ in range(min(n, len(_PRESTARTED)))]
        processes += [cls.popen() for _ in range(n - len(processes))]
        workers: list[_Worker] = []
        try:
            for process in processes:
                workers.append(cls._listening(process))
        except BaseException:
            for worker in workers:
                worker.stop()
            for process in processes[len(workers):]:
                process.kill()
                process.wait()
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
_PRESTARTED: list[subprocess.Popen] = []  # worker processes started before the pool (prestart)


def prestart(beam_args: Any) -> None:
    """Start the pool's worker processes now if a node with these Beam arguments will run its
    pipelines on the pool (``rewrite_options``' rule) and none runs yet: they start Python and import
    Beam while the node imports its own libraries, instead of after. Read without importing Beam."""
    workers = pool_workers(beam_args)
    if workers is None:
        return
    with _POOL_LOCK:
        if _POOL is None and not _PRESTARTED:
            _PRESTARTED.extend(_Worker.popen() for _ in range(workers))


def pool_workers(beam_args: Any) -> int | None:
    """How many workers Beam arguments (a list of strings) ask the pool for, or None when their
    pipelines do not run on it (another runner, one process, the pool turned off)."""
    if os.environ.get(OFF_ENV, '1') == '0':
        return None
    wanted = {'runner': None, 'direct_running_mode': None, 'direct_num_workers': None}
    args = list(beam_args)
    for i, arg in enumerate(args):
        name, eq, value = arg[2:].partition('=') if arg.startswith('--') else ('', '', '')
        if name in wanted:
            wanted[name] = value if eq else (args[i + 1] if i + 1 < len(args) else '')
    if wanted['direct_running_mode'] != 'multi_processing' or \
            wanted['runner'] not in (None, 'DirectRunner', 'direct', 'Direct'):
        return None
    try:
        return int(wanted['direct_num_workers'] or 0) or os.cpu_count() or 1
    except ValueError:
        return None  # Beam says what is wrong with it when the pipeline is built


def worker_pool(workers: int) -> WorkerPool:
    """This process's pool, started on first use, with at least ``workers`` processes."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = WorkerPool()
            atexit.register(shutdown)
            # While the workers run a pipeline this process waits: it imports meanwhile what it will
            # build the later nodes' pipelines with (StatisticsGen's, Transform's), as they do.
            threading.Thread(target=_warm, daemon=True, name='sluice-driver-warm').start()
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


# -- a worker process -----------------------------------------------------------------------------
class _Staleness:
    """Which module this process holds from a file that changed since it could have been imported:
    its (mtime, size, inode) differ from when this process first saw it, or its mtime is not before
    the check that preceded its import, less the file clock's coarseness (an edit just before an import
    may carry an mtime a tick behind the clock)."""

    SLACK_NS = 50_000_000  # file times come from a clock that can lag time_ns by a tick or more

    def __init__(self) -> None:
        self.checked_ns = time.time_ns()  # modules seen for the first time were imported after this
        self.seen: dict[str, tuple[int, tuple[int, int, int]]] = {}  # name -> (check before its import, stat)
        self.files: dict[str, str] = {}  # module name -> its file, '' for Python's and libraries' own

    def check(self) -> str:
        from sluice.components.fingerprint.imports import is_library_file

        now = time.time_ns()
        for name, module in sys.modules.copy().items():
            path = self.files.get(name)
            if path is None:
                path = getattr(module, '__file__', None) or ''
                if path and is_library_file(path):
                    path = ''
                self.files[name] = path
            if not path or name.startswith(_GENERATED):
                continue
            try:
                st = os.stat(path)
            except OSError:
                return f'module {name} ({path}) was deleted since this worker imported it'
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            since, first = self.seen.setdefault(name, (self.checked_ns, stamp))
            if stamp != first or st.st_mtime_ns >= since - self.SLACK_NS:
                return f'module {name} ({path}) changed since this worker imported it'
        self.checked_ns = now
        return ''


class _WorkerServicer:
    """Starts SDK harnesses in this process, one thread each, with the pipeline's pickler and logs
    sent to the runner (as Beam's sdk_worker_main sets them up in a process of its own)."""

    def __init__(self) -> None:
        self.staleness = _Staleness()
        self._lock = threading.Lock()
        self._log_handlers: list[logging.Handler] = []  # one per running harness; the newest is attached
        self.active = 0  # harnesses running
        self.retiring = threading.Event()

    def wait_idle(self) -> None:
        while self.active:
            time.sleep(0.1)

    def StartWorker(self, request: Any, context: Any) -> Any:  # noqa: N802
        from apache_beam.internal import pickler
        from apache_beam.portability.api import beam_fn_api_pb2
        from apache_beam.runners.worker import sdk_worker

        with self._lock:
            stale = 'this worker is being replaced' if self.retiring.is_set() else self.staleness.check()
            if stale:
                return beam_fn_api_pb2.StartWorkerResponse(error=STALE + stale)
            params = request.params
            pickler.set_library(params.get('pickle_library', 'default'))
            handler = _pipeline_log_handler(request.logging_endpoint)
            harness = sdk_worker.SdkHarness(request.control_endpoint.url, worker_id=request.worker_id,
                                            state_cache_size=int(params.get('state_cache_bytes', '0')),
                                            data_buffer_time_limit_ms=int(params.get('data_buffer_time_limit_ms', '0')))
            self.active += 1
            self._attach(handler)

        def run() -> None:
            try:
                harness.run()
            finally:  # the pipeline ended: its logs stop here
                with self._lock:
                    self.active -= 1
                    self._detach(handler)

        threading.Thread(target=run, name=f'harness-{request.worker_id}', daemon=True).start()
        return beam_fn_api_pb2.StartWorkerResponse()

    def _attach(self, handler: logging.Handler) -> None:
        """Log records go to the newest running pipeline's runner (all of them are this driver's)."""
        root = logging.getLogger()
        if self._log_handlers:
            root.removeHandler(self._log_handlers[-1])
        self._log_handlers.append(handler)
        root.addHandler(handler)

    def _detach(self, handler: logging.Handler) -> None:
        root = logging.getLogger()
        if self._log_handlers[-1] is handler:
            root.removeHandler(handler)
            if len(self._log_handlers) > 1:
                root.addHandler(self._log_handlers[-2])
        self._log_handlers.remove(handler)
        handler.close()

    def StopWorker(self, request: Any, context: Any) -> Any:  # noqa: N802
        from apache_beam.portability.api import beam_fn_api_pb2
        return beam_fn_api_pb2.StopWorkerResponse()


def _pipeline_log_handler(endpoint: Any) -> logging.Handler:
    """Beam's handler that sends log records to the runner, connected once: the runner's logging
    service ends with its pipeline, and this process outlives it (Beam's own reconnects and complains)."""
    from apache_beam.runners.worker.log_handler import FnApiLogRecordHandler

    class PipelineLogHandler(FnApiLogRecordHandler):
        def _read_log_control_messages(self) -> None:
            try:
                for _ in self.connect():
                    pass
            except Exception:  # noqa: BLE001 - the pipeline ended: its runner's logging service is gone
                pass

    return PipelineLogHandler(endpoint)


def _warm() -> None:
    import importlib

    for name in WARM_IMPORTS:
        try:
            importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 - a library not installed: its pipelines import it as they need
            log.debug('warm pool: %s not imported: %s', name, e)


def _main() -> None:
    from sluice.components.libraries import beam_reaches_storage_emulator, quiet_google_warnings
    quiet_google_warnings()
    beam_reaches_storage_emulator()
    import grpc
    from apache_beam.portability.api import beam_fn_api_pb2_grpc
    from concurrent import futures

    for entry in reversed(os.environ.get(_SYS_PATH_ENV, '').split(os.pathsep)):
        if entry and entry not in sys.path:
            sys.path.insert(0, entry)
    logging.getLogger().setLevel(logging.INFO)  # as Beam's own workers: their records go to the runner
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    port = server.add_insecure_port('127.0.0.1:0')
    servicer = _WorkerServicer()
    beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(servicer, server)
    server.start()
    out = sys.stdout
    sys.stdout = sys.stderr  # from here on, anything printed is forwarded to the driver's log
    out.write(f'{_PORT_LINE.decode()}{port}\n')
    out.flush()
    threading.Thread(target=_warm, daemon=True, name='warm-imports').start()
    threading.Thread(target=_read_driver, args=(servicer,), daemon=True, name='driver').start()
    servicer.retiring.wait()  # replaced: end once the harnesses running have ended
    servicer.wait_idle()
    os._exit(0)


def _read_driver(servicer: _WorkerServicer) -> None:
    """The driver's word on standard input: 'retire' (see _Worker.retire); its end (the driver closed
    it, exited or was killed) ends this process at once."""
    for line in sys.stdin.buffer:
        if line.strip() == b'retire':
            servicer.retiring.set()
    os._exit(0)


if __name__ == '__main__':
    _main()
