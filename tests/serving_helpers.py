"""What the serving tests use: Sluice's own production changes to build destinations, a real
``sluice serve`` process on a free loopback port, and plain HTTP calls to it."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PENGUIN = os.path.join(REPO, 'pipelines', 'examples', 'penguin', 'penguin_pipeline.py')
INFRA_PENGUIN = os.path.join(REPO, 'tests', 'serving', 'infra_pipeline.py')


def sluice(*args: str, cwd: str, timeout: float = 600) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, '-m', 'sluice.ui.cli', *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f'sluice {" ".join(args)} failed:\n{done.stdout}\n{done.stderr}'
    return done


def promote(destination: str, model, reason: str = 'test') -> int:
    """Puts a model (its Model directory, or that and its OnnxModel's) into production at
    ``destination`` the way ``sluice promote`` does; its version."""
    from sluice.components.production.changes import promote as promote_model
    model_uri, onnx_uri = (model, None) if isinstance(model, str) else model
    new, _ = promote_model(destination, model_uri, {'pipeline': 'penguin'}, reason, onnx_uri)
    return new.number


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def call(url: str, body: object = None, method: str | None = None, raw: bytes | None = None,
         timeout: float = 30) -> tuple[int, dict, dict]:
    """(status, JSON body, headers) of one HTTP request."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method=method or ('POST' if data is not None else 'GET'),
                                     headers={'Content-Type': 'application/json'})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b'null'), dict(response.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b'null'), dict(e.headers)


class Server:
    def __init__(self, process: subprocess.Popen, url: str, log: str):
        self.process, self.url, self.log_path = process, url, log

    def log(self) -> str:
        with open(self.log_path) as f:
            return f.read()

    def metrics(self) -> str:
        with urllib.request.urlopen(self.url + '/metrics', timeout=10) as response:
            return response.read().decode()

    def wait_for(self, check, what: str, timeout: float = 60) -> object:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = check()
            if found:
                return found
            assert self.process.poll() is None, f'the server ended:\n{self.log()}'
            time.sleep(0.1)
        raise AssertionError(f'timed out waiting for {what}; server log:\n{self.log()}')


@contextlib.contextmanager
def serving(source: str, *args: str, ready: bool = True):
    """``sluice serve SOURCE`` in a process of its own on a free loopback port, stopped after."""
    port = free_port()
    fd, log = tempfile.mkstemp(prefix=f'sluice-serve-{port}-', suffix='.log')  # not beside SOURCE: it may be shared
    os.close(fd)
    with open(log, 'w') as out:
        process = subprocess.Popen([sys.executable, '-m', 'sluice.ui.cli', 'serve', source, '--port', str(port),
                                    '--poll', '0.2', *args], stdout=out, stderr=subprocess.STDOUT)
    server = Server(process, f'http://127.0.0.1:{port}', log)
    try:
        server.wait_for(lambda: _answers(server.url, ready), 'the server to answer')
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _answers(url: str, ready: bool) -> bool:
    try:
        status, _, _ = call(url + ('/v2/health/ready' if ready else '/v2/health/live'), timeout=2)
    except OSError:
        return False
    return status == 200


def copy_tree(source: str, target: str) -> str:
    shutil.copytree(source, target)
    return target
