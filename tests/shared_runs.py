"""Pipeline runs that several test files only read, made once per test session.

A full run of an example pipeline takes tens of seconds; tests that only look at its results (the
report in a browser, the command line's output, the ONNX export of the taxi model, ...) share one.
The first test that needs a run makes it, under a file lock, in a directory common to the session's
pytest-xdist workers; the others wait for it and read it. Each run is made the way the tests made
it before (LocalDagRunner in the test process, or ``sluice run`` in a process of its own), and what
the tests asserted on the run's outcome is kept beside it as JSON (built.json) for them to assert on.

A test that changes a shared run's store or root (another run on top of it) takes ``changing()``
around that, so that two of them never run on one store at once.
"""
from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import pathlib
import shutil
import subprocess
import sys
from typing import Any, Callable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(REPO, 'pipelines', 'examples')
PENGUIN = os.path.join(EXAMPLES, 'penguin', 'penguin_pipeline.py')
TAXI = os.path.join(EXAMPLES, 'taxi', 'taxi_pipeline.py')


def session_dir(tmp_path_factory) -> pathlib.Path:
    """A directory of this test session that every pytest-xdist worker of it sees (each worker's own
    base temporary directory is a child of the session's)."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get('PYTEST_XDIST_WORKER'):
        base = base.parent
    shared = base / 'shared-runs'
    shared.mkdir(exist_ok=True)
    return shared


@contextlib.contextmanager
def locked(path: pathlib.Path):
    """An exclusive lock on ``path`` (a lock file) between the processes of the session."""
    with open(path, 'a') as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def once(tmp_path_factory, name: str, build: Callable[[pathlib.Path], dict[str, Any]]) -> tuple[pathlib.Path, dict]:
    """The directory of the shared run ``name`` and what its build returned. The first caller of the
    session builds it (``build(directory)``); a build that raised is started over by the next caller."""
    where = session_dir(tmp_path_factory) / name
    done = where / 'built.json'
    with locked(where.with_name(name + '.lock')):
        if not done.exists():
            shutil.rmtree(where, ignore_errors=True)
            where.mkdir()
            done.write_text(json.dumps(build(where)))
    return where, json.loads(done.read_text())


@contextlib.contextmanager
def changing(where: pathlib.Path):
    """Held while a test runs a pipeline on a shared run's store and root (a cached rerun)."""
    with locked(where.with_name(where.name + '.changing')):
        yield


def in_process(path: str, **kwargs) -> Callable[[pathlib.Path], dict[str, Any]]:
    """A build: ``load_pipeline(path, root=<directory>/root, **kwargs)`` run by LocalDagRunner in this
    process. Keeps the run's id, its store's URL, and the RunResult's state, node states and errors."""
    def build(where: pathlib.Path) -> dict[str, Any]:
        from sluice import LocalDagRunner, load_pipeline

        pipeline = load_pipeline(path, root=str(where / 'root'), **kwargs)
        result = LocalDagRunner(progress=False).run(pipeline)
        return {'run_id': result.run_id, 'metadata': pipeline.metadata, 'state': result.state,
                'node_states': result.node_states(),
                'errors': {k: n.error for k, n in result.nodes.items() if n.error}}
    return build


def command_line(path: str) -> Callable[[pathlib.Path], dict[str, Any]]:
    """A build: ``sluice run PATH`` as its own process (``python -m sluice.ui.cli``, as the console
    script runs it), from a fresh directory <directory>/work (the pipeline's default root is relative
    to it). Keeps the process's exit status and output."""
    def build(where: pathlib.Path) -> dict[str, Any]:
        work = where / 'work'
        work.mkdir()
        done = subprocess.run([sys.executable, '-m', 'sluice.ui.cli', 'run', path], cwd=work,
                              env={**os.environ, 'PYTHONPATH': REPO}, capture_output=True, text=True, timeout=900)
        return {'args': done.args, 'returncode': done.returncode, 'stdout': done.stdout, 'stderr': done.stderr}
    return build


def command_in_process(*args: str) -> Callable[[pathlib.Path], dict[str, Any]]:
    """A build: ``sluice ARGS`` through ``main([...])`` in this process, from <directory> (the pipeline's
    default root, runs/NAME, is relative to it); ``{store}`` in ARGS stands for the SQLite URL of
    <directory>/m.db. Keeps its exit status, what it printed and the store's URL."""
    def build(where: pathlib.Path) -> dict[str, Any]:
        from sluice.ui.cli import main

        url, out, here = f'sqlite:///{where}/m.db', io.StringIO(), os.getcwd()
        os.chdir(where)
        try:
            with contextlib.redirect_stdout(out):
                status = main([arg.format(store=url) for arg in args])
        finally:
            os.chdir(here)
        return {'status': status, 'stdout': out.getvalue(), 'metadata': url}
    return build


def completed(info: dict[str, Any]) -> subprocess.CompletedProcess:
    """A command_line build's process as subprocess.run returned it."""
    return subprocess.CompletedProcess(info['args'], info['returncode'], info['stdout'], info['stderr'])
