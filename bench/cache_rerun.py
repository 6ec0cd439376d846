"""Benchmark: a fully cached re-run of the demo pipeline vs its first run.

    .venv/bin/python bench/cache_rerun.py [--repeat 3]

Runs `sluice run pipelines/examples/demo/demo_pipeline.py` as a user would (a whole process each
time) in a fresh directory: once executing every node, then again with nothing changed. Prints the
wall time of each process, the ratio, and checks through the store that the re-run recorded only
CACHED executions.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
DEMO = os.path.join(REPO, 'pipelines', 'examples', 'demo', 'demo_pipeline.py')


def timed_run(cwd: str) -> float:
    env = {**os.environ, 'PYTHONPATH': REPO}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, '-m', 'pipelines.cli', 'run', DEMO], cwd=cwd, env=env,
                          capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f'sluice run failed:\n{proc.stdout}\n{proc.stderr}')
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--repeat', type=int, default=3, help='fresh directories to measure in')
    args = parser.parse_args()
    from metadata import MetadataStore

    firsts, seconds = [], []
    for _ in range(args.repeat):
        cwd = tempfile.mkdtemp(prefix='sluice-bench-')
        try:
            firsts.append(timed_run(cwd))
            seconds.append(timed_run(cwd))
            store = MetadataStore(f'sqlite:///{cwd}/runs/demo/metadata.db')
            last = store.runs('demo')[-1]
            states = sorted({e.state for e in store.executions(last.run_id)})
            if states != ['CACHED']:
                sys.exit(f'the re-run recorded {states}, expected only CACHED')
        finally:
            shutil.rmtree(cwd, ignore_errors=True)
    first, second = statistics.median(firsts), statistics.median(seconds)
    print(f'demo pipeline, whole `sluice run` process, median of {args.repeat} fresh directories')
    print(f'  first run (4 nodes executed on Beam DirectRunner): {first:.2f} s')
    print(f'  re-run, nothing changed (4 CACHED executions):      {second:.2f} s')
    print(f'  speed-up of the cached re-run: {first / second:.1f}x')


if __name__ == '__main__':
    main()
