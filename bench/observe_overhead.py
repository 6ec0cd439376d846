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
process): the share it prints is the figure the 1% bound is checked on. The clocked runs also
include one pushing to a Pushgateway (``SLUICE_PUSHGATEWAY``; a ``prometheus-pushgateway`` on
loopback, when it is installed), and say how their nodes ended: a "cached re-run" in which a node
executed (a source file edited meanwhile changes the cache key) is flagged.

Every run writes and reads its bytecode in a cache under the bench's directory
(``PYTHONPYCACHEPREFIX``, ``PYTHONDONTWRITEBYTECODE`` unset), as an installed package's compiled
modules are read: otherwise an environment with ``PYTHONDONTWRITEBYTECODE=1`` compiles every Sluice
module in every run, which the watching's own import pays too. ``--no-bytecode-cache`` leaves the
environment as it is.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

from _common import REPO, machine, run_python, spread, turns

PENGUIN = os.path.join(REPO, 'pipelines', 'examples', 'penguin', 'penguin_pipeline.py')
SIDES = {
    'traced (default)': {},
    'untraced (floor)': {'OTEL_SDK_DISABLED': 'true'},
    'traced + metrics file': {'SLUICE_METRICS_FILE': '{dir}/metrics/{{pipeline}}.prom'},
}
PUSHED = {'traced + Pushgateway': {'SLUICE_PUSHGATEWAY': '{gateway}'}}  # clocked only
BYTECODE = {'PYTHONDONTWRITEBYTECODE': '', 'PYTHONPYCACHEPREFIX': '{base}/pycache'}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument('--cached-only', action='store_true', help='only the fully cached re-run')
    parser.add_argument('--no-bytecode-cache', action='store_true',
                        help="the environment's own bytecode settings (compiled in every run when "
                             'PYTHONDONTWRITEBYTECODE is set)')
    args = parser.parse_args()
    base = tempfile.mkdtemp(prefix='sluice-observe-bench-')
    common = {} if args.no_bytecode_cache else {k: v.format(base=base) for k, v in BYTECODE.items()}
    print(machine() + ('' if args.no_bytecode_cache else '; bytecode cached (PYTHONPYCACHEPREFIX)'))
    try:
        with pushgateway(base) as gateway:
            seed = os.path.join(base, 'seed')
            os.makedirs(seed)
            run_python(['-m', 'sluice.ui.cli', 'run', PENGUIN, '-q'], cwd=seed, env=common)  # the store every side copies
            kinds = (('cached re-run', []), ('run executing every node', ['--no-cache']))
            for kind, extra in kinds[:1] if args.cached_only else kinds:
                run_python(['-m', 'sluice.ui.cli', 'run', PENGUIN, '-q', *extra], cwd=seed, env=common)  # unmeasured
                times: dict[str, list[float]] = {name: [] for name in SIDES}
                for i in range(args.repeat):
                    for name in turns(list(SIDES), i):
                        env = {**common, **{k: v.format(dir=seed) for k, v in SIDES[name].items()}}
                        seconds, _ = run_python(['-m', 'sluice.ui.cli', 'run', PENGUIN, '-q', *extra], cwd=seed, env=env)
                        times[name].append(seconds)
                report(kind, times)
                clocked = {name: SIDES[name] for name in ('traced (default)', 'traced + metrics file')}
                if gateway:
                    clocked.update(PUSHED)
                else:
                    print('  (no prometheus-pushgateway on PATH: the Pushgateway side is not measured)')
                for name, side in clocked.items():
                    env = {**common, **{k: v.format(dir=seed, gateway=gateway) for k, v in side.items()}}
                    clock_report(name, [clock(seed, extra, env) for _ in range(args.repeat)], cached=not extra)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def pushgateway(base: str):
    """A Pushgateway on loopback for the pushing side (its URL), or None when none is installed."""
    binary = shutil.which('prometheus-pushgateway') or shutil.which('pushgateway')
    if binary is None:
        yield None
        return
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    url = f'http://127.0.0.1:{port}'
    with open(os.path.join(base, 'pushgateway.log'), 'w') as log:
        proc = subprocess.Popen([binary, f'--web.listen-address=127.0.0.1:{port}'], stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + '/-/ready', timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(f'the Pushgateway at {url} did not start: see {log.name}')
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def clock(seed: str, extra: list[str], env: dict) -> dict:
    """One run with the watching clocked inside it (``_observe_clock.py``): its JSON line."""
    script = os.path.join(REPO, 'bench', '_observe_clock.py')
    _, proc = run_python([script, 'run', PENGUIN, '-q', *extra], cwd=seed, env=env)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def clock_report(side: str, clocks: list[dict], cached: bool) -> None:
    print(f'  inside each run ({side}), seconds spent watching it:')
    for part in ('import', 'trace', 'after_run'):
        print(f'    {part:<10} {spread([c[part] for c in clocks], ".4f", " s")}')
    shares = [100 * (c['import'] + c['trace'] + c['after_run']) / c['total'] for c in clocks]
    print(f'    all        {spread(shares, ".2f", "%")} of the run\'s wall time '
          f'({spread([c["total"] for c in clocks], ".2f", " s")})')
    ended = sorted({', '.join(f'{n} {state}' for state, n in sorted(c['states'].items())) for c in clocks})
    flag = '' if not cached or all(set(c['states']) == {'CACHED'} for c in clocks) else \
        '   NOT A FULLY CACHED RE-RUN: a node executed (a source file changed?)'
    print(f'    nodes      {"; ".join(ended)}{flag}')


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
