"""Benchmark: resuming the taxi pipeline after it died in the Evaluator, vs a full run.

    .venv/bin/python bench/resume_taxi.py [--repeat 3] [--kill-at Evaluator:executor:2]

Each repeat:
1. a full run of the taxi pipeline in a fresh directory (a `sluice run` process);
2. in another fresh directory, the same run SIGKILLed by the launcher's fault injection
   (``SLUICE_KILL_AT``, default 2 s into the Evaluator's executor), then ``sluice resume RUN_ID`` (a
   process).

What the resume did is read from ML-Metadata, not assumed: the nodes that re-ran are those of the
run that got a new COMPLETE execution created after the resume process started; the nodes reused
are those that got no new execution and whose execution from before the kill is COMPLETE or
CACHED; an execution that was RUNNING before the resume and FAILED after it was marked abandoned.
Prints both wall times and their ratio (median [min-max] over the repeats), what the re-run nodes
took in the full run and in the resume, and the part of the resume spent outside them. A separate
fresh process times ``import tensorflow_model_analysis`` (which imports TensorFlow and Beam), the
import the Evaluator pays again in the resume process.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import REPO, TAXI_DIR, machine, ratios, run_python, spread  # noqa: E402

sys.path.insert(0, REPO)
TAXI = os.path.join(TAXI_DIR, 'taxi_pipeline.py')
DONE = ('COMPLETE', 'CACHED')


def store_of(directory: str):
    from sluice.metadata import MetadataStore
    return MetadataStore(f'sqlite:///{directory}/runs/taxi/metadata.db')


def one_repeat(kill_at: str) -> dict:
    full_dir, killed_dir = tempfile.mkdtemp(prefix='sluice-full-'), tempfile.mkdtemp(prefix='sluice-killed-')
    try:
        full_time, _ = run_python(['-m', 'sluice.ui.cli', 'run', TAXI], cwd=full_dir)
        store = store_of(full_dir)
        [run] = store.runs('taxi')
        full_nodes = {r.node_id: r.update_time - r.create_time for r in store.executions(run.run_id)
                      if r.state == 'COMPLETE'}

        _, killed = run_python(['-m', 'sluice.ui.cli', 'run', TAXI], cwd=killed_dir,
                               env={'SLUICE_KILL_AT': kill_at}, check=False)
        if killed.returncode != -9:
            sys.exit(f'the run was not SIGKILLed (status {killed.returncode}):\n{killed.stderr[-2000:]}')
        store = store_of(killed_dir)
        [run] = store.runs('taxi')
        before = {r.id: r for r in store.executions(run.run_id)}
        left = Counter(f'{r.node_id} {r.state}' if r.state not in DONE else r.state for r in before.values())

        resume_started = time.time()
        resume_time, _ = run_python(['-m', 'sluice.ui.cli', 'resume', run.run_id], cwd=killed_dir)
        after = store.executions(run.run_id)
        new = [r for r in after if r.id not in before]
        if any(r.create_time < resume_started - 0.01 for r in new):  # MLMD times are in milliseconds
            sys.exit('an execution new to the store predates the resume process')
        rerun = {r.node_id: r.update_time - r.create_time for r in new if r.state == 'COMPLETE'}
        hits = [r.node_id for r in new if r.state == 'CACHED']
        not_complete = [f'{r.node_id} {r.state}' for r in new if r.state not in DONE]
        reused = [n for n in run.node_ids if not any(r.node_id == n for r in new)
                  and any(r.node_id == n and r.state in DONE for r in before.values())]
        missing = [n for n in run.node_ids if n not in rerun and n not in reused and n not in hits]
        abandoned = [r.node_id for r in after if r.id in before and before[r.id].state == 'RUNNING'
                     and r.state == 'FAILED' and 'abandoned' in r.error]
        if missing or not_complete:
            sys.exit(f'after the resume, nodes neither re-run nor reused: {missing}; new executions not '
                     f'COMPLETE: {not_complete}')
        return {'full': full_time, 'resume': resume_time, 'full_nodes': full_nodes, 'rerun': rerun,
                'reused': reused, 'hits': hits, 'abandoned': abandoned, 'left': dict(left),
                'order': run.node_ids}
    finally:
        shutil.rmtree(full_dir, ignore_errors=True)
        shutil.rmtree(killed_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--kill-at', default='Evaluator:executor:2', help='SLUICE_KILL_AT for the killed run')
    args = parser.parse_args()

    reps = [one_repeat(args.kill_at) for _ in range(args.repeat)]
    imports = [run_python(['-c', 'import tensorflow_model_analysis'])[0] for _ in range(args.repeat)]

    full = [r['full'] for r in reps]
    resume = [r['resume'] for r in reps]
    print(f'taxi pipeline, whole `sluice` processes, DirectRunner, one worker, {args.repeat} repeats; {machine()}')
    label = f'resume after SIGKILL at {args.kill_at}:'
    width = max(len(label), 40) + 1
    print(f'  {"full run:":<{width}}{spread(full, ".1f", " s")}')
    print(f'  {label:<{width}}{spread(resume, ".1f", " s")}')
    print(f'  {"resume / full run (per repeat):":<{width}}{spread(ratios(resume, full), ".2f")}')
    sets = Counter((tuple(sorted(r['rerun'], key=r['order'].index)), tuple(r['reused']), tuple(r['hits']),
                    tuple(r['abandoned']), tuple(sorted(r['left'].items()))) for r in reps)
    for (rerun, reused, hits, abandoned, left), count in sets.items():
        print(f'  from ML-Metadata ({count} of {args.repeat} repeats):')
        print(f'    the killed run left: {", ".join(f"{n} {k}" if k in DONE or n > 1 else k for k, n in left)}')
        print(f'    marked abandoned by the resume: {", ".join(abandoned) or "none"}')
        print(f'    re-ran (new COMPLETE execution): {", ".join(rerun) or "none"}')
        print(f'    reused (no new execution):       {", ".join(reused) or "none"}')
        if hits:
            print(f'    new CACHED execution:            {", ".join(hits)}')
    same = [r for r in reps if set(r['rerun']) == set(reps[0]['rerun'])]
    in_full = [sum(r['full_nodes'][n] for n in r['rerun']) for r in same]
    in_resume = [sum(r['rerun'].values()) for r in same]
    outside = [r['resume'] - t for r, t in zip(same, in_resume)]
    print(f'  the re-run nodes ({len(same)} repeats with that set) took:')
    print(f'    {"in the full run:":<{width - 2}}{spread(in_full, ".1f", " s")} '
          f'({spread(ratios(in_full, [r["full"] for r in same]), ".0%")} of the full run)')
    print(f'    {"in the resume:":<{width - 2}}{spread(in_resume, ".1f", " s")}')
    for node in sorted(reps[0]['rerun'], key=reps[0]['order'].index):
        print(f'      {node:<16} full run {spread([r["full_nodes"][node] for r in same], ".2f", " s")}, '
              f'resume {spread([r["rerun"][node] for r in same], ".2f", " s")}')
    print(f'  {"resume process outside those nodes:":<{width}}{spread(outside, ".1f", " s")} '
          '(start-up, loading the pipeline, plan, abandoned-execution cleanup, exit)')
    print(f'  {"`import tensorflow_model_analysis`:":<{width}}{spread(imports, ".1f", " s")} '
          '(a fresh process; it imports TensorFlow and Beam)')


if __name__ == '__main__':
    main()
