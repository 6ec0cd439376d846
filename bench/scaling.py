"""Benchmark: ExampleGen + StatisticsGen + Transform on the taxi data resampled to 1x, 10x, 100x rows.

    .venv/bin/python bench/scaling.py [--sizes 1 10 100] [--repeat 2]

For each size, writes the resampled CSV under bench/out/ (kept out of git; written once, reused),
then, in each repeat, runs the four nodes in a fresh process (one worker, DirectRunner) and records
the wall time of that process (measured here), its peak memory (the child's own max RSS; Beam runs
in it) and each node's time. The sizes take turns within a repeat (1x, 10x, 100x, 1x, ...). Prints
each figure as median [min-max] over the repeats, and the ratios of each size to the smallest one
(per repeat), to show how time and memory grow with the rows.
"""
from __future__ import annotations

import argparse
import csv
import os
import random
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import REPO, TAXI_DIR, machine, ratios, run_python, spread  # noqa: E402

OUT = os.path.join(REPO, 'bench', 'out')

CHILD = '''
from components import CsvExampleGen, ImportSchemaGen, StatisticsGen, Transform
from pipelines import LocalDagRunner, Pipeline
gen = CsvExampleGen(input_base={data!r})
stats = StatisticsGen(examples=gen.outputs['examples'])
schema = ImportSchemaGen(schema_file={schema!r})
transform = Transform(examples=gen.outputs['examples'], schema=schema.outputs['schema'], module_file={module!r})
result = LocalDagRunner(progress=False).run(Pipeline('scaling', {root!r}, [gen, stats, schema, transform],
                                                     beam_pipeline_args=['--direct_num_workers=1']))
assert result.state == 'COMPLETE', {{k: n.error for k, n in result.nodes.items() if n.error}}
import json, resource
print(json.dumps({{'peak_kib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  'nodes': {{k: n.duration for k, n in result.nodes.items()}}}}))
'''


def resample(times: int) -> tuple[str, int]:
    """taxi.csv with ``times`` as many rows (sampled with replacement, fixed seed), streamed to disk."""
    directory = os.path.join(OUT, f'taxi_x{times}')
    path = os.path.join(directory, 'taxi.csv')
    with open(os.path.join(TAXI_DIR, 'data', 'taxi.csv'), newline='') as f:
        reader = csv.reader(f)
        header, rows = next(reader), list(reader)
    n = len(rows) * times
    if not os.path.isfile(path):
        os.makedirs(directory, exist_ok=True)
        rng = random.Random(times)
        with open(path + '.partial', 'w', newline='') as f:
            writer = csv.writer(f)
            writer.writerow(header)
            for _ in range(n):
                writer.writerow(rng.choice(rows))
        os.replace(path + '.partial', path)
    return directory, n


def main() -> None:
    import json

    parser = argparse.ArgumentParser()
    parser.add_argument('--sizes', type=int, nargs='+', default=[1, 10, 100])
    parser.add_argument('--repeat', type=int, default=2)
    args = parser.parse_args()
    data = {times: resample(times) for times in args.sizes}
    seconds = {t: [] for t in args.sizes}
    peak = {t: [] for t in args.sizes}
    nodes = {t: [] for t in args.sizes}
    for _ in range(args.repeat):
        for times in args.sizes:
            root = os.path.join(OUT, f'root_x{times}')
            shutil.rmtree(root, ignore_errors=True)
            script = CHILD.format(data=data[times][0], schema=os.path.join(TAXI_DIR, 'schema', 'schema.pbtxt'),
                                  module=os.path.join(TAXI_DIR, 'taxi_module.py'), root=root)
            elapsed, proc = run_python(['-c', script], cwd=REPO)
            found = json.loads(proc.stdout.strip().splitlines()[-1])
            seconds[times].append(elapsed)
            peak[times].append(found['peak_kib'] / 1024)
            nodes[times].append(found['nodes'])
            shutil.rmtree(root, ignore_errors=True)

    base = args.sizes[0]
    print(f'CsvExampleGen + StatisticsGen + ImportSchemaGen + Transform, one fresh process per size and repeat, '
          f'DirectRunner one worker, {args.repeat} repeats; {machine()}')
    print(f'{"size":>6}{"rows":>12}{"CSV MB":>8}  {"seconds":>26}  {"rows/s":>26}  {"peak RSS MB":>26}')
    for times in args.sizes:
        rows = data[times][1]
        size = os.path.getsize(os.path.join(data[times][0], 'taxi.csv')) / 1e6
        print(f'{times:>5}x{rows:>12,}{size:>8,.0f}  {spread(seconds[times], ".1f"):>26}  '
              f'{spread([rows / s for s in seconds[times]], ",.0f"):>26}  {spread(peak[times], ",.0f"):>26}')
    print('  per node, seconds:')
    for times in args.sizes:
        print(f'{times:>5}x  ' + '  '.join(f'{node}={spread([n[node] for n in nodes[times]], ".1f")}'
                                         for node in nodes[times][0]))
    for times in args.sizes[1:]:
        print(f'  {times}x vs {base}x (per repeat): {times // base if times % base == 0 else times / base}x the rows, '
              f'{spread(ratios(seconds[times], seconds[base]), ".1f", "x")} the time, '
              f'{spread(ratios(peak[times], peak[base]), ".2f", "x")} the peak memory')


if __name__ == '__main__':
    main()
