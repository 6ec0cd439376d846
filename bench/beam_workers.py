"""Benchmark: the data components with one Beam worker vs several worker processes (DirectRunner).

    .venv/bin/python bench/beam_workers.py [--workers 2] [--repeat 3] [--scale 100]

Runs CsvExampleGen + StatisticsGen + ImportSchemaGen + Transform on the taxi data (``--scale N``: its rows
resampled N times, as bench/scaling.py writes them under bench/out/) in a fresh
process per configuration and repeat: ``--direct_num_workers=1`` vs
``--direct_running_mode=multi_processing --direct_num_workers=N``. Both sides are whole processes
timed from here the same way, in a fresh directory, alternating which goes first. Prints each side
(median [min-max]), the per-repeat ratio, per node times, and checks that both sides wrote the same
number of examples per split. (That the examples, statistics and transformed values are the same
is what tests/components/test_beam_runners.py asserts.)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import REPO, TAXI_DIR, machine, ratios, run_python, spread  # noqa: E402

CHILD = '''
import json
from components import CsvExampleGen, ImportSchemaGen, StatisticsGen, Transform
from pipelines import LocalDagRunner, Pipeline
gen = CsvExampleGen(input_base={data!r})
stats = StatisticsGen(examples=gen.outputs['examples'])
schema = ImportSchemaGen(schema_file={schema!r})
transform = Transform(examples=gen.outputs['examples'], schema=schema.outputs['schema'], module_file={module!r})
result = LocalDagRunner(progress=False).run(Pipeline('workers', {root!r}, [gen, stats, schema, transform],
                                                     beam_pipeline_args={args!r}))
assert result.state == 'COMPLETE', {{k: n.error for k, n in result.nodes.items() if n.error}}
print(json.dumps({{'rows': result['CsvExampleGen'].outputs['examples'].get('row_counts'),
                  'nodes': {{k: n.duration for k, n in result.nodes.items()}}}}))
'''


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--scale', type=int, default=1, help='the taxi rows times N (resampled, fixed seed)')
    args = parser.parse_args()
    from scaling import resample

    data = os.path.join(TAXI_DIR, 'data') if args.scale == 1 else resample(args.scale)[0]
    sides = {'one': ['--direct_num_workers=1'],
             'multi': ['--direct_running_mode=multi_processing', f'--direct_num_workers={args.workers}']}
    seconds = {k: [] for k in sides}
    found = {k: [] for k in sides}
    for i in range(args.repeat):
        for name in (list(sides) if i % 2 == 0 else list(sides)[::-1]):
            root = tempfile.mkdtemp(prefix='sluice-bench-workers-')
            try:
                script = CHILD.format(data=data,
                                      schema=os.path.join(TAXI_DIR, 'schema', 'schema.pbtxt'),
                                      module=os.path.join(TAXI_DIR, 'taxi_module.py'), root=root, args=sides[name])
                elapsed, proc = run_python(['-c', script], cwd=REPO)
            finally:
                shutil.rmtree(root, ignore_errors=True)
            seconds[name].append(elapsed)
            found[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    rows = {json.dumps(f['rows'], sort_keys=True) if not isinstance(f['rows'], str) else f['rows']
            for side in found.values() for f in side}
    print(f'taxi data x{args.scale}, components (CsvExampleGen, StatisticsGen, ImportSchemaGen, Transform), DirectRunner, '
          f'a fresh process per side and repeat, {args.repeat} repeats alternating which goes first; {machine()}')
    print(f'  one worker ({" ".join(sides["one"])}):  {spread(seconds["one"], ".1f", " s")}')
    print(f'  {args.workers} worker processes ({" ".join(sides["multi"])}):  '
          f'{spread(seconds["multi"], ".1f", " s")}')
    print(f'  ratio {args.workers} processes / one (per repeat): {spread(ratios(seconds["multi"], seconds["one"]), ".2f")}')
    for node in found['one'][0]['nodes']:
        print(f'    {node:<16} one {spread([f["nodes"][node] for f in found["one"]], ".1f", " s")}, '
              f'{args.workers} processes {spread([f["nodes"][node] for f in found["multi"]], ".1f", " s")}')
    print(f'  examples per split, every run: {" / ".join(sorted(rows))}'
          + ('' if len(rows) == 1 else '  DIFFERENT'))
    if len(rows) != 1:
        sys.exit(1)


if __name__ == '__main__':
    main()
