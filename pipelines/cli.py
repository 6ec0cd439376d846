"""The ``sluice`` command line.

    sluice run FILE.py [--runner local|beam] [--metadata URL] [--beam-arg ARG ...] [--no-cache]
    sluice resume RUN_ID [--runner local|beam] [--metadata URL]
    sluice runs [--pipeline NAME] [--metadata URL]
    sluice show RUN_ID [--metadata URL]
    sluice lineage ARTIFACT_ID [--metadata URL]
    sluice report RUN_ID [-o report.html] [--metadata URL]

Commands that read a store take it from --metadata, else from $SLUICE_METADATA, else from the one
``runs/*/metadata.db`` under the current directory. Nothing here imports TensorFlow.
"""
from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import sys
from typing import Sequence

from components.component import WiringError
from metadata.store import ExecutionRecord, LineageNode, MetadataStore, MetadataStoreError
from pipelines.pipeline import PipelineError, load_pipeline


class CliError(Exception):
    """A usage problem; printed without a traceback."""


def _store_url(args: argparse.Namespace) -> str:
    if args.metadata:
        return args.metadata
    if os.environ.get('SLUICE_METADATA'):
        return os.environ['SLUICE_METADATA']
    found = sorted(glob.glob(os.path.join('runs', '*', 'metadata.db')))
    if len(found) == 1:
        return f'sqlite:///{found[0]}'
    where = f' Stores found here: {", ".join(found)}.' if found else ''
    raise CliError('Which metadata store? Pass --metadata URL (e.g. sqlite:///runs/penguin/metadata.db) or set '
                   f'SLUICE_METADATA.{where}')


def _when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts).strftime('%Y-%m-%d %H:%M:%S')


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = '  '.join(f'{{:<{w}}}' for w in widths)
    return '\n'.join(fmt.format(*r).rstrip() for r in [header, *rows])


# -- commands ---------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    pipeline = load_pipeline(args.file)
    if args.metadata:
        pipeline.metadata = args.metadata
    if args.no_cache:
        pipeline.enable_cache = False
    pipeline.beam_pipeline_args += list(args.beam_arg or [])
    result = _runner(args.runner).run(pipeline)
    return _report(result)


def _runner(name: str) -> object:
    if name == 'local':
        from pipelines.local_dag_runner import LocalDagRunner
        return LocalDagRunner()
    if name == 'beam':
        from pipelines.beam_dag_runner import BeamDagRunner
        return BeamDagRunner()
    raise CliError(f"Unknown runner {name!r}; use --runner local or --runner beam.")


def _report(result: object) -> int:
    for line in outcome_lines(result):
        print(line)
    for node in result.nodes.values():  # type: ignore[attr-defined]
        if node.state == 'FAILED':
            print(f'\n{node.node_id} failed (execution {node.execution_id}):\n  {node.error}')
    run_id, url = result.run_id, result.metadata  # type: ignore[attr-defined]
    print(f'\nDetails: sluice show {run_id} --metadata {url}')
    if result.state != 'COMPLETE':  # type: ignore[attr-defined]
        print(f'Fix the cause, then resume this run: sluice resume {run_id} --metadata {url}')
        return 1
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    result = _runner(args.runner).resume(None, args.run_id, metadata=_store_url(args))
    return _report(result)


def outcome_lines(result: object) -> list[str]:
    """The gate's outcome in words: each blessing with its reasons, each push and where it went."""
    lines: list[str] = []
    for node in result.nodes.values():  # type: ignore[attr-defined]
        for artifact in node.outputs.values():
            kind = artifact.type_name()
            if kind == 'ModelBlessing':
                path = os.path.join(artifact.uri, 'reasons.json')
                reasons = {}
                if os.path.isfile(path):
                    with open(path) as f:
                        reasons = json.load(f)
                verdict = 'BLESSED' if artifact.get('blessed') else 'NOT_BLESSED'
                base = artifact.get('baseline_model_id')
                lines.append(f'\n{node.node_id}: {verdict} model #{artifact.get("current_model_id")} against '
                             + (f'baseline model #{base}' if base else 'no baseline (first model)'))
                for check in reasons.get('checks', []):
                    mark = 'ok  ' if check['passed'] else 'FAIL'
                    lines.append(f"  {mark} {check['metric']} [{check['slice']}]: {check['reason']}")
                if reasons.get('policy'):
                    lines.append(f"  FAIL {reasons['policy']}")
            elif kind == 'PushedModel':
                if artifact.get('pushed'):
                    where = os.path.join(artifact.get('pushed_destination'), artifact.get('pushed_version'))
                    lines.append(f'{node.node_id}: pushed to {where}')
                else:
                    lines.append(f"{node.node_id}: not pushed: {artifact.get('reason', '')}")
    return lines


def cmd_runs(args: argparse.Namespace) -> int:
    store = MetadataStore(_store_url(args))
    runs = store.runs(args.pipeline)
    if not runs:
        print(f'No runs in {store.url}' + (f" for pipeline '{args.pipeline}'." if args.pipeline else '.'))
        return 0
    rows = [[r.run_id, r.pipeline_name, _when(r.create_time), r.state, f'{r.nodes_done}/{len(r.node_ids)}']
            for r in runs]
    print(_table(rows, ['RUN', 'PIPELINE', 'STARTED', 'STATE', 'NODES DONE']))
    return 0


def _artifact_line(key: str, artifact: object) -> str:
    a = artifact
    return f'    {key}: {a.type_name()} #{a.id} {a.uri}'  # type: ignore[attr-defined]


def cmd_show(args: argparse.Namespace) -> int:
    store = MetadataStore(_store_url(args))
    run = store.run(args.run_id)
    records = store.executions(args.run_id)
    print(f"Run {run.run_id} of pipeline '{run.pipeline_name}': {run.state}, "
          f'{run.nodes_done}/{len(run.node_ids)} nodes done, started {_when(run.create_time)}')
    print(f'Store: {store.url}')
    by_node: dict[str, list[ExecutionRecord]] = {}
    for record in records:
        by_node.setdefault(record.node_id, []).append(record)
    for node_id in run.node_ids or list(by_node):
        attempts = by_node.get(node_id, [])
        if not attempts:
            print(f'\n{node_id}: not started')
            continue
        for record in attempts:
            took = record.update_time - record.create_time
            extra = ' (cache hit: outputs reused)' if record.state == 'CACHED' else ''
            print(f'\n{node_id} [{record.component_type}] {record.state} {took:.1f}s, execution #{record.id}{extra}')
            for key, artifacts in sorted(record.outputs.items()):
                for a in artifacts:
                    print(_artifact_line(key, a))
            if record.error:
                print(f'    error: {record.error}')
    return 0


def _lineage_lines(node: LineageNode, prefix: str = '', label: str = '') -> list[str]:
    a = node.artifact
    lines = [f'{prefix}{label}{a.type_name()} #{a.id} {a.uri}']
    ex = node.execution
    if ex is None:
        return lines
    params = ''
    if ex.properties.get('parameters'):
        p = json.loads(ex.properties['parameters'])
        params = ' ' + ', '.join(f'{k}={json.dumps(v)}' for k, v in p.items() if v not in (None, [], {}, ''))
    lines.append(f'{prefix}  <- {ex.node_id} [{ex.component_type}] execution #{ex.id}, run {ex.run_id}{params}')
    if ex.properties.get('input_files'):
        for path in json.loads(ex.properties['input_files']):
            lines.append(f'{prefix}       file: {path}')
    for key, children in node.inputs.items():
        for child in children:
            lines.extend(_lineage_lines(child, prefix + '     ', f'{key}: '))
    return lines


def cmd_lineage(args: argparse.Namespace) -> int:
    store = MetadataStore(_store_url(args))
    print('\n'.join(_lineage_lines(store.lineage(args.artifact_id))))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pipelines.report import write_report

    store = MetadataStore(_store_url(args))
    path = write_report(store, args.run_id, args.output or f'report-{args.run_id}.html')
    print(f'Report of run {args.run_id} written to {os.path.abspath(path)}')
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='sluice', description='Run and inspect Sluice pipelines.')
    sub = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')

    def with_store(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument('--metadata', metavar='URL', help='metadata store URL (default: $SLUICE_METADATA, '
                       'else the one runs/*/metadata.db here)')
        return p

    p = with_store(sub.add_parser('run', help='run a pipeline file'))
    p.add_argument('file', help='a Python file defining create_pipeline() or `pipeline`')
    p.add_argument('--runner', default='local', choices=['local', 'beam'],
                   help='local (default): nodes in this process in order; beam: the DAG as a Beam pipeline')
    p.add_argument('--beam-arg', action='append', metavar='ARG', help='extra Beam pipeline option (repeatable)')
    p.add_argument('--no-cache', action='store_true', help='execute every node even if a cached result exists')
    p.set_defaults(func=cmd_run)

    p = with_store(sub.add_parser('resume', help='continue a failed or killed run under the same run id'))
    p.add_argument('run_id')
    p.add_argument('--runner', default='local', choices=['local', 'beam'])
    p.set_defaults(func=cmd_resume)

    p = with_store(sub.add_parser('runs', help='list runs'))
    p.add_argument('--pipeline', help='only runs of this pipeline')
    p.set_defaults(func=cmd_runs)

    p = with_store(sub.add_parser('show', help='show the nodes, states and outputs of a run'))
    p.add_argument('run_id')
    p.set_defaults(func=cmd_show)

    p = with_store(sub.add_parser('report', help='write one self-contained HTML page about a run'))
    p.add_argument('run_id')
    p.add_argument('-o', '--output', metavar='FILE', help='where to write it (default report-RUN_ID.html)')
    p.set_defaults(func=cmd_report)

    p = with_store(sub.add_parser('lineage', help='show what produced an artifact, back to its sources'))
    p.add_argument('artifact_id', type=int)
    p.set_defaults(func=cmd_lineage)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CliError, MetadataStoreError, PipelineError, WiringError) as e:
        print(f'sluice: error: {e}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
