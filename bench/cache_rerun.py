"""Benchmark: a fully cached re-run of an example pipeline vs its first run.

    .venv/bin/python bench/cache_rerun.py [--example demo|penguin|taxi] [--repeat 3]

In each of ``--repeat`` fresh directories, runs ``sluice run pipelines/examples/<example>/<example>_pipeline.py``
twice as a user would (a whole process each time): once executing every node, then again with
nothing changed. Both processes are the same small wrapper (``python -c`` calling
``sluice.ui.cli.main(['run', FILE])``) which, after the run, reports which of ``tensorflow`` and
``apache_beam`` are in that process's own ``sys.modules`` (imported directly or indirectly).

Prints the wall time of each side (median [min-max] over the repeats), the per-repeat speed-up, the
executions each run recorded (read from the store), and what each side imported. Exits non-zero
if a re-run executed anything or imported TensorFlow or Beam.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import REPO, machine, ratios, run_python, spread  # noqa: E402

sys.path.insert(0, REPO)
WATCHED = ('tensorflow', 'apache_beam')
MARKER = 'SLUICE-BENCH-MODULES '
WRAPPER = '''
import json, sys
from sluice.ui.cli import main
status = main(['run', {path!r}])
print({marker!r} + json.dumps({{
    name: sum(1 for m in list(sys.modules) if m == name or m.startswith(name + '.'))
    for name in {watched!r} if name in sys.modules}}), flush=True)
sys.exit(status)
'''


def sluice_run(cwd: str, path: str) -> tuple[float, dict[str, int]]:
    """Wall seconds of one `sluice run` process, and {watched module: submodules loaded} in it."""
    script = WRAPPER.format(path=path, marker=MARKER, watched=WATCHED)
    seconds, proc = run_python(['-c', script], cwd=cwd)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARKER)]
    if len(lines) != 1:
        sys.exit(f'the wrapper did not report its modules:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}')
    return seconds, json.loads(lines[0][len(MARKER):])


def imported(found: list[dict[str, int]]) -> str:
    names = sorted({name for f in found for name in f})
    if not names:
        return f'neither {" nor ".join(WATCHED)} in sys.modules'
    return 'in sys.modules: ' + ', '.join(
        f'{name} ({sum(1 for f in found if name in f)}/{len(found)} runs, '
        f'up to {max(f.get(name, 0) for f in found)} modules)' for name in names)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--repeat', type=int, default=3, help='fresh directories to measure in')
    parser.add_argument('--example', default='demo', choices=['demo', 'penguin', 'taxi'])
    args = parser.parse_args()
    path = os.path.join(REPO, 'pipelines', 'examples', args.example, f'{args.example}_pipeline.py')
    from sluice.metadata import MetadataStore

    firsts, seconds, first_mods, second_mods, first_states, second_states = [], [], [], [], [], []
    for _ in range(args.repeat):
        cwd = tempfile.mkdtemp(prefix='sluice-bench-')
        try:
            t, mods = sluice_run(cwd, path)
            firsts.append(t)
            first_mods.append(mods)
            t, mods = sluice_run(cwd, path)
            seconds.append(t)
            second_mods.append(mods)
            store = MetadataStore(f'sqlite:///{cwd}/runs/{args.example}/metadata.db')
            runs = store.runs(args.example)
            if len(runs) != 2:
                sys.exit(f'expected 2 runs in the store, found {len(runs)}')
            first_states.append(sorted(e.state for e in store.executions(runs[0].run_id)))
            second_states.append(sorted(e.state for e in store.executions(runs[1].run_id)))
        finally:
            shutil.rmtree(cwd, ignore_errors=True)

    def states(recorded: list[list[str]]) -> str:
        kinds = sorted({tuple(s) for s in recorded})
        return ' / '.join(', '.join(f'{s.count(k)} {k}' for k in sorted(set(s))) for s in kinds)

    print(f'{args.example} pipeline, whole `sluice run` processes, {args.repeat} fresh directories; {machine()}')
    print(f'  first run:   {spread(firsts, unit=" s")}  recorded {states(first_states)}')
    print(f'               {imported(first_mods)}')
    print(f'  re-run:      {spread(seconds, unit=" s")}  recorded {states(second_states)}')
    print(f'               {imported(second_mods)}')
    print(f'  speed-up of the cached re-run (first / re-run, per directory): '
          f'{spread(ratios(firsts, seconds), fmt=".1f", unit="x")}')
    problems = []
    if any(set(s) != {'CACHED'} for s in second_states):
        problems.append('a re-run recorded executions other than CACHED')
    if any(second_mods):
        problems.append(f'the cached re-run imported {", ".join(sorted({n for m in second_mods for n in m}))}')
    if problems:
        print('FAILED: ' + '; '.join(problems))
        sys.exit(1)


if __name__ == '__main__':
    main()
