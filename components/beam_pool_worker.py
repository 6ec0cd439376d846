"""The worker processes of the warm Beam pool (``sluice.components.beam_pool``, the driver's side):
each listens for Beam's worker-pool protocol on loopback, hosts one SDK harness per pipeline (a
thread), imports the heavy libraries while it has no pipeline to run, refuses a pipeline while it
holds a module whose file changed since it could have been imported (the driver then replaces it),
and ends when the driver closes its standard input.

    python -m sluice.components.beam_pool_worker    # started by the pool, never by hand
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Any

from sluice.components.beam_pool import _GENERATED, _PORT_LINE, _SYS_PATH_ENV, STALE
from sluice.components.libraries import TF, TFDV, TFT, TFXIO, import_first

log = logging.getLogger(__name__)
# What the data components' Beam stages import in a worker, imported while it has nothing to run.
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
    sent to the runner (as Beam's sdk_worker_main sets them up in a process of its own)."""

    IDLE_BEFORE_WARMING = 0.5  # seconds without a harness before the heavy libraries are imported

    def __init__(self) -> None:
        self.staleness = _Staleness()
        self._lock = threading.Lock()
        self._log_handlers: list[logging.Handler] = []  # one per running harness; the newest is attached
        self.active = 0  # harnesses running
        self.busy_at = time.monotonic()  # when a harness last started or ended
        self.warming = False  # the heavy libraries' import has begun
        self.warm = threading.Event()  # ... and ended
        self.retiring = threading.Event()

    def warm_when_idle(self) -> None:
        """Import the heavy libraries (WARM_IMPORTS) once no harness has run for a while: not while one
        runs (the first pipeline, often CsvExampleGen's, needs none of them and would share the CPU with
        the import), and never at the same time as one (a harness that starts meanwhile waits for the
        import to end: a concurrent import of the same package can get it half-initialized)."""
        while True:
            time.sleep(0.1)
            with self._lock:
                if self.active or time.monotonic() - self.busy_at < self.IDLE_BEFORE_WARMING:
                    continue
                self.warming = True
            break
        try:
            import_first(WARM_IMPORTS)
        finally:
            self.warm.set()

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
            self.busy_at = time.monotonic()
            self._attach(handler)
            wait_for_warm = self.warming

        def run() -> None:
            try:
                if wait_for_warm:
                    self.warm.wait()
                harness.run()
            finally:  # the pipeline ended: its logs stop here
                with self._lock:
                    self.active -= 1
                    self.busy_at = time.monotonic()
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
    threading.Thread(target=servicer.warm_when_idle, daemon=True, name='warm-imports').start()
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
