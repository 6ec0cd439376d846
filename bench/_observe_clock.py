"""One ``sluice run`` in this process, with a clock on everything the watching of a run does in it
(see observe_overhead.py): the observe package's own import (after the parts of
Sluice it uses, which the run needs anyway), each trace call (a run's span opened, each
node attempt's span opened and closed, the trace ended with its exporters shut down) and the end of
run report (metrics exported, callbacks called; with what it starts ahead: ``before_run`` when the run
starts, ``start_report`` before the run's lease is released). Prints one JSON line: the run's wall
seconds, from before the CLI is imported to after it returns, the seconds spent in those calls, and
how many of the run's nodes ended in each state (a "cached re-run" whose nodes executed is not one).

    python bench/_observe_clock.py sluice-run-args...
"""
from __future__ import annotations

import contextlib
import json
import sys
import time

START = time.perf_counter()
spent = {'import': 0.0, 'trace': 0.0, 'after_run': 0.0}
states: dict[str, int] = {}


def clocked(kind: str, fn):
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[kind] += time.perf_counter() - t
    return wrapper


def clocked_span(fn):
    """A node's span: the time to open and to close it, not the node's own work inside."""
    @contextlib.contextmanager
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        cm = fn(*args, **kwargs)
        facts = cm.__enter__()
        spent['trace'] += time.perf_counter() - t
        try:
            yield facts
        except BaseException:
            t = time.perf_counter()
            if not cm.__exit__(*sys.exc_info()):
                spent['trace'] += time.perf_counter() - t
                raise
        else:
            t = time.perf_counter()
            cm.__exit__(None, None, None)
        spent['trace'] += time.perf_counter() - t
    return wrapper


def main() -> int:
    import sluice.components  # noqa: F401 - what the observe package needs, and the run anyway
    import sluice.metadata  # noqa: F401
    t = time.perf_counter()
    import sluice.observe
    import sluice.observe.trace
    spent['import'] = time.perf_counter() - t
    from sluice.observe.trace import RunTrace
    RunTrace.begin = classmethod(clocked('trace', RunTrace.begin.__func__))
    RunTrace.node = clocked_span(RunTrace.node)
    RunTrace.end = clocked('trace', RunTrace.end)
    import sluice.orchestration.core as core
    report = clocked('after_run', core.after_run)
    core.before_run = clocked('after_run', core.before_run)  # the report's parts started ahead
    core.start_report = clocked('after_run', core.start_report)

    def after_run(pipeline, store, result, *args, **kwargs):
        for node in result.nodes.values():
            states[node.state] = states.get(node.state, 0) + 1
        return report(pipeline, store, result, *args, **kwargs)

    core.after_run = after_run
    from sluice.ui.cli import main as cli
    status = cli(sys.argv[1:])
    total = time.perf_counter() - START
    print(json.dumps({'status': status, 'total': total, **spent, 'states': states}))
    return 0


if __name__ == '__main__':
    sys.exit(main())
