"""The warm pool's processes as the driver holds them (``sluice.components.beam_pool``): a worker
(forked by the zygote, or a process of its own should the zygote fail), the zygote, and what they
print, forwarded to this process's standard error. Their own side: ``beam_pool_worker``."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

STALE = 'sluice-stale-worker: '
_SYS_PATH_ENV = 'SLUICE_POOL_SYS_PATH'
_PORT_LINE = b'sluice-pool-port '
# The heavy libraries a pipeline's node imports (``Executor.imports``): an experiment in its options
# (``rewrite_options``), then a parameter of the EXTERNAL environment its workers read.
IMPORTS_PARAM = 'sluice_imports'
# In an executor's process forked by the zygote: the pool its Beam pipelines use (the driver's).
POOL_URL_ENV = 'SLUICE_POOL_URL'
# Modules that libraries write and import as they run (TensorFlow's AutoGraph): new files, not edits.
_GENERATED = ('__autograph_generated_file',)


class _Worker:
    """One worker process: its port, its standard input (closing it ends the process), its output
    forwarded to this process's standard error as it comes (wherever that points now: a run's log).
    ``cold``: forked before the zygote imported the heavy libraries (a process of its own imports
    what its pipelines need)."""

    def __init__(self, process: Any, url: str, cold: bool = False) -> None:
        self.process, self.url, self.cold = process, url, cold
        self._stub: Any = None
        self._channel: Any = None
        self._lock = threading.Lock()
        self._forwarder: threading.Thread | None = None

    @staticmethod
    def popen() -> subprocess.Popen:
        """A worker process, started: it listens about a second later (``_listening``)."""
        return subprocess.Popen([sys.executable, '-m', 'sluice.components.beam_pool_worker'], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_pool_env())

    @classmethod
    def fork_many(cls, zygote: _Zygote, n: int, warm: bool) -> list[_Worker]:
        """``n`` workers forked by ``zygote`` (``warm``: after its heavy imports), each once it listens."""
        return cls.spawn_many(n, lambda: zygote.fork(warm))

    @classmethod
    def spawn_many(cls, n: int, start: Any = None) -> list[_Worker]:
        """``n`` worker processes started together (``start``: one forked by the zygote; by default a
        process of its own, ``popen``), each once it listens; if one fails, the others are stopped
        and the error raised."""
        processes: list[Any] = []
        workers: list[_Worker] = []
        try:
            for _ in range(n):
                processes.append(start() if start else cls.popen())
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
    def _listening(cls, process: Any) -> _Worker:
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
        worker = cls(process, f'127.0.0.1:{port}', cold=getattr(process, 'cold', False))
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
        _end(self.process, self._forwarder)


class _Zygote:
    """The process that forks the workers (its side: ``beam_pool_worker._zygote``): asked on a Unix
    socket, with the new worker's standard input and output passed along, it answers with its pid."""

    def __init__(self, workers: int) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)  # one message per send
        env = _pool_env()
        # The workers share the cores: TensorFlow's thread pools, sized to every core in each worker by
        # default, would oversubscribe them (at 10x taxi rows on 2 cores, Transform's Beam pipeline took
        # ~1 s of 13 less with one thread each). The user's own setting stands.
        threads = str(max(1, len(os.sched_getaffinity(0)) // max(1, workers)))
        for name in ('TF_NUM_INTRAOP_THREADS', 'TF_NUM_INTEROP_THREADS'):
            env.setdefault(name, threads)
        with theirs:
            self.process = subprocess.Popen(
                [sys.executable, '-m', 'sluice.components.beam_pool_worker', '--zygote', str(theirs.fileno())],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                pass_fds=(theirs.fileno(),))
        self.control = ours
        self._lock = threading.Lock()  # one fork request (and its answer) at a time
        self._sending = threading.Lock()
        self.importing = False  # asked to import the heavy libraries
        self._forwarder = threading.Thread(target=_forward, args=(self.process.stdout,), daemon=True,
                                           name=f'sluice-zygote-{self.process.pid}')
        self._forwarder.start()

    def fork(self, warm: bool) -> _Forked:
        """A worker process, forked (it listens moments later: ``_Worker._listening``)."""
        stdin_r, stdin_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        try:
            with self._lock:
                with self._sending:
                    socket.send_fds(self.control, [b'warm' if warm else b'cold'], [stdin_r, stdout_w])
                answer = self.control.recv(4096).decode(errors='replace')
        except BaseException:
            os.close(stdin_w)
            os.close(stdout_r)
            raise
        finally:
            os.close(stdin_r)
            os.close(stdout_w)
        if not answer.startswith('pid '):
            os.close(stdin_w)
            os.close(stdout_r)
            self.process.wait(timeout=10)
            raise RuntimeError(answer or f'the zygote exited with status {self.process.returncode}')
        _, pid, state = answer.split()
        return _Forked(int(pid), os.fdopen(stdin_w, 'wb'), os.fdopen(stdout_r, 'rb'), cold=state == 'cold')

    def run_executor(self, payload: str, result: str, url: str) -> _Forked:
        """A process forked with the heavy libraries imported that runs a node's executor
        (``executor_process``: ``payload`` in, ``result`` out), its Beam pipelines on the pool at ``url``, its
        output this process's standard output and error; in a process group of its own."""
        with self._lock:
            with self._sending:
                socket.send_fds(self.control, [b'\0'.join(p.encode() for p in ('run', payload, result, url))], [1, 2])
            answer = self.control.recv(4096).decode(errors='replace')
        if not answer.startswith('pid '):
            self.process.wait(timeout=10)
            raise RuntimeError(answer or f'the zygote exited with status {self.process.returncode}')
        return _Forked(int(answer.split()[1]), None, None, cold=False)

    def import_libraries(self) -> None:
        """Have the zygote import the heavy libraries now (no answer), so that the next workers are warm;
        never waits for a fork under way (which may itself wait for that import)."""
        with self._sending:
            if not self.importing:
                self.importing = True
                self.control.sendall(b'import')

    def stop(self) -> None:
        self.control.close()
        _end(self.process, self._forwarder)


class _Forked:
    """What the pool uses of a ``subprocess.Popen``, for a worker the zygote forked (its child, not
    this process's: the zygote reaps it, so its exit status is not known here)."""

    def __init__(self, pid: int, stdin: Any, stdout: Any, cold: bool) -> None:
        self.pid, self.stdin, self.stdout, self.cold = pid, stdin, stdout, cold
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                self.returncode = -1  # ended; how is the zygote's to know
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f'worker pid {self.pid}', timeout or 0)
            time.sleep(0.01)
        return self.returncode

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _pool_env() -> dict[str, str]:
    """The environment of a pool process: this one's, with its sys.path (``beam_pool_worker._prepare``)."""
    return {**os.environ, _SYS_PATH_ENV: os.pathsep.join(p for p in sys.path if p)}


def _end(process: Any, forwarder: threading.Thread | None) -> None:
    """End a pool process by closing its standard input (killed if it lingers); what it printed last
    reaches the log."""
    try:
        if process.stdin is not None:
            process.stdin.close()
        process.wait(timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        process.kill()
        process.wait()
    if forwarder is not None:
        forwarder.join(timeout=5)
    if process.stdout is not None:
        process.stdout.close()


def _forward(stream: Any) -> None:
    for chunk in iter(lambda: stream.read1(65536), b''):
        _write_err(chunk)


def _write_err(data: bytes) -> None:
    try:
        os.write(2, data)
    except OSError:
        pass
