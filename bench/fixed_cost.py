"""Sluice's fixed cost: a chain of tiny custom nodes through ``sluice run`` vs a plain script.

Each node reads a number from its input's file, adds one and writes it to its output's: work that
takes microseconds, so what is measured is what Sluice adds per run and per step (the store, the
lease, the cache key, the records, the progress output). Sides, each a fresh process timed the same
way from here, taking turns in each repeat:

- ``plain``: a Python script doing the same file work for the same number of steps;
- ``recorded``: that script recording each step in ML-Metadata by hand (a SQLite store, as
  ML-Metadata creates it; one ``put_execution`` a step with its artifacts, events and contexts): the
  same work "with full ML-Metadata records", as issue #27's 2x goal reads (the ratio to the bare
  ``plain`` script is printed as well);
- ``cold``: ``sluice run`` of the chain on a fresh pipeline root and store: every node executes;
- ``cached``: ``sluice run`` again on that root: every node is a cache hit.

Chains of 1 and N steps give the per-step cost, (N-step - 1-step) / (N - 1), and the fixed cost,
1-step - per-step. Then ``--profile``: where one cold and one cached N-step run spend their time,
from ``python -X importtime`` (imports) and cProfile (the rest), in-process. Issue #27's goals: the
N-step chain within 2x the recorded script, at most 10 ms per step, a fully cached run under 0.3 s.

    .venv/bin/python bench/fixed_cost.py [--steps 8] [--repeat 5] [--profile]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import textwrap

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import machine, ratios, run_python, spread, turns  # noqa: E402

PIPELINE = textwrap.dedent('''
    import os
    from sluice import Pipeline
    from sluice.components import Artifact, Component, Executor, Input, Output, Parameter

    class Number(Artifact):
        """A number in value.txt."""

    class StartExecutor(Executor):
        def run(self, *, value: int, out: Number) -> None:
            with open(os.path.join(out.uri, 'value.txt'), 'w') as f:
                f.write(str(value))

    class Start(Component):
        value = Parameter(int)
        out = Output(Number)
        executor = StartExecutor

    class AddOneExecutor(Executor):
        def run(self, *, number: Number, out: Number) -> None:
            with open(os.path.join(number.uri, 'value.txt')) as f:
                value = int(f.read())
            with open(os.path.join(out.uri, 'value.txt'), 'w') as f:
                f.write(str(value + 1))

    class AddOne(Component):
        number = Input(Number)
        out = Output(Number)
        executor = AddOneExecutor

    STEPS = int(os.environ['CHAIN_STEPS'])
    nodes = [Start(value=1).with_id('step1')]
    for i in range(2, STEPS + 1):
        nodes.append(AddOne(number=nodes[-1].outputs['out']).with_id(f'step{i}'))
    pipeline = Pipeline(name='chain', pipeline_root=os.environ['CHAIN_ROOT'], components=nodes)
''')

PLAIN = textwrap.dedent('''
    import os, sys
    root, steps = sys.argv[1], int(sys.argv[2])
    previous = None
    for i in range(1, steps + 1):
        out = os.path.join(root, f'step{i}')
        os.makedirs(out, exist_ok=True)
        value = 1
        if previous is not None:
            with open(os.path.join(previous, 'value.txt')) as f:
                value = int(f.read()) + 1
        with open(os.path.join(out, 'value.txt'), 'w') as f:
            f.write(str(value))
        previous = out
''')

# The same file work with the records a pipeline keeps, made by hand with ML-Metadata's own calls: the
# store opened (created) as ML-Metadata does by default, the types registered, and per step one
# transaction recording a COMPLETE execution with its input and output artifacts and events in the
# pipeline's and the run's contexts.
PLAIN_RECORDED = textwrap.dedent('''
    import os, sys, time
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2 as pb
    root, steps = sys.argv[1], int(sys.argv[2])
    os.makedirs(root, exist_ok=True)
    config = pb.ConnectionConfig()
    config.sqlite.filename_uri = os.path.join(root, 'metadata.db')
    config.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    store = metadata_store.MetadataStore(config)
    number = store.put_artifact_type(pb.ArtifactType(name='Number'))
    pipeline_type = store.put_context_type(pb.ContextType(name='pipeline'))
    run_type = store.put_context_type(pb.ContextType(name='pipeline_run'))
    [pipeline, run] = store.put_contexts([pb.Context(type_id=pipeline_type, name='chain'),
                                          pb.Context(type_id=run_type, name=f'chain-{time.time()}')])
    contexts = [pb.Context(id=pipeline, type_id=pipeline_type, name='chain')]
    contexts.append(pb.Context(id=run, type_id=run_type, name=store.get_contexts_by_id([run])[0].name))
    types = {}
    previous = None
    for i in range(1, steps + 1):
        name = 'Start' if i == 1 else 'AddOne'
        if name not in types:
            types[name] = store.put_execution_type(pb.ExecutionType(name=name))
        out = os.path.join(root, f'step{i}')
        os.makedirs(out, exist_ok=True)
        value = 1
        if previous is not None:
            with open(os.path.join(previous.uri, 'value.txt')) as f:
                value = int(f.read()) + 1
        with open(os.path.join(out, 'value.txt'), 'w') as f:
            f.write(str(value))
        execution = pb.Execution(type_id=types[name], last_known_state=pb.Execution.COMPLETE)
        execution.custom_properties['node_id'].string_value = f'step{i}'
        output = pb.Artifact(type_id=number, uri=out, state=pb.Artifact.LIVE)
        events = [(output, pb.Event(type=pb.Event.OUTPUT))]
        if previous is not None:
            events.append((previous, pb.Event(type=pb.Event.INPUT)))
        _, [output.id, *_], _ = store.put_execution(execution, events, contexts)
        previous = output
''')


PARALLEL: list[str] = []  # --parallel N: passed to `sluice run` (default: its own default)


def _sluice(work: str, steps: int) -> tuple[float, str]:
    env = {'CHAIN_STEPS': str(steps), 'CHAIN_ROOT': os.path.join(work, 'root'), 'OTEL_SDK_DISABLED': ''}
    seconds, proc = run_python(['-m', 'sluice.ui.cli', 'run', os.path.join(work, 'chain.py'), *PARALLEL], cwd=work,
                               env=env)
    return seconds, proc.stdout


def measure(steps: int, repeat: int) -> dict[str, list[float]]:
    """Seconds per side, one list entry per repeat."""
    got: dict[str, list[float]] = {'plain': [], 'recorded': [], 'cold': [], 'cached': []}
    for r in range(repeat):
        with tempfile.TemporaryDirectory(prefix='sluice-fixed-') as work:
            with open(os.path.join(work, 'chain.py'), 'w') as f:
                f.write(PIPELINE)
            for name, text in (('plain', PLAIN), ('recorded', PLAIN_RECORDED)):
                with open(os.path.join(work, f'{name}.py'), 'w') as f:
                    f.write(text)
            for side in turns(['plain', 'recorded', 'sluice'], r):
                if side != 'sluice':
                    out = os.path.join(work, f'out-{side}')
                    seconds, _ = run_python([os.path.join(work, f'{side}.py'), out, str(steps)])
                    got[side].append(seconds)
                    shutil.rmtree(out)
                    continue
                seconds, out = _sluice(work, steps)
                assert out.count('COMPLETE') >= steps, out
                got['cold'].append(seconds)
                seconds, out = _sluice(work, steps)
                assert out.count('CACHED') >= steps, out
                got['cached'].append(seconds)
                shutil.rmtree(os.path.join(work, 'root'))
    return got


def profile(steps: int) -> None:
    """Where a cold and a cached run of the chain spend their time: imports, then functions."""
    import cProfile
    import pstats

    with tempfile.TemporaryDirectory(prefix='sluice-fixed-') as work:
        with open(os.path.join(work, 'chain.py'), 'w') as f:
            f.write(PIPELINE)
        env = {'CHAIN_STEPS': str(steps), 'CHAIN_ROOT': os.path.join(work, 'root')}
        _, proc = run_python(['-X', 'importtime', '-m', 'sluice.ui.cli', 'run', os.path.join(work, 'chain.py')],
                             cwd=work, env=env)
        rows = []
        for line in proc.stderr.splitlines():
            if line.startswith('import time:') and '|' in line:
                _, cumulative, name = line[len('import time:'):].split('|')
                if cumulative.strip().isdigit() and not name.startswith('  '):
                    rows.append((int(cumulative) / 1e6, name.strip()))
        print(f'\nimports of a cold {steps}-step run, top level, cumulative: {sum(s for s, _ in rows):.3f} s')
        for seconds, name in sorted(rows, reverse=True)[:10]:
            print(f'  {seconds:6.3f} s  {name}')
        shutil.rmtree(os.path.join(work, 'root'))
        os.environ.update(env)
        from sluice.ui.cli import main
        for kind in ('cold', 'cached'):
            prof = cProfile.Profile()
            prof.enable()
            try:
                main(['run', os.path.join(work, 'chain.py'), '--quiet'])
            except SystemExit:
                pass
            prof.disable()
            print(f'\n{kind} {steps}-step run in this process (imports done), by cumulative time:')
            pstats.Stats(prof, stream=sys.stdout).sort_stats('cumulative').print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--steps', type=int, default=8)
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument('--profile', action='store_true')
    parser.add_argument('--parallel', type=int, help="`sluice run --parallel N` (default: sluice's default)")
    args = parser.parse_args()
    if args.parallel is not None:
        PARALLEL[:] = ['--parallel', str(args.parallel)]
    print(f'# {machine()}' + (f'; sluice run --parallel {args.parallel}' if PARALLEL else ''))
    one, many = measure(1, args.repeat), measure(args.steps, args.repeat)
    n = args.steps
    print(f'{"side":<8} {"1 step":>28} {f"{n} steps":>28}')
    for side in ('plain', 'recorded', 'cold', 'cached'):
        print(f'{side:<8} {spread(one[side], unit=" s"):>28} {spread(many[side], unit=" s"):>28}')
    for side in ('cold', 'cached'):
        per_step = [(b - a) / (n - 1) * 1000 for a, b in zip(one[side], many[side])]
        fixed = [a - p / 1000 for a, p in zip(one[side], per_step)]
        print(f'{side}: per step {spread(per_step, ".1f", " ms")}, fixed {spread(fixed, ".3f", " s")}')
    print(f'{n}-step cold / recorded: {spread(ratios(many["cold"], many["recorded"]), unit="x")} (goal 2x); '
          f'cold / plain: {spread(ratios(many["cold"], many["plain"]), unit="x")}; '
          f'cached run: {spread(many["cached"], ".3f", " s")} (goal under 0.3 s)')
    if args.profile:
        profile(n)


if __name__ == '__main__':
    main()
