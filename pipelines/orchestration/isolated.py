"""An executor in a process of its own, stopped when it runs past its time limit.

A node with ``with_timeout(seconds)`` runs its executor here: a child Python process in a new
process group (so Beam's worker processes and anything else it starts are stopped with it), which
dies with its parent. The parent waits up to the limit, then stops the whole group (SIGTERM, then
SIGKILL a second later) and raises NodeTimeout. Outputs' properties set by the executor come back
to the parent, which publishes as usual; an error comes back with its type, message, traceback and
whether a retry could help.

The child's side is ``sluice.components.executor_process``.
"""
from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from typing import Any, Callable

GRACE_SECONDS = 1.0


class NodeTimeout(RuntimeError):
    """A node ran past its ``with_timeout`` limit and was stopped. A retry may succeed."""
    retryable = True


class ExecutorProcessError(RuntimeError):
    """An executor failed in its own process; carries the original error's type name and whether a
    retry could help (the original exception, when it pickles, is raised instead)."""

    def __init__(self, type_name: str, message: str, retryable: bool, details: str) -> None:
        super().__init__(message)
        self.type_name, self.retryable, self.details = type_name, retryable, details


def run(executor_cls: type, arguments: dict[str, Any], beam_pipeline_args: tuple[str, ...], tmp_dir: str,
        node_id: str, timeout: float | None, started: Callable[[Any], None] | None = None,
        rows: int | None = None) -> None:
    """Run ``executor_cls(...).run(**arguments)`` in a child process; copy the output artifacts'
    properties back into ``arguments``. Raises NodeTimeout past ``timeout`` seconds, the executor's
    own error (or ExecutorProcessError) if it failed; ``timeout`` None waits as long as it runs.
    ``started`` is given the child process, which ``stop`` ends (a launch cancelled from another
    thread). When the Beam arguments ask for worker processes for ``rows`` (the input's rows, if
    known), the child is forked from the warm pool's zygote, with the heavy libraries imported, and its
    pipelines run on that pool (``beam_pool.fork_executor``); otherwise it is a new Python process."""
    import cloudpickle

    payload, result = os.path.join(tmp_dir, 'isolated-payload.pkl'), os.path.join(tmp_dir, 'isolated-result.pkl')
    with open(payload, 'wb') as f:  # where to import from first, then what to run (which needs those imports)
        pickle.dump({'sys_path': list(sys.path), 'cwd': os.getcwd()}, f)
        cloudpickle.dump({'executor': executor_cls, 'arguments': arguments, 'beam': tuple(beam_pipeline_args),
                          'tmp_dir': tmp_dir, 'node_id': node_id}, f)
    from sluice.components import beam_pool

    start = time.monotonic()
    child = beam_pool.fork_executor(payload, result, beam_pipeline_args, rows) or subprocess.Popen(
        [sys.executable, '-m', 'sluice.components.executor_process', payload, result], start_new_session=True)
    if started is not None:
        started(child)
    try:
        child.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(child)
        raise NodeTimeout(f'{node_id} timed out after {timeout:g}s (with_timeout); its process and the Beam '
                          f'work it started were stopped {time.monotonic() - start - timeout:.1f}s past the limit.') from None
    except BaseException:  # Ctrl-C or the parent being stopped: the child goes too
        stop(child)
        raise
    if not os.path.exists(result):
        code = f' with exit code {child.returncode}' if isinstance(child, subprocess.Popen) else ''  # a fork's: the zygote's to know
        raise ExecutorProcessError('ExecutorProcessDied', f'the executor process of {node_id} ended{code} '
                                   'before reporting (killed, or out of memory?)', True, '')
    with open(result, 'rb') as f:
        outcome = pickle.load(f)
    if 'error' in outcome:
        error = outcome['error']
        if error.get('exception') is not None:
            try:
                raise pickle.loads(error['exception'])
            except (pickle.UnpicklingError, AttributeError, ImportError, TypeError):
                pass
        raise ExecutorProcessError(error['type'], error['message'], error['retryable'], error['traceback'])
    for key, (properties, custom) in outcome['outputs'].items():
        arguments[key].properties.update(properties)
        arguments[key].custom_properties.update(custom)


def stop(child: Any) -> None:
    """SIGTERM to the child's whole process group, SIGKILL to what is left after GRACE_SECONDS."""
    for sig, wait in ((signal.SIGTERM, GRACE_SECONDS), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            break
        try:
            child.wait(timeout=wait)
            if sig == signal.SIGTERM:  # the leader is gone; its group may not be
                try:
                    os.killpg(child.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            break
        except subprocess.TimeoutExpired:
            continue
