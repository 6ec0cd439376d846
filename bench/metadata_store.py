"""Benchmark: the metadata store at 10,000 executions.

    .venv/bin/python bench/metadata_store.py [--runs 1000] [--nodes 10] [--repeat 5]

Fills a fresh SQLite store the way pipelines do (runs of a 10-node chain; each execution
registered RUNNING with its input, then published with one LIVE output). When a tenth of the runs
are in, and again at the end, it times ``--repeat`` times each: a cache lookup of one node and the
listing of the runs with their node states (so their growth with the number of runs is measured,
not assumed). At the end it also times, ``--repeat`` times each: registering and publishing an
execution (a sample is 100 of them) and the lineage of the last artifact (back through its 10
producers). Every figure is median [min-max] over the repeats; the fill is measured once.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import REPO, machine, ratio_of_medians, spread  # noqa: E402

sys.path.insert(0, REPO)


def timed(call, repeat: int) -> tuple[list[float], object]:
    times, value = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        value = call()
        times.append(time.perf_counter() - start)
    return times, value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--runs', type=int, default=1000)
    parser.add_argument('--nodes', type=int, default=10)
    parser.add_argument('--repeat', type=int, default=5)
    args = parser.parse_args()
    from sluice.metadata import Examples, MetadataStore

    directory = tempfile.mkdtemp(prefix='sluice-bench-mlmd-')
    try:
        store = MetadataStore(f'sqlite:///{directory}/metadata.db')
        nodes = [f'Node{i}' for i in range(args.nodes)]
        checkpoints = sorted({max(1, args.runs // 10), args.runs})
        lookups, listings = {}, {}
        fill = 0.0
        last = None
        for run in range(args.runs):
            started = time.perf_counter()
            run_id = f'run-{run:05d}'
            store.register_run('bench', run_id, {'node_ids': json.dumps(nodes)})
            previous = None
            for node in nodes:
                ex_id = store.register_execution('Bench', 'bench', run_id, node,
                                                 {'examples': [previous]} if previous else {},
                                                 {'cache_key': f'{run}-{node}'})
                out = Examples(uri=os.path.join(directory, node, str(ex_id)), split_names=['train'])
                store.publish_execution(ex_id, 'bench', run_id, node, {'examples': [out]})
                previous = last = out
            fill += time.perf_counter() - started
            if run + 1 in checkpoints:
                n = run + 1
                lookups[n], hits = timed(lambda: store.cache_candidates('bench', 'Node5', f'{n // 2}-Node5'),
                                         args.repeat)
                listings[n], runs = timed(lambda: store.runs('bench'), args.repeat)
                assert len(hits) == 1 and len(runs) == n, (len(hits), len(runs))
        total = args.runs * args.nodes

        def publish_100() -> None:
            for i in range(100):
                ex_id = store.register_execution('Bench', 'bench', 'run-00000', 'Extra', {}, {'cache_key': f'x{i}'})
                store.publish_execution(ex_id, 'bench', 'run-00000', 'Extra',
                                        {'examples': [Examples(uri=f'/tmp/x{i}')]})

        publish, _ = timed(publish_100, args.repeat)
        lineage, tree = timed(lambda: store.lineage(last.id), args.repeat)
        depth = sum(1 for _ in tree.walk())
        assert depth == args.nodes
        ms = [t * 1000 / 100 for t in publish]
        print(f'SQLite store, {total:,} executions and as many artifacts, filled in {fill:.1f} s '
              f'({fill / total * 1000:.2f} ms per execution, measured once); {args.repeat} repeats; {machine()}')
        print(f'  register + publish one execution (samples of 100): {spread(ms, ".2f", " ms")}')
        print(f'  lineage of the last artifact ({depth} artifacts deep): '
              f'{spread([t * 1000 for t in lineage], ".1f", " ms")}')
        for n in checkpoints:
            print(f'  with {n:,} runs ({n * args.nodes:,} executions):')
            print(f'    cache lookup (one node, {n:,} executions of it): '
                  f'{spread([t * 1000 for t in lookups[n]], ".1f", " ms")}')
            print(f'    list {n:,} runs with their node states: {spread(listings[n], ".3f", " s")}')
        if len(checkpoints) == 2:
            small, large = checkpoints
            print(f'  {large // small}x the runs: cache lookup {ratio_of_medians(lookups[large], lookups[small])}, '
                  f'listing {ratio_of_medians(listings[large], listings[small])}')
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == '__main__':
    main()
