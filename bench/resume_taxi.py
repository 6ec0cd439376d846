"""Benchmark: resuming the taxi pipeline after it died in the Evaluator, vs a full run.

    .venv/bin/python bench/resume_taxi.py

1. A full run of the taxi pipeline in a fresh directory (a `sluice run` process), noting how long
   each node took.
2. In another fresh directory, the same run killed with SIGKILL inside the Evaluator, then
   `sluice resume RUN_ID` (a process). Prints the resume time as a fraction of the full run, next to
   what the nodes that actually rerun (Evaluator, ModelValidator, Pusher) cost in the full run.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
TAXI = os.path.join(REPO, 'pipelines', 'examples', 'taxi', 'taxi_pipeline.py')
RERUN = ('Evaluator', 'ModelValidator', 'Pusher')


def sluice(args: list[str], cwd: str, env: dict | None = None) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, '-m', 'pipelines.cli', *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, 'PYTHONPATH': REPO, **(env or {})})
    return time.perf_counter() - start, proc


def main() -> None:
    from metadata import MetadataStore

    full_dir, killed_dir = tempfile.mkdtemp(prefix='sluice-full-'), tempfile.mkdtemp(prefix='sluice-killed-')
    try:
        full_time, proc = sluice(['run', TAXI], full_dir)
        if proc.returncode != 0:
            sys.exit(proc.stdout + proc.stderr)
        store = MetadataStore(f'sqlite:///{full_dir}/runs/taxi/metadata.db')
        [run] = store.runs('taxi')
        took = {r.node_id: r.update_time - r.create_time for r in store.executions(run.run_id)}

        _, killed = sluice(['run', TAXI], killed_dir, env={'SLUICE_KILL_AT': 'Evaluator:executor:2'})
        assert killed.returncode == -9, killed.stderr[-2000:]
        store = MetadataStore(f'sqlite:///{killed_dir}/runs/taxi/metadata.db')
        [run] = store.runs('taxi')
        resume_time, proc = sluice(['resume', run.run_id], killed_dir)
        if proc.returncode != 0:
            sys.exit(proc.stdout + proc.stderr)
        rerun = sorted({r.node_id for r in store.executions(run.run_id) if r.state == 'COMPLETE'
                        and r.create_time > run.create_time + 0.001 and r.node_id in RERUN})
        rerun_cost = sum(took[n] for n in RERUN)
        print('taxi pipeline, whole processes, DirectRunner, one worker')
        print(f'  full run:                                   {full_time:6.1f} s')
        print(f'  resume after a SIGKILL inside Evaluator:    {resume_time:6.1f} s '
              f'({resume_time / full_time:.0%} of a full run)')
        print(f'  nodes that reran: {", ".join(rerun)}; they took {rerun_cost:.1f} s in the full run '
              f'({rerun_cost / full_time:.0%}); the rest of the resume is process start-up and imports')
    finally:
        shutil.rmtree(full_dir, ignore_errors=True)
        shutil.rmtree(killed_dir, ignore_errors=True)


if __name__ == '__main__':
    main()
