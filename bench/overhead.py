"""Benchmark: what the framework adds. The taxi pipeline through Sluice (driver, ML-Metadata store,
cache keys, publish, heartbeat) vs the same library work without it: each component's executor
called directly on hand-made artifacts in temporary directories, in one plain script.

    .venv/bin/python bench/overhead.py [--repeat 3]

Both sides are measured the same way: each is a fresh `python -c` process of this interpreter with
the same environment, on the same taxi data and the same pipeline definition (nothing cached),
timed from this parent with perf_counter from before the process starts to after it exits. Inside,
both scripts take each node's wall time with time.time() around the same span (Sluice: the
launcher's duration, which includes driver, cache lookup and publish; plain: output directories
plus the executor). The two sides alternate which goes first from one repeat to the next. Prints,
for each side, the median and range over the repeats, the per-repeat ratio Sluice / plain, and
per component the seconds Sluice added (per-repeat difference, median and range).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import textwrap

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import REPO, TAXI_DIR, machine, ratios, run_python, spread, turns  # noqa: E402

TAXI = os.path.join(TAXI_DIR, 'taxi_pipeline.py')

SLUICE = textwrap.dedent('''
    import json, sys
    from sluice import LocalDagRunner, load_pipeline
    pipeline = load_pipeline({taxi!r}, root={root!r})
    result = LocalDagRunner(progress=False).run(pipeline)
    assert result.state == 'COMPLETE', {{k: n.error for k, n in result.nodes.items() if n.error}}
    print(json.dumps({{k: n.duration for k, n in result.nodes.items()}}))
''')

PLAIN = textwrap.dedent('''
    import json, os, shutil, sys, time
    from sluice import load_pipeline
    pipeline = load_pipeline({taxi!r}, root={root!r})
    produced, took = {{}}, {{}}
    for i, component in enumerate(pipeline.components):
        start = time.time()
        inputs = {{k: (produced[(c.producer.id, c.key)] if c is not None else None)
                  for k, c in component.inputs.items()}}
        if component.id == 'Trainer.onnx':  # what the export's driver resolves (for its check)
            inputs['raw_examples'] = produced[('CsvExampleGen', 'examples')]
        if component.id == 'Evaluator':  # first run: no model in production
            inputs['baseline_model'] = None
        outputs = {{}}
        for key, decl in type(component).OUTPUTS.items():
            uri = os.path.join({root!r}, component.id, key)
            os.makedirs(uri)
            outputs[key] = decl.type(uri=uri)
            outputs[key].id = 1000 + i
        tmp_dir = os.path.join({root!r}, '.tmp', component.id)
        os.makedirs(tmp_dir)
        executor = type(component).executor(beam_pipeline_args=pipeline.beam_pipeline_args, tmp_dir=tmp_dir,
                                            node_id=component.id)
        executor.run(**inputs, **outputs, **component.parameters)
        shutil.rmtree(tmp_dir, ignore_errors=True)
        produced.update({{(component.id, k): a for k, a in outputs.items()}})
        took[component.id] = time.time() - start
    print(json.dumps(took))
''')


def run(template: str, root: str) -> tuple[float, dict[str, float]]:
    seconds, proc = run_python(['-c', template.format(taxi=TAXI, root=root)], cwd=REPO)
    return seconds, json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--repeat', type=int, default=3)
    args = parser.parse_args()
    plain, sluice = [], []
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix='sluice-overhead-') as tmp:
            for name in turns(['plain', 'sluice'], i):
                template = PLAIN if name == 'plain' else SLUICE
                (plain if name == 'plain' else sluice).append(run(template, os.path.join(tmp, name)))
    plain_t, sluice_t = [p[0] for p in plain], [s[0] for s in sluice]
    print(f'taxi pipeline, nothing cached, DirectRunner one worker; each side a fresh process, '
          f'{args.repeat} repeats alternating which side goes first; {machine()}')
    print(f'  plain script (executors called directly): {spread(plain_t, ".1f", " s")}')
    print(f'  through Sluice (LocalDagRunner, SQLite):  {spread(sluice_t, ".1f", " s")}')
    print(f'  ratio Sluice / plain (per repeat):        {spread(ratios(sluice_t, plain_t), ".3f")}')
    print(f'  {"component":<17}{"plain s":>28}{"sluice s":>28}{"added s (per repeat)":>34}')
    for node in sluice[0][1]:
        a = [p[1][node] for p in plain]
        b = [s[1][node] for s in sluice]
        added = [y - x for x, y in zip(a, b)]
        print(f'  {node:<17}{spread(a, ".2f"):>28}{spread(b, ".2f"):>28}{spread(added, "+.3f"):>34}')
    nodes_plain = [sum(p[1].values()) for p in plain]
    nodes_sluice = [sum(s[1].values()) for s in sluice]
    print(f'  {"sum of nodes":<17}{spread(nodes_plain, ".2f"):>28}{spread(nodes_sluice, ".2f"):>28}'
          f'{spread([y - x for x, y in zip(nodes_plain, nodes_sluice)], "+.3f"):>34}')
    outside = [t - n for t, n in zip(plain_t, nodes_plain)], [t - n for t, n in zip(sluice_t, nodes_sluice)]
    print(f'  {"outside nodes":<17}{spread(outside[0], ".2f"):>28}{spread(outside[1], ".2f"):>28}'
          f'{spread([y - x for x, y in zip(*outside)], "+.3f"):>34}')


if __name__ == '__main__':
    main()
