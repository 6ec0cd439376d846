"""Benchmark: ExampleGen + StatisticsGen + Transform on the taxi data resampled to 1x, 10x, 100x rows.

    .venv/bin/python bench/scaling.py [--sizes 1 10 100]

For each size, writes the resampled CSV under bench/out/ (kept out of git), then runs the three
components in a fresh process (one worker, DirectRunner) and prints the wall time, the rows per
second and the peak memory (max RSS) of that process, to show memory staying flat as rows grow.
"""
from __future__ import annotations

import argparse
import csv
import os
import random
import shutil
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAXI = os.path.join(REPO, 'pipelines', 'examples', 'taxi')
OUT = os.path.join(REPO, 'bench', 'out')

CHILD = '''
import os, sys
sys.path.insert(0, {repo!r})
from components import CsvExampleGen, ImportSchemaGen, StatisticsGen, Transform
from pipelines import LocalDagRunner, Pipeline
gen = CsvExampleGen(input_base={data!r})
stats = StatisticsGen(examples=gen.outputs['examples'])
schema = ImportSchemaGen(schema_file={schema!r})
transform = Transform(examples=gen.outputs['examples'], schema=schema.outputs['schema'], module_file={module!r})
result = LocalDagRunner(progress=False).run(Pipeline('scaling', {root!r}, [gen, stats, schema, transform],
                                                     beam_pipeline_args=['--direct_num_workers=1']))
assert result.state == 'COMPLETE', {{k: n.error for k, n in result.nodes.items() if n.error}}
import resource
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
print(' '.join(f'{{k}}={{n.duration:.1f}}' for k, n in result.nodes.items()))
'''


def resample(times: int) -> tuple[str, int]:
    """taxi.csv with ``times`` as many rows (sampled with replacement, fixed seed), streamed to disk."""
    directory = os.path.join(OUT, f'taxi_x{times}')
    path = os.path.join(directory, 'taxi.csv')
    with open(os.path.join(TAXI, 'data', 'taxi.csv'), newline='') as f:
        reader = csv.reader(f)
        header, rows = next(reader), list(reader)
    n = len(rows) * times
    if not os.path.isfile(path):
        os.makedirs(directory, exist_ok=True)
        rng = random.Random(times)
        with open(path, 'w', newline='') as f:
            writer = csv.writer(f)
            writer.writerow(header)
            for _ in range(n):
                writer.writerow(rng.choice(rows))
    return directory, n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--sizes', type=int, nargs='+', default=[1, 10, 100])
    args = parser.parse_args()
    print(f'{"size":>6}{"rows":>12}{"seconds":>10}{"rows/s":>10}{"peak RSS MB":>13}  per node (s)')
    for times in args.sizes:
        data, rows = resample(times)
        root = os.path.join(OUT, f'root_x{times}')
        shutil.rmtree(root, ignore_errors=True)
        script = CHILD.format(repo=REPO, data=data, schema=os.path.join(TAXI, 'schema', 'schema.pbtxt'),
                              module=os.path.join(TAXI, 'taxi_module.py'), root=root)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(proc.stderr[-3000:])
        lines = proc.stdout.strip().splitlines()
        peak = int(lines[-2])  # KiB: the process's own maximum resident set (Beam runs in it)
        print(f'{times:>5}x{rows:>12,}{seconds:>10.1f}{rows / seconds:>10,.0f}{peak / 1024:>13,.0f}  {lines[-1]}')
        shutil.rmtree(root, ignore_errors=True)


if __name__ == '__main__':
    main()
