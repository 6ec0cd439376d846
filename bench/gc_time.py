"""What Python's cyclic garbage collector costs a command: the collections it makes and their time.

    .venv/bin/python bench/gc_time.py sluice run pipelines/examples/taxi/taxi_pipeline.py --no-cache -q

Runs the console script (or ``-m module``) named by the arguments in this process, with a
``gc.callbacks`` hook that times every collection, and prints per generation the collections and
their seconds, the longest, and the command's wall time. The totals are written to a file as they
grow (``sluice`` ends its process with ``os._exit`` and sends its output to the run's log), then
printed from there by a second process. One run of the command, not a comparison: run it on two
commits, or with and without a setting, and compare.
"""
from __future__ import annotations

import json
import os
import runpy
import shutil
import subprocess
import sys
import tempfile
import time


def hooked(out: str, argv: list[str]) -> None:
    """Run ``argv`` here with every collection timed into ``out`` (JSON, rewritten as it grows)."""
    import gc

    totals = {'start': time.time(), 'by_generation': {}, 'longest': 0.0}
    began = [0.0]

    def timed(phase: str, info: dict) -> None:
        if phase == 'start':
            began[0] = time.perf_counter()
            return
        seconds = time.perf_counter() - began[0]
        count, spent = totals['by_generation'].get(str(info['generation']), (0, 0.0))
        totals['by_generation'][str(info['generation'])] = (count + 1, spent + seconds)
        totals['longest'] = max(totals['longest'], seconds)
        totals['end'] = time.time()
        with open(out, 'w') as f:
            json.dump(totals, f)

    gc.callbacks.append(timed)
    if argv[0] == '-m':
        sys.argv = argv[1:]
        runpy.run_module(argv[1], run_name='__main__', alter_sys=True)
    else:
        sys.argv = [shutil.which(argv[0]) or argv[0], *argv[1:]]
        runpy.run_path(sys.argv[0], run_name='__main__')


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == '--hooked':
        hooked(sys.argv[2], sys.argv[3:])
        return
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    out = os.path.join(tempfile.mkdtemp(prefix='sluice-gc-time-'), 'gc.json')
    env = {**os.environ, 'PATH': os.path.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', '')}
    start = time.perf_counter()
    status = subprocess.run([sys.executable, __file__, '--hooked', out, *sys.argv[1:]], env=env).returncode
    wall = time.perf_counter() - start
    try:
        with open(out) as f:
            totals = json.load(f)
    except FileNotFoundError:
        totals = {'by_generation': {}, 'longest': 0.0}
    finally:
        shutil.rmtree(os.path.dirname(out), ignore_errors=True)
    spent = sum(s for _, s in totals['by_generation'].values())
    print(f'command ended with status {status} in {wall:.1f} s; in the cyclic collector {spent:.2f} s '
          f'({100 * spent / wall:.1f}%), the longest collection {totals["longest"]:.3f} s')
    for generation, (count, seconds) in sorted(totals['by_generation'].items()):
        print(f'  generation {generation}: {count} collections, {seconds:.2f} s')


if __name__ == '__main__':
    main()
