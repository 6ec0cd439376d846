"""Benchmark: wall time of the Chicago taxi pipeline and how it splits by component.

    .venv/bin/python bench/taxi_components.py [--train-steps 200] [--repeat 3]

Each repeat is a fresh process (so each pays the TensorFlow imports, inside the first node that
needs them) in a fresh directory: it runs the example taxi pipeline once (nothing cached, Beam
DirectRunner, one worker), then a second time in the same process with nothing changed. Prints
each node's time and share of the run, the run's total, the time of the fully cached re-run and
the speed-up (each median [min-max] over the repeats; ratios per repeat), and the ONNX vs
SavedModel difference the Trainer recorded.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import textwrap

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import REPO, TAXI_DIR, machine, ratios, run_python, spread  # noqa: E402

CHILD = textwrap.dedent('''
    import json, sys, time
    from sluice import LocalDagRunner, load_pipeline
    path, root, steps = {path!r}, {root!r}, {steps!r}
    pipeline = load_pipeline(path, root=root, train_steps=steps)
    start = time.perf_counter()
    result = LocalDagRunner(progress=False).run(pipeline)
    total = time.perf_counter() - start
    assert result.state == 'COMPLETE', {{k: n.error for k, n in result.nodes.items() if n.error}}
    start = time.perf_counter()
    cached = LocalDagRunner(progress=False).run(load_pipeline(path, root=root, train_steps=steps))
    cached_total = time.perf_counter() - start
    print(json.dumps({{'total': total, 'cached': cached_total, 'cached_states': cached.node_states(),
                      'nodes': {{k: n.duration for k, n in result.nodes.items()}},
                      'onnx': result['Trainer.onnx'].outputs['onnx_model'].get('onnx_max_abs_diff'),
                      'rows': result['CsvExampleGen'].outputs['examples'].get('row_counts')}}))
''')


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--train-steps', type=int, default=200)
    parser.add_argument('--repeat', type=int, default=3)
    args = parser.parse_args()
    path = os.path.join(TAXI_DIR, 'taxi_pipeline.py')
    reps = []
    for _ in range(args.repeat):
        root = tempfile.mkdtemp(prefix='sluice-bench-taxi-')
        try:
            _, proc = run_python(['-c', CHILD.format(path=path, root=root, steps=args.train_steps)], cwd=REPO)
            reps.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        finally:
            shutil.rmtree(root, ignore_errors=True)
    for r in reps:
        if set(r['cached_states'].values()) != {'CACHED'}:
            sys.exit(f'the re-run was not fully cached: {r["cached_states"]}')
    total = [r['total'] for r in reps]
    rows = reps[0]['rows']
    rows = json.loads(rows) if isinstance(rows, str) else rows
    rows = f'{sum(rows.values()):,} rows (' + ', '.join(f'{k} {v:,}' for k, v in rows.items()) + ')'
    print(f'taxi pipeline, {rows}, train_steps={args.train_steps}, DirectRunner one worker; '
          f'{args.repeat} fresh processes; {machine()}')
    print(f'{"node":<18}{"seconds":>22}{"share of the run":>28}')
    for node in reps[0]['nodes']:
        t = [r['nodes'][node] for r in reps]
        print(f'{node:<18}{spread(t, ".1f"):>22}{spread(ratios(t, total), ".0%"):>28}')
    between = [r['total'] - sum(r['nodes'].values()) for r in reps]
    print(f'{"(between nodes)":<18}{spread(between, ".2f"):>22}{spread(ratios(between, total), ".1%"):>28}')
    print(f'{"total":<18}{spread(total, ".1f"):>22}')
    cached = [r['cached'] for r in reps]
    print(f'fully cached re-run in the same process: {spread(cached, ".2f", " s")}, '
          f'{spread(ratios(total, cached), ".0f", "x")} faster')
    print(f'ONNX vs SavedModel max abs diff (recorded by Trainer.onnx): '
          f'{spread([r["onnx"] for r in reps], ".2e")}')


if __name__ == '__main__':
    main()
