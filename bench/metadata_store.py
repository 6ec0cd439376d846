"""Benchmark: the metadata store at 10,000 executions.

    .venv/bin/python bench/metadata_store.py [--runs 1000] [--nodes 10]

Fills a fresh SQLite store the way pipelines do (runs of a 10-node chain; each execution
registered RUNNING with its input, then published with one LIVE output), then times: one
registered-and-published execution, a cache lookup, the lineage of the last artifact (back
through its 10 producers), and listing the runs.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--runs', type=int, default=1000)
    parser.add_argument('--nodes', type=int, default=10)
    args = parser.parse_args()
    from metadata import Examples, MetadataStore

    directory = tempfile.mkdtemp(prefix='sluice-bench-mlmd-')
    try:
        store = MetadataStore(f'sqlite:///{directory}/metadata.db')
        nodes = [f'Node{i}' for i in range(args.nodes)]
        started = time.perf_counter()
        last = None
        for run in range(args.runs):
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
        fill = time.perf_counter() - started
        total = args.runs * args.nodes

        start = time.perf_counter()
        for i in range(100):
            ex_id = store.register_execution('Bench', 'bench', 'run-00000', 'Extra', {}, {'cache_key': f'x{i}'})
            store.publish_execution(ex_id, 'bench', 'run-00000', 'Extra',
                                    {'examples': [Examples(uri=f'/tmp/x{i}')]})
        publish = (time.perf_counter() - start) / 100
        start = time.perf_counter()
        hits = store.cache_candidates('bench', 'Node5', f'{args.runs // 2}-Node5')
        lookup = time.perf_counter() - start
        start = time.perf_counter()
        tree = store.lineage(last.id)
        lineage = time.perf_counter() - start
        depth = sum(1 for _ in tree.walk())
        start = time.perf_counter()
        runs = store.runs('bench')
        listing = time.perf_counter() - start
        assert len(hits) == 1 and depth == args.nodes and len(runs) == args.runs
        print(f'SQLite store with {total + 100:,} executions and as many artifacts '
              f'(filled in {fill:.1f} s, {fill / total * 1000:.2f} ms per execution)')
        print(f'  register + publish one execution: {publish * 1000:.2f} ms')
        print(f'  cache lookup (one node, {args.runs:,} executions of it): {lookup * 1000:.1f} ms')
        print(f'  lineage of the last artifact ({depth} artifacts deep): {lineage * 1000:.1f} ms')
        print(f'  list {len(runs):,} runs with their node states: {listing:.2f} s')
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == '__main__':
    main()
