"""An executor in a process of its own: the child's side (``sluice.orchestration.isolated`` starts it
and waits; the warm Beam pool's zygote forks it, ``beam_pool_worker``). It reads what to run from the
payload file, runs the executor, and writes the outputs' properties, or the error with its type,
message, traceback and whether a retry could help, to the result file.

    python -m sluice.components.executor_process PAYLOAD RESULT   # what the parent starts; not for users
"""
from __future__ import annotations

import os
import pickle
import signal
import sys
import traceback
from typing import Any


def die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent dies (a kill -9 of the run leaves no orphan)."""
    try:
        import ctypes

        ctypes.CDLL('libc.so.6', use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


# Polls for its parent, the executor's process; once that is gone (ended, or killed with its own parent),
# kills what is left of the process group. ``python -I -S``: nothing of the user's or site's imported.
_GROUP_GUARD = """
import os, signal, sys, time
while os.getppid() == int(sys.argv[1]):
    time.sleep(0.2)
os.killpg(os.getpgid(0), signal.SIGKILL)
"""


def end_group_with_this_process() -> None:
    """A small process in this process's group that kills the group once this process is gone: what the
    executor started (Beam's own worker processes, a subprocess of the user's) does not outlive a kill -9
    of the run, which kills the executor (``die_with_parent``) but not its children. Only when this
    process leads its group, as an executor's process does (a new session)."""
    import subprocess

    if os.getpgid(0) == os.getpid():
        subprocess.Popen([sys.executable, '-I', '-S', '-c', _GROUP_GUARD, str(os.getpid())],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_payload(payload_path: str, result_path: str) -> int:
    """Run the executor the payload names; 0 when it succeeded (the result file says how it ended)."""
    die_with_parent()
    end_group_with_this_process()
    with open(payload_path, 'rb') as f:
        where = pickle.load(f)
        sys.path[:] = where['sys_path']
        os.chdir(where['cwd'])  # (``sluice``, imported with this module, has set TensorFlow's environment)
        payload = pickle.load(f)
    from sluice.components.executor import rows_in
    from sluice.components.retry import retryable

    arguments = payload['arguments']
    try:
        executor = payload['executor'](beam_pipeline_args=payload['beam'], tmp_dir=payload['tmp_dir'],
                                       node_id=payload['node_id'])
        executor.input_rows = rows_in(arguments)
        executor.run(**arguments)
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which records it
        try:
            exception = pickle.dumps(e)
            pickle.loads(exception)
        except Exception:
            exception = None
        outcome: dict[str, Any] = {'error': {
            'type': type(e).__name__, 'message': str(e), 'retryable': retryable(e),
            'traceback': traceback.format_exc(), 'exception': exception}}
    else:
        outcome = {'outputs': {k: (a.properties, a.custom_properties) for k, a in arguments.items()
                               if hasattr(a, 'custom_properties') and hasattr(a, 'uri')}}
    with open(result_path + '.tmp', 'wb') as f:
        pickle.dump(outcome, f)
    os.replace(result_path + '.tmp', result_path)
    return 0 if 'outputs' in outcome else 1


if __name__ == '__main__':
    sys.exit(run_payload(sys.argv[1], sys.argv[2]))
