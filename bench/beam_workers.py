"""Benchmark: the data components with one Beam worker vs several worker processes (DirectRunner).

    .venv/bin/python bench/beam_workers.py [--workers 2] [--repeat 3] [--scale 100]

Runs CsvExampleGen + StatisticsGen + ImportSchemaGen + Transform on the taxi data (``--scale N``: its rows
resampled N times by ``_common.resample``, under bench/out/) in a fresh
process per configuration and repeat: ``--direct_num_workers=1`` vs
``--direct_running_mode=multi_processing --direct_num_workers=N``. Both sides are whole processes
timed from here the same way, in a fresh directory, alternating which goes first. Prints each side
(median [min-max]), the per-repeat ratio, per node times, the parallelism achieved (CPU seconds of
the process tree, user + system, per wall second: whole process and per node), and checks that
both sides wrote the same number of examples per split. (That the examples, statistics and
transformed values are the same is what tests/components/test_beam_runners.py asserts.)

Several processes are Sluice's warm pool (sluice.components.beam_pool: started once, kept for every
Beam pipeline of the process); ``--fresh`` adds a third side, the same arguments with the pool
turned off (``SLUICE_BEAM_WORKER_POOL=0``), where Beam starts new worker processes for each Beam
pipeline, and a table of the pool against it.

CPU: the whole process's is the getrusage(RUSAGE_CHILDREN) delta around it in this process, which
counts the worker processes once they are reaped (the process waits for them before it exits: the
sum of /proc samples of the tree, printed beside it, agrees); a node's is getrusage SELF + CHILDREN in
the child between the runner's node-started and node-finished hooks, which counts the workers of
Beam's own per-pipeline processes (reaped when the pipeline ends, inside the node) but not the warm
pool's (reaped at exit): with the pool, read the per-node CPU/wall as the driver's alone.

bench/scaling.py runs this comparison at each size as its section 2; this script is the quicker way
to look at one size alone.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import REPO, TAXI_DIR, machine, median, ratios, resample, run_measured, spread, turns  # noqa: E402

CHILD = '''
import json, resource, sys, time
sys.path.insert(0, {bench!r})
from _common import data_components
from sluice import LocalDagRunner, Pipeline
from sluice.orchestration.run import Progress


def cpu_now():
    own, reaped = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + reaped.ru_utime + reaped.ru_stime


class NodeClock(Progress):
    """Silent progress that records each launched node's CPU seconds (this process and the worker
    processes it reaped) and wall seconds between the runner's node hooks."""
    def __init__(self):
        super().__init__(enabled=False)
        self.begun, self.cpu, self.wall = {{}}, {{}}, {{}}

    def node_started(self, index, total, node_id):
        super().node_started(index, total, node_id)
        self.begun[node_id] = (cpu_now(), time.perf_counter())

    def node_finished(self, index, total, result):
        super().node_finished(index, total, result)
        if result.node_id in self.begun:
            cpu, wall = self.begun.pop(result.node_id)
            self.cpu[result.node_id], self.wall[result.node_id] = cpu_now() - cpu, time.perf_counter() - wall


clock = NodeClock()
result = LocalDagRunner(progress=clock).run(Pipeline('workers', {root!r}, data_components({data!r}),
                                                     beam_pipeline_args={args!r}))
assert result.state == 'COMPLETE', {{k: n.error for k, n in result.nodes.items() if n.error}}
print(json.dumps({{'rows': result['CsvExampleGen'].outputs['examples'].get('row_counts'),
                  'nodes': {{k: n.duration for k, n in result.nodes.items()}},
                  'node_cpu': clock.cpu, 'node_wall': clock.wall}}))
'''


def sides(workers: int) -> dict[str, list[str]]:
    """The two configurations compared: Beam arguments of each."""
    return {'one': ['--direct_num_workers=1'],
            'multi': ['--direct_running_mode=multi_processing', f'--direct_num_workers={workers}']}


# The third side (--fresh): the same Beam arguments as 'multi' with Sluice's warm pool turned off, so
# that Beam starts new worker processes for every Beam pipeline.
FRESH_ENV = {'SLUICE_BEAM_WORKER_POOL': '0'}


def run_side(data: str, beam_args: list[str], env: dict | None = None) -> dict:
    """The data components in a fresh process and a fresh root: wall, CPU and peak memory of its
    process tree, and per node duration, CPU and wall."""
    root = tempfile.mkdtemp(prefix='sluice-bench-workers-')
    try:
        script = CHILD.format(bench=os.path.dirname(os.path.abspath(__file__)), data=data, root=root,
                              args=beam_args)
        m = run_measured(['-c', script], cwd=REPO, env=env)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {'seconds': m.seconds, 'cpu': m.cpu, 'cpu_seen': m.cpu_seen, 'peak': m.peak / 2**20,
            'peak_pss': m.peak_pss / 2**20,
            **json.loads(m.proc.stdout.strip().splitlines()[-1])}


def measure_pair(data: str, workers: int, repeat_index: int, fresh: bool = False) -> dict[str, dict]:
    """One repeat of both sides (and of 'fresh'); which goes first turns with ``repeat_index``."""
    config = sides(workers)
    if fresh:
        config['fresh'] = config['multi']
    return {name: run_side(data, config[name], FRESH_ENV if name == 'fresh' else None)
            for name in turns(config, repeat_index)}


def report(reps: list[dict[str, dict]], workers: int, indent: str = '  ') -> list[str]:
    """Prints both sides, their ratio and parallelism, whole process and per node; returns what
    missed (``workers`` processes not faster than one), each with its figures."""
    one, multi = [r['one'] for r in reps], [r['multi'] for r in reps]
    config = sides(workers)

    def both(key: str) -> tuple[list[float], list[float]]:
        return [r[key] for r in one], [r[key] for r in multi]

    a, b = both('seconds')
    print(f'{indent}{"":<26}{"one worker":>28}{f"{workers} worker processes":>28}{f"{workers} / one":>28}')
    print(f'{indent}{"whole process s":<26}{spread(a, ".1f"):>28}{spread(b, ".1f"):>28}'
          f'{spread(ratios(b, a), ".3f"):>28}')
    cpu_one, cpu_multi = both('cpu')
    par_one, par_multi = ratios(cpu_one, a), ratios(cpu_multi, b)
    print(f'{indent}{"  CPU s / wall s":<26}{spread(par_one, ".2f"):>28}{spread(par_multi, ".2f"):>28}')
    seen_one, seen_multi = both('cpu_seen')
    print(f'{indent}{"  CPU s (getrusage)":<26}{spread(cpu_one, ".1f"):>28}{spread(cpu_multi, ".1f"):>28}')
    print(f'{indent}{"  CPU s (/proc samples)":<26}{spread(seen_one, ".1f"):>28}{spread(seen_multi, ".1f"):>28}')
    pa, pb = both('peak')
    print(f'{indent}{"  peak RSS MB":<26}{spread(pa, ",.0f"):>28}{spread(pb, ",.0f"):>28}'
          f'{spread(ratios(pb, pa), ".3f"):>28}')
    pa, pb = both('peak_pss')  # forked workers share the zygote's pages: RSS counts them in each
    print(f'{indent}{"  peak PSS MB":<26}{spread(pa, ",.0f"):>28}{spread(pb, ",.0f"):>28}'
          f'{spread(ratios(pb, pa), ".3f"):>28}')
    for node in one[0]['nodes']:
        na, nb = [r['nodes'][node] for r in one], [r['nodes'][node] for r in multi]
        print(f'{indent}{node + " s":<26}{spread(na, ".1f"):>28}{spread(nb, ".1f"):>28}'
              + (f'{spread(ratios(nb, na), ".3f"):>28}' if median(na) >= 0.5 else f'{"(too short)":>28}'))
        if median(na) >= 0.5 and node in one[0].get('node_cpu', {}):
            ca = ratios([r['node_cpu'][node] for r in one], [r['node_wall'][node] for r in one])
            cb = ratios([r['node_cpu'][node] for r in multi], [r['node_wall'][node] for r in multi])
            print(f'{indent}{"  CPU s / wall s":<26}{spread(ca, ".2f"):>28}{spread(cb, ".2f"):>28}')
    rows = {json.dumps(r['rows'], sort_keys=True) if not isinstance(r['rows'], str) else r['rows']
            for r in one + multi}
    print(f'{indent}examples per split, every run: {" / ".join(sorted(rows))}'
          + ('' if len(rows) == 1 else '  DIFFERENT'))
    print(f'{indent}(one: {" ".join(config["one"])}; {workers} processes: {" ".join(config["multi"])})')
    if 'fresh' in reps[0]:
        report_fresh(reps, workers, indent)
    missed = []
    if len(rows) != 1:
        missed.append(f'{workers} worker processes wrote other example counts than one: {sorted(rows)}')
    if median(ratios(b, a)) >= 1.0:
        missed.append(f'{workers} worker processes not faster than one: {median(ratios(b, a)):.3f}x the time, '
                      f'{median(b) - median(a):+.1f} s; CPU/wall {median(par_multi):.2f} vs {median(par_one):.2f}')
    if median(seen_multi) > 1.1 * median(cpu_multi):
        missed.append('the /proc samples saw more CPU than getrusage counted: worker processes not reaped? '
                      'read the CPU/wall figures from the /proc line')
    return missed


def report_fresh(reps: list[dict[str, dict]], workers: int, indent: str) -> None:
    """The warm pool ('multi') against Beam's own worker processes started per Beam pipeline ('fresh')."""
    print(f'{indent}{workers} processes, Sluice\'s warm pool vs Beam starting them for each Beam pipeline '
          f'(SLUICE_BEAM_WORKER_POOL=0):')
    print(f'{indent}{"":<26}{"warm pool":>28}{"fresh per pipeline":>28}{"warm / fresh":>28}')
    keys = [('whole process s', lambda r: r['seconds'], '.1f'), ('  peak RSS MB', lambda r: r['peak'], ',.0f')]
    keys += [(f'{node} s', lambda r, node=node: r['nodes'][node], '.1f') for node in reps[0]['one']['nodes']]
    for label, get, fmt in keys:
        warm, fresh = [get(r['multi']) for r in reps], [get(r['fresh']) for r in reps]
        print(f'{indent}{label:<26}{spread(warm, fmt):>28}{spread(fresh, fmt):>28}'
              + (f'{spread(ratios(warm, fresh), ".3f"):>28}' if median(fresh) >= 0.5 else f'{"(too short)":>28}'))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--scale', type=int, default=1, help='the taxi rows times N (resampled, fixed seed)')
    parser.add_argument('--fresh', action='store_true', help="also N processes without Sluice's warm pool")
    args = parser.parse_args()
    header = (f'taxi data x{args.scale}, components (CsvExampleGen, StatisticsGen, ImportSchemaGen, Transform), '
              f'DirectRunner, a fresh process per side and repeat, {args.repeat} repeats alternating which goes '
              f'first; {machine()}')  # the load before the runs
    data = os.path.join(TAXI_DIR, 'data') if args.scale == 1 else resample(args.scale)[0]
    reps = [measure_pair(data, args.workers, i, args.fresh) for i in range(args.repeat)]
    print(header)
    missed = report(reps, args.workers)
    for line in missed:
        print(f'  MISSED {line}')
    if any('other example counts' in line for line in missed):
        sys.exit(1)


if __name__ == '__main__':
    main()
