"""What watching a run costs (issue #25: at most 1% of a run): the penguin example's `sluice run`
as a whole process, with the defaults (a trace written as JSON lines), with tracing off
(``OTEL_SDK_DISABLED=true``, the floor), and with a metrics file as well (``--metrics-file``).

    .venv/bin/python bench/observe_overhead.py [--repeat 5]

Two kinds of run, all in one directory where the example ran once first (every side adds its runs to
the same store, taking turns, so the store grows alike for all):
- a fully cached re-run (every node CACHED): almost all fixed cost, where a per-run cost shows most;
- a run that executes every node again (``--no-cache``): a run that does work, the denominator of
  the 1%.
Each kind is run once unmeasured first.
The three sides take turns in every repeat (the order rotated); each figure is the median [min-max]
over the repeats, and each difference and ratio is taken per repeat from the sides measured in it.

Whole processes differ by more than 1% from one run to the next on a shared machine, so the bench
also clocks the watching itself inside each run (``_observe_clock.py``: the observe package's import,
every trace call and the end-of-run report, against the run's own wall time, both read in the same
process): the share it prints is the figure the 1% bound is checked on.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile

from _common import REPO, machine, run_python, spread, turns

PENGUIN = os.path.join(REPO, 'pipelines', 'examples', 'penguin', 'penguin_pipeline.py')
SIDES = {
    'traced (default)': {},
    'untraced (floor)': {'OTEL_SDK_DISABLED': 'true'},
    'traced + metrics file': {'SLUICE_METRICS_FILE': '{dir}/metrics/{{pipeline}}.prom'},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--repeat', type=int, default=5)
    args = parser.parse_args()
    print(machine())
    base = tempfile.mkdtemp(prefix='sluice-observe-bench-')
    try:
        seed = os.path.join(base, 'seed')
        os.makedirs(seed)
        run_python(['-m', 'sluice.ui.cli', 'run', PENGUIN, '-q'], cwd=seed)  # the store every side copies
        for kind, extra in (('cached re-run', []), ('run executing every node', ['--no-cache'])):
            run_python(['-m', 'sluice.ui.cli', 'run', PENGUIN, '-q', *extra], cwd=seed)  # unmeasured
            times: dict[str, list[float]] = {name: [] for name in SIDES}
            for i in range(args.repeat):
                for name in turns(list(SIDES), i):
                    env = {k: v.format(dir=seed) for k, v in SIDES[name].items()}
                    seconds, _ = run_python(['-m', 'sluice.ui.cli', 'run', PENGUIN, '-q', *extra], cwd=seed, env=env)
                    times[name].append(seconds)
            report(kind, times)
            for name in ('traced (default)', 'traced + metrics file'):
                env = {k: v.format(dir=seed) for k, v in SIDES[name].items()}
                clock_report(name, [clock(seed, extra, env) for _ in range(args.repeat)])
    finally:
        shutil.rmtree(base, ignore_errors=True)


def clock(seed: str, extra: list[str], env: dict) -> dict:
    """One run with the watching clocked inside it (``_observe_clock.py``): its JSON line."""
    script = os.path.join(REPO, 'bench', '_observe_clock.py')
    _, proc = run_python([script, 'run', PENGUIN, '-q', *extra], cwd=seed, env=env)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def clock_report(side: str, clocks: list[dict]) -> None:
    print(f'  inside each run ({side}), seconds spent watching it:')
    for part in ('import', 'trace', 'after_run'):
        print(f'    {part:<10} {spread([c[part] for c in clocks], ".4f", " s")}')
    shares = [100 * (c['import'] + c['trace'] + c['after_run']) / c['total'] for c in clocks]
    print(f'    all        {spread(shares, ".2f", "%")} of the run\'s wall time '
          f'({spread([c["total"] for c in clocks], ".2f", " s")})')


def report(kind: str, times: dict[str, list[float]]) -> None:
    floor = times['untraced (floor)']
    print(f'\n{kind} (whole `sluice run` processes, seconds):')
    for name, values in times.items():
        line = f'  {name:<24} {spread(values, ".3f", " s")}'
        if name != 'untraced (floor)':
            added = [a - b for a, b in zip(values, floor)]
            share = [100 * (a - b) / b for a, b in zip(values, floor)]
            line += f'   added {spread(added, ".3f", " s")}   = {spread(share, ".2f", "%")} of the floor'
        print(line)


if __name__ == '__main__':
    main()
