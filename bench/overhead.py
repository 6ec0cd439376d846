"""Benchmark: what the framework adds. The taxi pipeline through Sluice (driver, ML-Metadata store,
cache keys, publish, heartbeat) vs the same library work without it: each component's executor
called directly on hand-made artifacts in temporary directories, in one plain script.

    .venv/bin/python bench/overhead.py

Each side runs in its own fresh process (so both pay the TensorFlow imports once). Prints both
wall times, their ratio, and the seconds Sluice adds per component.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SLUICE = textwrap.dedent('''
    import json, sys, time
    sys.path.insert(0, {repo!r})
    from pipelines import LocalDagRunner, load_pipeline
    start = time.perf_counter()
    pipeline = load_pipeline({taxi!r}, root={root!r})
    result = LocalDagRunner(progress=False).run(pipeline)
    total = time.perf_counter() - start
    assert result.state == 'COMPLETE'
    print(json.dumps({{'total': total, 'nodes': {{k: n.duration for k, n in result.nodes.items()}}}}))
''')

PLAIN = textwrap.dedent('''
    import json, os, sys, time
    sys.path.insert(0, {repo!r})
    start = time.perf_counter()
    from pipelines import load_pipeline
    from metadata import Artifact
    pipeline = load_pipeline({taxi!r}, root={root!r})
    produced, took = {{}}, {{}}
    for i, component in enumerate(pipeline.components):
        t = time.perf_counter()
        inputs = {{k: (produced[(c.producer.id, c.key)] if c is not None else None) for k, c in component.inputs.items()}}
        if component.id == 'Trainer':
            inputs['raw_examples'] = produced[('CsvExampleGen', 'examples')]
        if component.id == 'Evaluator':
            inputs['baseline_model'] = None
        outputs = {{}}
        for key, decl in type(component).OUTPUTS.items():
            uri = os.path.join({root!r}, component.id, key)
            os.makedirs(uri)
            outputs[key] = decl.type(uri=uri)
            outputs[key].id = 1000 + i
        executor = type(component).executor(beam_pipeline_args=pipeline.beam_pipeline_args)
        executor.run(**inputs, **outputs, **component.parameters)
        produced.update({{(component.id, k): a for k, a in outputs.items()}})
        took[component.id] = time.perf_counter() - t
    print(json.dumps({{'total': time.perf_counter() - start, 'nodes': took}}))
''')


def run(template: str, root: str) -> dict:
    taxi = os.path.join(REPO, 'pipelines', 'examples', 'taxi', 'taxi_pipeline.py')
    proc = subprocess.run([sys.executable, '-c', template.format(repo=REPO, taxi=taxi, root=root)],
                          capture_output=True, text=True, env={**os.environ, 'PYTHONPATH': REPO})
    if proc.returncode != 0:
        sys.exit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    with tempfile.TemporaryDirectory(prefix='sluice-overhead-') as tmp:
        plain = run(PLAIN, os.path.join(tmp, 'plain'))
        sluice = run(SLUICE, os.path.join(tmp, 'sluice'))
    print('taxi pipeline, one process each, DirectRunner, nothing cached')
    print(f'  plain script (executors called directly): {plain["total"]:6.1f} s')
    print(f'  through Sluice (LocalDagRunner, SQLite):  {sluice["total"]:6.1f} s  '
          f'ratio {sluice["total"] / plain["total"]:.3f}')
    print(f'  {"component":<18}{"plain s":>9}{"sluice s":>10}{"added s":>9}')
    for node, seconds in sluice['nodes'].items():
        base = plain['nodes'][node]
        print(f'  {node:<18}{base:>9.2f}{seconds:>10.2f}{seconds - base:>+9.2f}')


if __name__ == '__main__':
    main()
