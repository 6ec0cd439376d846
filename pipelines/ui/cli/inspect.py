"""The commands that read a store and change nothing: ``sluice runs``, ``show``, ``lineage`` and
``report``; also the lineage tree in words, which ``sluice production`` prints for the model in
production."""
from __future__ import annotations

import argparse
import json
import os
import time

from sluice.metadata.records import ExecutionRecord, LineageNode
from sluice.ui.cli.common import open_store, table, when, with_store


def cmd_runs(args: argparse.Namespace) -> int:
    store = open_store(args)
    runs = store.runs(args.pipeline)
    if not runs:
        print(f'No runs in {store.url}' + (f" for pipeline '{args.pipeline}'." if args.pipeline else '.'))
        return 0
    rows = [[r.run_id, r.pipeline_name, when(r.create_time), r.state, f'{r.nodes_done}/{len(r.node_ids)}']
            for r in runs]
    print(table(rows, ['RUN', 'PIPELINE', 'STARTED', 'STATE', 'NODES DONE']))
    return 0


def _artifact_line(key: str, artifact: object) -> str:
    a = artifact
    return f'    {key}: {a.type_name()} #{a.id} {a.uri}'  # type: ignore[attr-defined]


def _holder_line(holder: object) -> str:
    """Who drives (or last drove) a run, from its lease."""
    from sluice.orchestration.lease import holder_gone

    o = holder.owner  # type: ignore[attr-defined]
    who = f"sluice {o.get('command')}, pid {o.get('pid')} on {o.get('host')}, since {when(o.get('started', 0))}"
    gone = holder_gone(holder)  # type: ignore[arg-type]
    if holder.released:  # type: ignore[attr-defined]
        return f'{who} (finished)'
    if gone:
        return f'{who} (not any more: {gone}; sluice resume takes it over)'
    from sluice.metadata.records import same_machine
    if not same_machine(o):  # its heartbeat times are its own clock's: no age to read off ours
        return f"{who} (on another machine; last heartbeat at {when(holder.heartbeat)} by {o.get('host')}'s clock)"  # type: ignore[attr-defined]
    return f'{who} (alive, last heartbeat {time.time() - holder.heartbeat:.0f}s ago)'  # type: ignore[attr-defined]


def cmd_show(args: argparse.Namespace) -> int:
    from sluice.orchestration.explain import Explainer

    store = open_store(args)
    run = store.run(args.run_id)
    records = store.executions(args.run_id)
    explainer = Explainer(store, run.pipeline_name)
    print(f"Run {run.run_id} of pipeline '{run.pipeline_name}': {run.state}, "
          f'{run.nodes_done}/{len(run.node_ids)} nodes done, started {when(run.create_time)}')
    print(f'Store: {store.url}')
    holder = store.lease_latest(run.run_id)
    if holder is not None:
        print(f'Driven by: {_holder_line(holder)}')
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
            if record.properties.get('reused_from_run'):
                extra = (f" (not selected: reused from run {record.properties['reused_from_run']}, execution "
                         f"#{record.properties.get('reused_execution')})")
            if (record.properties.get('attempt') or 1) > 1 or len(attempts) > 1 and record.properties.get('attempt'):
                extra += f" (attempt {record.properties['attempt']})"
            print(f'\n{node_id} [{record.component_type}] {record.state} {took:.1f}s, execution #{record.id}{extra}')
            print(f'    why: {explainer.why(record)}')
            for key, artifacts in sorted(record.outputs.items()):
                for a in artifacts:
                    print(_artifact_line(key, a))
            if record.error:
                print(f'    error: {record.error}')
    return 0


def lineage_lines(node: LineageNode, prefix: str = '', label: str = '') -> list[str]:
    """An artifact and, indented below it, the execution that produced it and that execution's inputs."""
    a = node.artifact
    gone = ' (DELETED by sluice gc)' if a.state == 'DELETED' else ''
    lines = [f'{prefix}{label}{a.type_name()} #{a.id} {a.uri}{gone}']
    ex = node.execution
    if ex is None:
        return lines
    params = ''
    if ex.properties.get('parameters'):
        p = json.loads(ex.properties['parameters'])
        params = ' ' + ', '.join(f'{k}={json.dumps(v)}' for k, v in p.items() if v not in (None, [], {}, ''))
    run = f', run {ex.run_id}' if ex.run_id else ''  # a rollback or promotion belongs to no run
    lines.append(f'{prefix}  <- {ex.node_id} [{ex.component_type}] execution #{ex.id}{run}{params}')
    if ex.properties.get('input_files'):
        for path in json.loads(ex.properties['input_files']):
            lines.append(f'{prefix}       file: {path}')
    for key, children in node.inputs.items():
        for child in children:
            lines.extend(lineage_lines(child, prefix + '     ', f'{key}: '))
    return lines


def cmd_lineage(args: argparse.Namespace) -> int:
    store = open_store(args)
    print('\n'.join(lineage_lines(store.lineage(args.artifact_id))))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from sluice.ui.report import write_report

    store = open_store(args)
    path = write_report(store, args.run_id, args.output or f'report-{args.run_id}.html')
    print(f'Report of run {args.run_id} written to {os.path.abspath(path)}')
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The commands that read a store, in the order ``sluice --help`` lists them."""
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
