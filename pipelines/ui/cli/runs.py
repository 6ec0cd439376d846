"""The commands that drive runs: ``sluice run``, ``run-node``, ``resume``, ``watch`` and ``gc``, and the
outcome of a run in words (each blessing with its reasons, each push and where it went)."""
from __future__ import annotations

import argparse
import json
import os
import shlex

from sluice.metadata import storage
from sluice.components.production.destination import pushed_directory
from sluice.dsl.pipeline import load_pipeline
from sluice.ops.gc import DEFAULT_ABANDONED_DAYS
from sluice.runners.run_node import run_node
from sluice.ui.cli.common import CliError, open_store, store_url, with_monitoring, with_store


def cmd_run(args: argparse.Namespace) -> int:
    no_cache = list(args.no_cache or [])
    if args.file is None:  # `sluice run --no-cache FILE.py`: the file was taken as the node name
        if no_cache and no_cache[-1].endswith('.py') and os.path.isfile(no_cache[-1]):
            args.file, no_cache[-1] = no_cache[-1], '*'
        else:
            raise CliError('Which pipeline file? Usage: sluice run FILE.py [--from NODE] [--no-cache [NODE]] ...')
    pipeline = load_pipeline(args.file)
    if args.metadata:
        pipeline.metadata = args.metadata
    if '*' in no_cache:
        pipeline.enable_cache = False
    for node_id in set(no_cache) - {'*'}:
        pipeline.node(node_id)  # a clear error for an unknown node
        pipeline.no_cache.add(node_id)
    pipeline.beam_pipeline_args += list(args.beam_arg or [])
    result = _runner(args.runner, args.parallel).run(pipeline, from_nodes=args.from_nodes, to_nodes=args.to_nodes,
                                                     only=args.only)
    return _report(result)


def cmd_watch(args: argparse.Namespace) -> int:
    from sluice.ops.watch import Watcher

    if args.every <= 0:
        raise CliError(f'--every {args.every:g}: give a number of seconds above 0.')
    if not os.path.isfile(args.file):  # a typo; a file that exists but does not load is watched until it does
        raise CliError(f'No pipeline file {args.file}; give the path of a Python file defining create_pipeline() '
                       'or `pipeline`.')
    Watcher(args.file, args.every, metadata=args.metadata, runner=_runner('local', args.parallel)).forever()
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    from sluice.ops import gc

    store = open_store(args)
    try:
        found = gc.plan(store, args.keep_runs, args.older_than, roots=args.root or None,
                        abandoned_after_days=args.abandoned_after)
    except ValueError as e:
        raise CliError(str(e)) from None
    if not args.dry_run:
        gc.collect(store, found)
    print('\n'.join(gc.describe(found, args.dry_run)))
    return 0


def cmd_run_node(args: argparse.Namespace) -> int:
    """Exit status: 0 done, 1 failed but a retry may succeed, 2 usage, 3 failed and a retry cannot help
    (see the run-node parser's help and sluice.runners.run_node)."""
    return run_node(args.file, args.run_id, args.node, metadata=args.metadata, retries=not args.no_retry,
                    attempt=args.attempt)


def _runner(name: str, parallel: int | None = None) -> object:
    if parallel is not None and parallel < 1:
        raise CliError(f'--parallel {parallel}: give how many nodes may run at once, 1 or more.')
    if name == 'local':
        from sluice.runners.local import LocalDagRunner
        return LocalDagRunner(parallel=parallel)
    if name == 'beam':
        from sluice.runners.beam import BeamDagRunner
        return BeamDagRunner(parallel=parallel)
    raise CliError(f"Unknown runner {name!r}; use --runner local or --runner beam.")


def _report(result: object) -> int:
    for line in outcome_lines(result):
        print(line)
    for node in result.nodes.values():  # type: ignore[attr-defined]
        if node.state == 'FAILED':
            print(f'\n{node.node_id} failed (execution {node.execution_id}):\n  {node.error}')
    run_id, url = result.run_id, shlex.quote(result.metadata)  # type: ignore[attr-defined]  (password masked)
    print(f'\nDetails: sluice show {run_id} --metadata {url}')
    if result.lost_to:  # type: ignore[attr-defined]
        print(f'This process stopped: run {run_id} was taken over by {result.lost_to}, '  # type: ignore[attr-defined]
              'which continues it; nothing more was published from here.')
        return 1
    if result.state != 'COMPLETE':  # type: ignore[attr-defined]
        print(f'Fix the cause, then resume this run: sluice resume {run_id} --metadata {url}')
        return 1
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    result = _runner(args.runner, args.parallel).resume(None, args.run_id, metadata=store_url(args),
                                                        take_over=args.take_over)
    return _report(result)


def outcome_lines(result: object) -> list[str]:
    """The gate's outcome in words: each blessing with its reasons, each push and where it went."""
    lines: list[str] = []
    for node in result.nodes.values():  # type: ignore[attr-defined]
        for artifact in node.outputs.values():
            kind = artifact.type_name()
            if kind == 'ModelBlessing':
                path = os.path.join(storage.local_copy(artifact.uri), 'reasons.json')
                reasons = {}
                if os.path.isfile(path):
                    with open(path) as f:
                        reasons = json.load(f)
                verdict = 'BLESSED' if artifact.get('blessed') else 'NOT_BLESSED'
                base, version = artifact.get('baseline_model_id'), artifact.get('baseline_version')
                against = f'production version {version} (baseline model #{base})' if version else \
                    f'baseline model #{base}'
                lines.append(f'\n{node.node_id}: {verdict} model #{artifact.get("current_model_id")} against '
                             + (against if base else 'no baseline (first model)'))
                for check in reasons.get('checks', []):
                    mark = 'ok  ' if check['passed'] else 'FAIL'
                    lines.append(f"  {mark} {check['metric']} [{check['slice']}]: {check['reason']}")
                if reasons.get('policy'):
                    lines.append(f"  FAIL {reasons['policy']}")
            elif kind == 'InfraBlessing':
                verdict = 'INFRA_BLESSED' if artifact.get('blessed') else 'INFRA_NOT_BLESSED'
                lines.append(f'{node.node_id}: {verdict} model #{artifact.get("current_model_id")}: '
                             f'{artifact.get("reason", "")}')
            elif kind == 'PushedModel':
                if artifact.get('pushed'):
                    where = pushed_directory(artifact)
                    earlier = ' (already in production: pushed earlier, nothing copied)' if str(
                        artifact.get('reason', '')).startswith('already in production') else ''
                    ungated = ' (no blessing gated this push)' if artifact.get('gated') == 0 else ''
                    lines.append(f'{node.node_id}: pushed to {where}{earlier}{ungated}')
                else:
                    lines.append(f"{node.node_id}: not pushed: {artifact.get('reason', '')}")
    return lines


RUN_NODE_EPILOG = '''exit status:
  0  the node is COMPLETE or CACHED in the run (or was done there already)
  1  the node failed, and a retry may succeed: a transient error (a lost connection, a worker gone),
     its timeout, or the run taken over; or the metadata store could not be used (down, unreachable,
     locked, this node held by another live process)
  2  usage: bad arguments, a pipeline file that does not load, an unknown node, or a node whose
     upstream nodes have not completed in the run yet (run those first)
  3  the node failed with an error a retry cannot fix (bad input data, anomalies, a module file that
     does not import, a wiring error, stale code, a refused push), or a metadata URL that is malformed
     or names a store of another schema version; the output says "not retried: ...". Fix the cause, then run the node again. Tasks written by `sluice export airflow` fail without
     retrying on this status; every other failure is retried as the node's retry policy says.'''


def _with_parallel(p: argparse.ArgumentParser) -> None:
    p.add_argument('--parallel', type=int, metavar='N',
                   help='run up to N nodes the DAG does not order at once (default: the cores available; 1: one '
                        'at a time; --runner local)')


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The commands that drive runs, in the order ``sluice --help`` lists them."""
    p = with_monitoring(with_store(sub.add_parser('run', help='run a pipeline file (or part of it: --from, --to, --only)')))
    p.add_argument('file', nargs='?', help='a Python file defining create_pipeline() or `pipeline`')
    p.add_argument('--runner', default='local', choices=['local', 'beam'],
                   help='local (default): nodes in this process in order; beam: the DAG as a Beam pipeline')
    p.add_argument('--beam-arg', action='append', metavar='ARG', help='extra Beam pipeline option (repeatable)')
    _with_parallel(p)
    p.add_argument('--no-cache', nargs='?', const='*', action='append', metavar='NODE',
                   help='execute NODE even if a cached result exists (repeatable); without NODE, every node')
    p.add_argument('--from', dest='from_nodes', action='append', default=[], metavar='NODE',
                   help='run NODE and everything downstream of it (repeatable); the rest is reused from the '
                        'newest earlier run where it succeeded')
    p.add_argument('--to', dest='to_nodes', action='append', default=[], metavar='NODE',
                   help='run NODE and everything upstream of it (repeatable)')
    p.add_argument('--only', action='append', default=[], metavar='NODE', help='run just NODE (repeatable)')
    p.set_defaults(func=cmd_run)

    p = with_monitoring(with_store(sub.add_parser('watch', help='run a pipeline now and whenever its input files change')))
    p.add_argument('file', help='the pipeline file')
    p.add_argument('--every', type=float, default=60.0, metavar='SECONDS',
                   help='how often to look at the inputs (default 60)')
    _with_parallel(p)
    p.set_defaults(func=cmd_watch)

    p = with_store(sub.add_parser('gc', help='delete the files of artifacts no kept run and no production model needs'))
    p.add_argument('--keep-runs', type=int, default=5, metavar='N',
                   help='keep the newest N runs of each pipeline and all they use (default 5)')
    p.add_argument('--older-than', type=float, metavar='DAYS', help='also keep every run newer than DAYS days')
    p.add_argument('--abandoned-after', type=float, default=DEFAULT_ABANDONED_DAYS, metavar='DAYS',
                   help='keep unfinished runs (waiting between nodes, failed, running) until they show no sign of life '
                        'for DAYS days (default %(default)g)')
    p.add_argument('--root', action='append', metavar='DIR',
                   help='delete only under DIR (repeatable; default: the current directory)')
    p.add_argument('--dry-run', action='store_true', help='say what would be deleted, delete nothing')
    p.set_defaults(func=cmd_gc)

    p = with_monitoring(with_store(sub.add_parser(
        'run-node', help='run one node of a run, in this process (for Airflow, KFP, or several machines sharing '
                         'a store)',
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=RUN_NODE_EPILOG)))
    p.add_argument('file', help='the pipeline file')
    p.add_argument('--run-id', required=True, help='the run (created by the first node that runs)')
    p.add_argument('--node', required=True, metavar='NODE_ID')
    p.add_argument('--no-retry', action='store_true',
                   help="one attempt only, whatever the node's retry policy (the caller retries)")
    p.add_argument('--attempt', type=int, metavar='N',
                   help="the orchestrator's try number of this task (Airflow: {{ ti.try_number }}): a retry takes the "
                        'node over at once from an earlier try that was killed, on whatever host; without it, a '
                        'killed try on another host is taken over after one lease period of silence')
    p.set_defaults(func=cmd_run_node)

    p = with_monitoring(with_store(sub.add_parser('resume', help='continue a failed or killed run under the same run id')))
    p.add_argument('run_id')
    p.add_argument('--runner', default='local', choices=['local', 'beam'])
    _with_parallel(p)
    p.add_argument('--take-over', action='store_true',
                   help='take the run over even if the process driving it still looks alive (its '
                        'unfinished work is abandoned and can no longer be published)')
    p.set_defaults(func=cmd_resume)
