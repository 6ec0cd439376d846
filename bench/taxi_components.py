"""Benchmark: wall time of the Chicago taxi pipeline and how it splits by component.

    .venv/bin/python bench/taxi_components.py [--train-steps 200]

Runs the example taxi pipeline once in a fresh directory (nothing cached, Beam DirectRunner, one
worker), then a second time with nothing changed, and prints each node's time and share of the run.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--train-steps', type=int, default=200)
    args = parser.parse_args()
    from pipelines import LocalDagRunner, load_pipeline

    root = tempfile.mkdtemp(prefix='sluice-bench-taxi-')
    try:
        path = os.path.join(REPO, 'pipelines', 'examples', 'taxi', 'taxi_pipeline.py')
        pipeline = load_pipeline(path, root=root, train_steps=args.train_steps)
        start = time.perf_counter()
        result = LocalDagRunner(progress=False).run(pipeline)
        total = time.perf_counter() - start
        if result.state != 'COMPLETE':
            sys.exit(f'the taxi pipeline failed: { {k: n.error for k, n in result.nodes.items() if n.error} }')
        start = time.perf_counter()
        cached = LocalDagRunner(progress=False).run(load_pipeline(path, root=root, train_steps=args.train_steps))
        cached_total = time.perf_counter() - start
        assert cached.ids_in_state('CACHED') == pipeline.node_ids
        print(f'taxi pipeline, 15,002 rows, train_steps={args.train_steps}, one process, DirectRunner')
        print(f'{"node":<18}{"seconds":>9}{"share":>8}')
        for node in result.nodes.values():
            print(f'{node.node_id:<18}{node.duration:>9.1f}{node.duration / total:>8.0%}')
        framework = total - sum(n.duration for n in result.nodes.values())
        print(f'{"(between nodes)":<18}{framework:>9.1f}{framework / total:>8.0%}')
        print(f'{"total":<18}{total:>9.1f}')
        print(f'fully cached re-run in-process: {cached_total:.2f} s ({total / cached_total:.0f}x faster)')
        print(f"ONNX vs SavedModel max abs diff: {result['Trainer'].outputs['model'].get('onnx_max_abs_diff'):.2e}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == '__main__':
    main()
