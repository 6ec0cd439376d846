"""Benchmark: one node at a time against independent nodes at once (issue #27 item 1).

    .venv/bin/python bench/parallel_nodes.py [--repeat 3] [--parallel 2] [--example penguin|taxi]

The penguin example with its InfraValidator (``infra_validation=True``: after the Trainer, the
InfraValidator, the Trainer's ONNX export and the Evaluator do not depend on each other), or the taxi
example (the ONNX export beside the Evaluator), through ``sluice run FILE --parallel 1`` and
``--parallel N``, each a fresh process with a fresh root and store, timed from here the same way,
taking turns at going first. Prints each side's whole-process time (median [min-max]), their ratio per
repeat, each node's own time, and, from the store's records of each run, how many seconds two or more
nodes were executing at once.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import REPO, machine, median, ratios, run_measured, spread, turns  # noqa: E402

PENGUIN = os.path.join(REPO, 'pipelines', 'examples', 'penguin')
PIPELINE = '''
import sys
sys.path.insert(0, {penguin!r})
from penguin_pipeline import create_pipeline as penguin


def create_pipeline():
    return penguin(root={root!r}, infra_validation=True, metadata={url!r})
'''
TAXI = os.path.join(REPO, 'pipelines', 'examples', 'taxi')
TAXI_PIPELINE = '''
import sys
sys.path.insert(0, {taxi!r})
from taxi_pipeline import create_pipeline as taxi


def create_pipeline():
    return taxi(root={root!r}, metadata={url!r})
'''
LINE = re.compile(r'^\[\d+/\d+\] (\S+) +(COMPLETE|CACHED|FAILED|SKIPPED) +([\d.]+)s', re.M)


def overlapped_seconds(url: str) -> float:
    """Seconds during which two or more of the run's executions were between registered and ended."""
    from sluice.metadata import MetadataStore

    store = MetadataStore(url, create=False)
    [run] = store.runs()
    edges = sorted([(e.create_time, 1) for e in store.executions(run.run_id)]
                   + [(e.update_time, -1) for e in store.executions(run.run_id)])
    busy, since, total = 0, 0.0, 0.0
    for when, step in edges:
        if busy >= 2:
            total += when - since
        busy, since = busy + step, when
    return total


def run_side(parallel: int, example: str = 'penguin') -> dict:
    work = tempfile.mkdtemp(prefix='sluice-bench-parallel-')
    try:
        root, url = os.path.join(work, 'root'), f"sqlite:///{os.path.join(work, 'm.db')}"
        path = os.path.join(work, 'pipeline.py')
        with open(path, 'w') as f:
            f.write(PIPELINE.format(penguin=PENGUIN, root=root, url=url) if example == 'penguin'
                    else TAXI_PIPELINE.format(taxi=TAXI, root=root, url=url))
        m = run_measured(['-m', 'sluice.ui.cli', 'run', path, '--parallel', str(parallel)], cwd=work)
        nodes = {node: float(seconds) for node, _, seconds in LINE.findall(m.proc.stdout)}
        return {'seconds': m.seconds, 'peak': m.peak / 2**20, 'nodes': nodes, 'overlap': overlapped_seconds(url)}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--parallel', type=int, default=2)
    parser.add_argument('--example', choices=('penguin', 'taxi'), default='penguin')
    args = parser.parse_args()
    what = 'penguin example with an InfraValidator' if args.example == 'penguin' else 'taxi example'
    header = (f'{what}, `sluice run --parallel 1` vs `--parallel {args.parallel}`, '
              f'a fresh process, root and store per side and repeat, {args.repeat} repeats taking turns; {machine()}')
    sides = {'serial': 1, 'parallel': args.parallel}
    reps = []
    for i in range(args.repeat):
        reps.append({name: run_side(sides[name], args.example) for name in turns(list(sides), i)})
        print(f'repeat {i + 1}: ' + ', '.join(f'{n} {r["seconds"]:.1f} s' for n, r in reps[-1].items()),
              file=sys.stderr, flush=True)
    print(header)
    serial, parallel = [r['serial'] for r in reps], [r['parallel'] for r in reps]
    a, b = [r['seconds'] for r in serial], [r['seconds'] for r in parallel]
    print(f'  {"":<24}{"--parallel 1":>26}{f"--parallel {args.parallel}":>26}{"ratio":>26}')
    print(f'  {"whole process s":<24}{spread(a, ".1f"):>26}{spread(b, ".1f"):>26}{spread(ratios(b, a), ".3f"):>26}')
    pa, pb = [r['peak'] for r in serial], [r['peak'] for r in parallel]
    print(f'  {"peak RSS MB":<24}{spread(pa, ",.0f"):>26}{spread(pb, ",.0f"):>26}{spread(ratios(pb, pa), ".3f"):>26}')
    oa, ob = [r['overlap'] for r in serial], [r['overlap'] for r in parallel]
    print(f'  {"2+ nodes at once, s":<24}{spread(oa, ".1f"):>26}{spread(ob, ".1f"):>26}')
    for node in serial[0]['nodes']:
        na, nb = [r['nodes'].get(node, 0.0) for r in serial], [r['nodes'].get(node, 0.0) for r in parallel]
        print(f'  {node + " s":<24}{spread(na, ".1f"):>26}{spread(nb, ".1f"):>26}'
              + (f'{spread(ratios(nb, na), ".3f"):>26}' if median(na) >= 0.5 else f'{"(too short)":>26}'))


if __name__ == '__main__':
    main()
