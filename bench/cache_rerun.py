"""Benchmark: a fully cached re-run of an example pipeline vs its first run.

    .venv/bin/python bench/cache_rerun.py [--example demo|penguin|taxi] [--repeat 3]

Runs `sluice run pipelines/examples/<example>/<example>_pipeline.py` as a user would (a whole
process each time) in a fresh directory: once executing every node, then again with nothing
changed. Prints the wall time of each process, the ratio, and checks through the store that the
re-run recorded only CACHED executions (and, for the cached run, that TensorFlow was not imported).
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


def timed_run(cwd: str, path: str, trace_imports: bool = False) -> float:
    env = {**os.environ, 'PYTHONPATH': REPO}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *(['-X', 'importtime'] if trace_imports else []), '-m', 'pipelines.cli',
                           'run', path], cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f'sluice run failed:\n{proc.stdout}\n{proc.stderr}')
    if trace_imports and any(line.rstrip().endswith(('| tensorflow', '| apache_beam'))
                             for line in proc.stderr.splitlines()):
        sys.exit('the cached run imported TensorFlow or Beam')
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--repeat', type=int, default=3, help='fresh directories to measure in')
    parser.add_argument('--example', default='demo', choices=['demo', 'penguin', 'taxi'])
    args = parser.parse_args()
    path = os.path.join(REPO, 'pipelines', 'examples', args.example, f'{args.example}_pipeline.py')
    from metadata import MetadataStore

    firsts, seconds = [], []
    for _ in range(args.repeat):
        cwd = tempfile.mkdtemp(prefix='sluice-bench-')
        try:
            firsts.append(timed_run(cwd, path))
            seconds.append(timed_run(cwd, path, trace_imports=True))
            store = MetadataStore(f'sqlite:///{cwd}/runs/{args.example}/metadata.db')
            last = store.runs(args.example)[-1]
            states = sorted({e.state for e in store.executions(last.run_id)})
            if states != ['CACHED']:
                sys.exit(f'the re-run recorded {states}, expected only CACHED')
        finally:
            shutil.rmtree(cwd, ignore_errors=True)
    first, second = statistics.median(firsts), statistics.median(seconds)
    n = len(store.executions(last.run_id))
    print(f'{args.example} pipeline, whole `sluice run` process, median of {args.repeat} fresh directories')
    print(f'  first run ({n} nodes executed):                 {first:.2f} s')
    print(f'  re-run, nothing changed ({n} CACHED executions): {second:.2f} s (no TensorFlow or Beam import)')
    print(f'  speed-up of the cached re-run: {first / second:.1f}x')


if __name__ == '__main__':
    main()
