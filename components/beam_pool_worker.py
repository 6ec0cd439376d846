"""The processes of the warm Beam pool (``sluice.components.beam_pool``, the driver's side).

The zygote imports what a worker needs, forks the workers, and imports the heavy libraries when the
driver asks (as its first node that lists them starts), so that the workers forked after that start
with them. Each worker listens for
Beam's worker-pool protocol on loopback, hosts one SDK harness per pipeline (a thread), refuses a
pipeline while it holds a module whose file changed since it could have been imported (the driver
then replaces it), and ends when the driver closes its standard input.

    python -m sluice.components.beam_pool_worker [--zygote FD]   # started by the pool, never by hand
"""
from __future__ import annotations

import logging
import os
import select
import signal
import socket
import sys
import threading
import time
from typing import Any

from sluice.components.beam_pool_processes import _GENERATED, _PORT_LINE, _SYS_PATH_ENV, IMPORTS_PARAM, POOL_URL_ENV, STALE
from sluice.components.libraries import TF, TFDV, TFT, TFXIO, import_first

log = logging.getLogger(__name__)
# What the data components' Beam stages import in a worker: the zygote imports them once for all.
WARM_IMPORTS = (TF, TFXIO, TFDV, TFT)


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
    sent to the runner (as Beam's sdk_worker_main sets them up in a process of its own). A harness
    first imports the heavy libraries its node's executor lists (``Executor.imports``, sent as the
    environment's ``sluice_imports``) one thread at a time (``import_first``): two pipelines that
    start at once never meet each other's half-done import, and in a worker forked warm from the
    zygote there is nothing left to import."""

    def __init__(self, staleness: _Staleness | None = None) -> None:
        self.staleness = staleness or _Staleness()
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
        needs = [m for m in params.get(IMPORTS_PARAM, '').split(',') if m]

        def run() -> None:
            try:
                import_first(needs)
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


def _prepare() -> None:
    """What a worker sets up before it serves: quiet library warnings, the driver's sys.path, and the
    imports every harness needs (Beam's SDK worker, gRPC)."""
    from sluice.components.libraries import beam_reaches_storage_emulator, quiet_google_warnings
    quiet_google_warnings()
    beam_reaches_storage_emulator()
    for entry in reversed(os.environ.get(_SYS_PATH_ENV, '').split(os.pathsep)):
        if entry and entry not in sys.path:
            sys.path.insert(0, entry)
    logging.getLogger().setLevel(logging.INFO)  # as Beam's own workers: their records go to the runner
    import_first(('grpc', 'apache_beam.runners.worker.sdk_worker', 'apache_beam.runners.worker.log_handler',
                  'apache_beam.portability.api.beam_fn_api_pb2_grpc', 'concurrent.futures'))


def _serve(staleness: _Staleness | None = None) -> None:
    """Listen on loopback, print the port on standard output (the driver reads it there), then serve
    until retired or until standard input closes; never returns."""
    import grpc
    from apache_beam.portability.api import beam_fn_api_pb2_grpc
    from concurrent import futures

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    port = server.add_insecure_port('127.0.0.1:0')
    servicer = _WorkerServicer(staleness)
    beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(servicer, server)
    server.start()
    out = sys.stdout
    sys.stdout = sys.stderr  # from here on, anything printed is forwarded to the driver's log
    out.write(f'{_PORT_LINE.decode()}{port}\n')
    out.flush()
    threading.Thread(target=_read_driver, args=(servicer,), daemon=True, name='driver').start()
    servicer.retiring.wait()  # replaced: end once the harnesses running have ended
    servicer.wait_idle()
    os._exit(0)


def _zygote(fd: int) -> None:
    """The zygote (``beam_pool._Zygote``, the driver's side): imports what a worker needs, then forks a
    worker for each request on the socket ``fd`` (the request carries the new worker's standard input
    and output), answering ``pid N warm|cold``. It imports the heavy libraries (WARM_IMPORTS) when
    asked (``import``: the driver's first node that lists them is about to import them too) or when a
    warm worker is asked for: workers forked after that start with them imported. It forks only while
    single-threaded, and refuses (``stale ...``, then exits) when a module it holds changed on disk.
    It ends when its standard input closes."""
    control = socket.socket(fileno=fd)
    _prepare()
    staleness = _Staleness()
    staleness.check()  # the stamps of the files it holds, which its workers inherit
    signal.signal(signal.SIGCHLD, _reap)  # its workers, reaped as they end (their CPU time is counted up the tree)
    warm = False
    while True:
        ready, _, _ = select.select([control, 0], [], [])
        if 0 in ready and not os.read(0, 4096):
            os._exit(0)  # the driver closed it, exited or was killed
        if control not in ready:
            continue
        message, fds, _, _ = socket.recv_fds(control, 4096, 2)
        if not message:
            os._exit(0)
        if message == b'import' or message != b'cold' and not warm:
            import_first(WARM_IMPORTS)
            warm = True
        if message == b'import':
            continue
        stale = staleness.check()
        if stale:
            control.sendall(f'stale {stale}'.encode())
            os._exit(0)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            if message.startswith(b'run\0'):
                _become_executor(control, fds, message.decode().split('\0')[1:])
            _become_worker(control, fds, staleness)
        for f in fds:
            os.close(f)
        control.sendall(f'pid {pid} {"warm" if warm else "cold"}'.encode())


def _reap(*_: Any) -> None:
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _become_worker(control: socket.socket, fds: list[int], staleness: _Staleness) -> None:
    """In a process just forked by the zygote: its standard input and output are the driver's pipes."""
    try:
        _forked_streams(control, fds, (fds[0], fds[1], fds[1]))
        _serve(staleness)
    finally:
        os._exit(1)  # never back into the zygote's loop


def _forked_streams(control: socket.socket, fds: list[int], streams: tuple[int, int, int]) -> None:
    """In a process just forked by the zygote: the zygote's socket closed, SIGCHLD as by default, and
    ``streams`` (descriptors) as standard input, output and error; the descriptors passed closed."""
    control.close()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for target, fd in enumerate(streams):
        os.dup2(fd, target)
    for f in fds:
        os.close(f)


def _become_executor(control: socket.socket, fds: list[int], arguments: list[str]) -> None:
    """In a process just forked by the zygote: a node's executor (``executor_process``), in a
    process group of its own, its output where the driver's goes, its Beam pipelines on the driver's pool."""
    from sluice.components.executor_process import run_payload

    code = 1
    try:
        os.setsid()
        null = os.open(os.devnull, os.O_RDONLY)
        _forked_streams(control, fds, (null, fds[0], fds[1]))
        os.close(null)
        payload, result, url = arguments
        os.environ[POOL_URL_ENV] = url
        logging.getLogger().setLevel(logging.WARNING)  # as in a new process: the workers' INFO is theirs
        code = run_payload(payload, result)
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)


def _main() -> None:
    _prepare()
    _serve()


def _read_driver(servicer: _WorkerServicer) -> None:
    """The driver's word on standard input: 'retire' (see _Worker.retire); its end (the driver closed
    it, exited or was killed) ends this process at once."""
    for line in sys.stdin.buffer:
        if line.strip() == b'retire':
            servicer.retiring.set()
    os._exit(0)


if __name__ == '__main__':
    if sys.argv[1:2] == ['--zygote']:
        _zygote(int(sys.argv[2]))
    else:
        _main()
