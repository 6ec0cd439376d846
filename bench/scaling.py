"""Benchmark (issue #15): the taxi pipeline at 1x, 10x and 100x its rows, in one sitting.

    .venv/bin/python bench/scaling.py [--sizes 1 10 100] [--repeat 3] [--workers 2] [--train-steps 300]

The data is pipelines/examples/taxi/data/taxi.csv resampled with replacement to N times its rows
(``_common.resample``: fixed seed per size, written once under bench/out/, reused). In each repeat
the sizes take turns (1x, 10x, 100x, then the next repeat), and at each size both comparisons run,
their two sides alternating which goes first from one repeat to the next; after the sizes, the two
probes of section 4. Every measured thing is a fresh process of this interpreter, timed from here.

1. Sluice vs a plain script (bench/taxi_vs_plain.py's sides and table): the whole taxi pipeline
   through Sluice and a plain script making the same library calls; per node, whole process, the
   ratio Sluice / plain per repeat, CPU seconds per wall second, peak memory of each process tree.
2. One vs ``--workers`` DirectRunner workers (bench/beam_workers.py's sides and table): CsvExampleGen,
   StatisticsGen, ImportSchemaGen and Transform with ``--direct_num_workers=1`` vs
   ``--direct_running_mode=multi_processing --direct_num_workers=N``; whole process and per node,
   with the parallelism achieved (CPU seconds of the process tree per wall second).
3. Growth with the rows: the Sluice side of 1 at each size vs the smallest size, per repeat (time,
   rows per second, peak memory).
4. Where the time goes, measured; a short form always, the details whenever a target is missed
   (Sluice / plain above 1.05x the time or 1.10x the peak memory at 10x and more, or N workers not
   faster than one):
   - per node on both sides: the tables of 1 and 2 (the details list the nodes by seconds added);
   - imports: a fresh process importing, one at a time, what each side was seen to have imported
     by its end (of the libraries listed in taxi_vs_plain.LIBRARIES; Sluice also imports its own
     packages, first);
   - worker start-up: the same trivial Beam pipeline (a few elements through a Map) in a fresh
     process with one worker vs N worker processes; the difference is what starting N workers
     costs. Then, in the same process, a second pipeline whose Map imports the libraries the data
     components' Beam stages come from (tensorflow, tfx_bsl, TFDV, tf.Transform) and records, in
     each process that runs it, how long that took: a worker's import cost, against the same
     imports in the one process of the one-worker side;
   - parallelism: CPU seconds (user + system) of the process tree per wall second, one worker vs
     N, whole process and per node (section 2). The getrusage(RUSAGE_CHILDREN) delta counts Beam's
     worker processes once they are reaped; the sum of /proc samples of the tree is printed beside
     it as the check (a gap over 10% is reported as a missed target).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import beam_workers  # noqa: E402
import taxi_vs_plain  # noqa: E402
from _common import OUT, REPO, machine, median, ratios, resample, run_measured, spread, turns  # noqa: E402

SLUICE_PACKAGES = ['metadata', 'pipelines', 'components']
# what the data components' Beam stages are made of: a worker process imports these to run them
WORKER_LIBRARIES = ['tensorflow', 'tfx_bsl', 'tensorflow_data_validation', 'tensorflow_transform']

IMPORTS = r'''
import importlib, json, os, sys, time
os.environ['TF_USE_LEGACY_KERAS'] = '1'  # as both sides set it
took = {}
for name in json.loads(sys.argv[1]):
    start = time.perf_counter()
    importlib.import_module(name)
    took[name] = time.perf_counter() - start
print(json.dumps(took))
'''

STARTUP = r'''
import json, os, sys, time
started = time.perf_counter()
import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
P = json.loads(sys.argv[1])
LIBRARIES, RECORDS = P['libraries'], P['records']
options = PipelineOptions(P['beam_args'] + ['--pickle_library=cloudpickle'])
beam_import = time.perf_counter() - started


def plus_one(x):
    return x + 1


def import_libraries(x):
    import importlib, uuid
    start = time.perf_counter()
    for name in LIBRARIES:
        importlib.import_module(name)
    took = time.perf_counter() - start
    with open(os.path.join(RECORDS, f'{os.getpid()}-{uuid.uuid4().hex}.json'), 'w') as f:
        json.dump([os.getpid(), took], f)
    return x


start = time.perf_counter()
with beam.Pipeline(options=options) as p:
    _ = p | beam.Create(list(range(P['elements']))) | beam.Map(plus_one)
trivial = time.perf_counter() - start
start = time.perf_counter()
with beam.Pipeline(options=options) as p:
    _ = p | beam.Create(list(range(P['elements']))) | beam.Reshuffle() | beam.Map(import_libraries)
importing = time.perf_counter() - start
first = {}
for name in os.listdir(RECORDS):
    with open(os.path.join(RECORDS, name)) as f:
        pid, took = json.load(f)
    first[pid] = max(first.get(pid, 0.0), took)  # the first call in a process pays; later ones find them loaded
print(json.dumps({'beam_import': beam_import, 'trivial': trivial, 'importing': importing,
                  'per_process': sorted(first.values()), 'here': os.getpid() in first}))
'''


def log(text: str) -> None:
    print(f'[{time.strftime("%H:%M:%S")}] {text}', file=sys.stderr, flush=True)


def import_probe(names: list[str]) -> dict:
    """A fresh process importing ``names`` one at a time: each one's seconds (what it added to what was
    already imported), and the whole process."""
    m = run_measured(['-c', IMPORTS, json.dumps(names)], cwd=REPO)
    took = json.loads(m.proc.stdout.strip().splitlines()[-1])
    return {'seconds': m.seconds, 'took': took, 'total': sum(took.values())}


def startup_probe(beam_args: list[str], elements: int) -> dict:
    """A fresh process running the trivial pipeline, then the importing one, with ``beam_args``."""
    with tempfile.TemporaryDirectory(prefix='sluice-bench-startup-') as records:
        params = {'beam_args': beam_args, 'libraries': WORKER_LIBRARIES, 'records': records, 'elements': elements}
        m = run_measured(['-c', STARTUP, json.dumps(params)], cwd=REPO)
    return {'seconds': m.seconds, 'cpu': m.cpu, **json.loads(m.proc.stdout.strip().splitlines()[-1])}


def probes(imported: dict[str, list[str]], workers: int, repeat_index: int) -> dict:
    """One repeat of the imports probe (both sides) and the start-up probe (both sides), each pair
    alternating which goes first."""
    names = {'sluice': SLUICE_PACKAGES + imported['sluice'], 'plain': imported['plain']}
    found = {'imports': {side: import_probe(names[side]) for side in turns(['sluice', 'plain'], repeat_index)}}
    config = beam_workers.sides(workers)
    found['startup'] = {name: startup_probe(config[name], 4 * workers) for name in turns(config, repeat_index)}
    return found


def report_growth(sizes: list[int], data: dict[int, tuple[str, int]], taxi: dict[int, list[dict]]) -> None:
    base = sizes[0]
    print(f'\n3. Sluice\'s growth with the rows (the Sluice side of 1, whole process; each size vs {base}x per repeat)')
    print(f'  {"size":>6}{"rows":>12}{"CSV MB":>8}{"seconds":>26}{"rows/s":>26}{"peak RSS MB":>26}'
          f'{"time vs " + str(base) + "x":>26}{"memory vs " + str(base) + "x":>26}')
    for times in sizes:
        rows, sl = data[times][1], [r['sluice'] for r in taxi[times]]
        seconds, peak = [s['seconds'] for s in sl], [s['peak'] for s in sl]
        base_seconds = [r['sluice']['seconds'] for r in taxi[base]]
        base_peak = [r['sluice']['peak'] for r in taxi[base]]
        size = os.path.getsize(os.path.join(data[times][0], 'taxi.csv')) / 1e6
        print(f'  {times:>5}x{rows:>12,}{size:>8,.0f}{spread(seconds, ".1f"):>26}'
              f'{spread([rows / s for s in seconds], ",.0f"):>26}{spread(peak, ",.0f"):>26}'
              f'{spread(ratios(seconds, base_seconds), ".2f", "x"):>26}'
              f'{spread(ratios(peak, base_peak), ".2f", "x"):>26}')


def report_where(sizes: list[int], taxi: dict[int, list[dict]], workers_reps: dict[int, list[dict]],
                 probe_reps: list[dict], workers: int, missed: list[str]) -> list[str]:
    """Section 4: the short form, then (when a target was missed) the details. Returns what it adds
    to the missed targets (the probes' own checks)."""
    imports = {side: [p['imports'][side] for p in probe_reps] for side in ('sluice', 'plain')}
    startup = {name: [p['startup'][name] for p in probe_reps] for name in ('one', 'multi')}
    totals = {side: [x['total'] for x in imports[side]] for side in imports}
    own = [sum(x['took'].get(n, 0.0) for n in SLUICE_PACKAGES) for x in imports['sluice']]
    one, multi = [x['trivial'] for x in startup['one']], [x['trivial'] for x in startup['multi']]
    in_workers = [t for x in startup['multi'] for t in x['per_process'] if not x['here']]
    in_one = [t for x in startup['one'] for t in x['per_process']]
    seen = [len(x['per_process']) for x in startup['multi']]
    print(f'\n4. Where the time goes ({len(probe_reps)} repeat(s) of each probe, fresh processes)')
    print(f'  imports, seconds inside a fresh process: sluice {spread(totals["sluice"], ".2f")} '
          f'(of which {", ".join(SLUICE_PACKAGES)}: {spread(own, ".2f")}), plain {spread(totals["plain"], ".2f")}; '
          f'sluice - plain {spread([a - b for a, b in zip(totals["sluice"], totals["plain"])], "+.2f")}')
    print(f'  worker start-up, trivial pipeline ({4 * workers} elements through a Map): one worker '
          f'{spread(one, ".2f")} s, {workers} worker processes {spread(multi, ".2f")} s; '
          f'starting {workers} workers costs '
          f'{spread([b - a for a, b in zip(one, multi)], "+.2f")} s')
    if in_workers:
        print(f'  importing {", ".join(WORKER_LIBRARIES)}: in a worker process {spread(in_workers, ".2f")} s '
              f'(each worker that ran the Map; {spread(seen, "g")} of {workers} did), in the one process of the '
              f'one-worker side {spread(in_one, ".2f")} s')
    else:
        print(f'  importing {", ".join(WORKER_LIBRARIES)}: no worker process of the {workers}-worker side ran the Map '
              f'(not measured); in the one process of the one-worker side {spread(in_one, ".2f")} s')
    for times in sizes:
        reps = workers_reps[times]
        par = {name: ratios([r[name]['cpu'] for r in reps], [r[name]['seconds'] for r in reps])
               for name in ('one', 'multi')}
        print(f'  parallelism at {times}x, data components, CPU s / wall s of the process tree: one worker '
              f'{spread(par["one"], ".2f")}, {workers} worker processes {spread(par["multi"], ".2f")} '
              f'(per node in section 2)')
    extra = []
    if not in_workers:
        extra.append(f'worker import cost not measured: no worker of the {workers}-worker start-up probe ran the Map')
    if not missed and not extra:
        return extra
    print('  details (a target was missed):')
    print(f'    {"import, seconds each":<34}{"plain":>26}{"sluice":>26}')
    for name in SLUICE_PACKAGES + taxi_vs_plain.LIBRARIES:
        got = {side: [x['took'][name] for x in imports[side] if name in x['took']] for side in imports}
        if got['plain'] or got['sluice']:
            print(f'    {name:<34}{spread(got["plain"], ".2f") if got["plain"] else "-":>26}'
                  f'{spread(got["sluice"], ".2f") if got["sluice"] else "-":>26}')
    whole = {side: [x['seconds'] for x in imports[side]] for side in imports}
    print(f'    {"whole import process":<34}{spread(whole["plain"], ".2f"):>26}{spread(whole["sluice"], ".2f"):>26}')
    for name, label in (('one', 'one worker'), ('multi', f'{workers} worker processes')):
        print(f'    start-up probe, {label}: whole process {spread([x["seconds"] for x in startup[name]], ".2f")} s, '
              f'import apache_beam {spread([x["beam_import"] for x in startup[name]], ".2f")} s, '
              f'importing pipeline {spread([x["importing"] for x in startup[name]], ".2f")} s')
    for times in sizes:
        reps = taxi[times]
        added = sorted(((median([r['sluice']['nodes'][k] - r['plain']['nodes'][k] for r in reps]), k)
                        for k in reps[0]['sluice']['nodes']), reverse=True)
        outside = [(r['sluice']['seconds'] - sum(r['sluice']['nodes'].values()))
                   - (r['plain']['seconds'] - sum(r['plain']['nodes'].values())) for r in reps]
        print(f'    {times}x, seconds Sluice added (median per repeat), largest first: '
              + ', '.join(f'{k} {v:+.2f}' for v, k in added) + f'; wall - sum of nodes (lower: nodes at once) {median(outside):+.2f}')
    return extra


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--sizes', type=int, nargs='+', default=[1, 10, 100], help='multiples of the taxi rows')
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--workers', type=int, default=2, help='DirectRunner worker processes against one')
    parser.add_argument('--train-steps', type=int, default=300)
    args = parser.parse_args()
    if sorted(set(args.sizes)) != args.sizes or min(args.sizes) < 1:
        parser.error(f'--sizes takes distinct whole multiples from 1 up, in increasing order; got {args.sizes}')
    if args.workers < 2:
        parser.error(f'--workers must be 2 or more (it is compared with one worker); got {args.workers}')
    started = time.perf_counter()
    header = (f'taxi pipeline at {", ".join(f"{t}x" for t in args.sizes)} the rows, {args.repeat} repeat(s), '
              f'train_steps={args.train_steps}; {machine()}')
    data = {times: resample(times) for times in args.sizes}
    taxi: dict[int, list[dict]] = {t: [] for t in args.sizes}
    workers: dict[int, list[dict]] = {t: [] for t in args.sizes}
    probe_reps: list[dict] = []
    for i in range(args.repeat):
        for times in args.sizes:
            log(f'repeat {i + 1}/{args.repeat}, {times}x: Sluice vs plain')
            taxi[times].append(taxi_vs_plain.measure_pair(data[times][0], args.train_steps, i))
            log(f'repeat {i + 1}/{args.repeat}, {times}x: one vs {args.workers} workers')
            workers[times].append(beam_workers.measure_pair(data[times][0], args.workers, i))
        log(f'repeat {i + 1}/{args.repeat}: imports and worker start-up probes')
        imported = {side: taxi[args.sizes[0]][i][side]['imported'] for side in ('sluice', 'plain')}
        probe_reps.append(probes(imported, args.workers, i))
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, f'scaling-{time.strftime("%Y%m%d-%H%M%S")}.json'), 'w') as f:
        json.dump({'taxi': taxi, 'workers': workers, 'probes': probe_reps}, f)  # raw measurements, out of git

    print(header)
    print('each figure: median [min-max, n] over the repeats; ratios and differences per repeat (pairs)')
    print('\n1. the whole taxi pipeline, Sluice vs a plain script making the same library calls '
          '(DirectRunner one worker; CPU s / wall s of each process tree)', end='')
    missed = []
    for times in args.sizes:
        missed += taxi_vs_plain.report_scale(times, data[times][1], taxi[times], args.train_steps)
    print(f'\n2. data components (CsvExampleGen, StatisticsGen, ImportSchemaGen, Transform), one worker vs '
          f'{args.workers} worker processes')
    for times in args.sizes:
        print(f'  {times}x: {data[times][1]:,} rows')
        missed += [f'{times}x {line}' for line in beam_workers.report(workers[times], args.workers, indent='    ')]
    report_growth(args.sizes, data, taxi)
    missed += report_where(args.sizes, taxi, workers, probe_reps, args.workers, missed)
    print(f'\ntargets (10x and up: every node of {taxi_vs_plain.SMALL} s or more and the whole process within '
          f'{taxi_vs_plain.TIME_TARGET}x of the plain script, peak memory within {taxi_vs_plain.MEMORY_TARGET}x; '
          f'{args.workers} workers faster than one, at every size):')
    for line in missed or ['all met']:
        print(f'  MISSED {line}' if missed else f'  {line}')
    print(f'(bench took {(time.perf_counter() - started) / 60:.1f} min)')


if __name__ == '__main__':
    main()
