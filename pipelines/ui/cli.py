"""The ``sluice`` command line.

    sluice run FILE.py [--runner local|beam] [--metadata URL] [--beam-arg ARG ...] [--no-cache [NODE]]
                       [--from NODE] [--to NODE] [--only NODE]
    sluice run-node FILE.py --run-id RUN_ID --node NODE_ID [--metadata URL] [--no-retry]
    sluice watch FILE.py [--every SECONDS] [--metadata URL]
    sluice gc [--keep-runs N] [--older-than DAYS] [--dry-run] [--metadata URL]
    sluice resume RUN_ID [--runner local|beam] [--metadata URL]
    sluice runs [--pipeline NAME] [--metadata URL]
    sluice show RUN_ID [--metadata URL]
    sluice lineage ARTIFACT_ID [--metadata URL]
    sluice report RUN_ID [-o report.html] [--metadata URL]
    sluice production DEST [--metadata URL]
    sluice rollback DEST [--to VERSION] [--reason TEXT] [--metadata URL]
    sluice promote MODEL_ARTIFACT_ID DEST --reason TEXT [--metadata URL]
    sluice export airflow FILE.py -o DAG.py [--metadata URL] [--dag-id ID]
    sluice export kfp FILE.py --image IMAGE -o pipeline.yaml [--metadata URL] [--file-in-image PATH]

Every command takes -q/--quiet (only the outcome) and -v/--verbose (the libraries' messages too;
by default they go to <pipeline_root>/.sluice-logs/RUN_ID.log).

Commands that read a store take it from --metadata, else from $SLUICE_METADATA, else from the one
``runs/*/metadata.db`` under the current directory. Nothing here imports TensorFlow.
"""
from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import signal
import sys
import time
from typing import Sequence

from sluice.components.component import WiringError
from sluice.metadata.store import ExecutionRecord, LineageNode, MetadataStore, MetadataStoreError
from sluice.dsl.pipeline import PipelineError, load_pipeline


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


def _open_store(args: argparse.Namespace) -> MetadataStore:
    """The store a command reads: never created by reading (a mistyped path is an error)."""
    return MetadataStore(_store_url(args), create=False)


def _when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts).strftime('%Y-%m-%d %H:%M:%S')


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = '  '.join(f'{{:<{w}}}' for w in widths)
    return '\n'.join(fmt.format(*r).rstrip() for r in [header, *rows])


# -- commands ---------------------------------------------------------------------------------
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
    result = _runner(args.runner).run(pipeline, from_nodes=args.from_nodes, to_nodes=args.to_nodes, only=args.only)
    return _report(result)


def cmd_watch(args: argparse.Namespace) -> int:
    from sluice.ops.watch import Watcher

    if args.every <= 0:
        raise CliError(f'--every {args.every:g}: give a number of seconds above 0.')
    Watcher(args.file, args.every, metadata=args.metadata).forever()
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    from sluice.ops import gc

    store = _open_store(args)
    try:
        found = gc.plan(store, args.keep_runs, args.older_than)
    except ValueError as e:
        raise CliError(str(e)) from None
    if not args.dry_run:
        gc.collect(store, found)
    print('\n'.join(gc.describe(found, args.dry_run)))
    return 0


RUN_NODE_NOT_RETRYABLE = 3  # `sluice run-node`: the node failed with an error a retry cannot fix


def cmd_run_node(args: argparse.Namespace) -> int:
    """Exit status: 0 done, 1 failed but a retry may succeed, 2 usage, 3 failed and a retry cannot help
    (see the run-node parser's help)."""
    pipeline = load_pipeline(args.file)
    if args.metadata:
        pipeline.metadata = args.metadata
    from sluice.runners.local import LocalDagRunner
    try:
        node = LocalDagRunner().run_node(pipeline, args.run_id, args.node, retries=not args.no_retry)
    except MetadataStoreError as e:  # down, unreachable, locked, this node held by another live process
        if not e.retryable:  # a malformed URL, a store of another schema version
            print(f'sluice: error: {e}\nnot retried: the metadata store cannot be used for {args.node} as it is '
                  f'given; exit status {RUN_NODE_NOT_RETRYABLE}.', file=sys.stderr)
            return RUN_NODE_NOT_RETRYABLE
        print(f'sluice: error: {e}\nsluice run-node: exit status 1: the metadata store could not be used for '
              f'{args.node}; a retry may succeed if it was down, unreachable or busy.', file=sys.stderr)
        return 1
    if node.state == 'FAILED':
        print(f'\n{node.node_id} failed (execution {node.execution_id}):\n  {node.error}')
        if not node.retryable:
            print(f'not retried: {node.node_id} failed with an error a retry cannot fix (with the same input and '
                  f'code it fails the same way); fix the cause, then run it again. Exit status '
                  f'{RUN_NODE_NOT_RETRYABLE}.')
            return RUN_NODE_NOT_RETRYABLE
    return 0 if node.ok else 1


def _runner(name: str) -> object:
    if name == 'local':
        from sluice.runners.local import LocalDagRunner
        return LocalDagRunner()
    if name == 'beam':
        from sluice.runners.beam import BeamDagRunner
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
    if result.lost_to:  # type: ignore[attr-defined]
        print(f'This process stopped: run {run_id} was taken over by {result.lost_to}, '  # type: ignore[attr-defined]
              'which continues it; nothing more was published from here.')
        return 1
    if result.state != 'COMPLETE':  # type: ignore[attr-defined]
        print(f'Fix the cause, then resume this run: sluice resume {run_id} --metadata {url}')
        return 1
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    result = _runner(args.runner).resume(None, args.run_id, metadata=_store_url(args), take_over=args.take_over)
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
            elif kind == 'PushedModel':
                if artifact.get('pushed'):
                    where = os.path.join(artifact.get('pushed_destination'), artifact.get('pushed_version'))
                    earlier = ' (already in production: pushed earlier, nothing copied)' if str(
                        artifact.get('reason', '')).startswith('already in production') else ''
                    ungated = ' (no blessing gated this push)' if artifact.get('gated') == 0 else ''
                    lines.append(f'{node.node_id}: pushed to {where}{earlier}{ungated}')
                else:
                    lines.append(f"{node.node_id}: not pushed: {artifact.get('reason', '')}")
    return lines


def cmd_runs(args: argparse.Namespace) -> int:
    store = _open_store(args)
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


def _holder_line(holder: object) -> str:
    """Who drives (or last drove) a run, from its lease."""
    from sluice.orchestration.lease import holder_gone

    o = holder.owner  # type: ignore[attr-defined]
    who = f"sluice {o.get('command')}, pid {o.get('pid')} on {o.get('host')}, since {_when(o.get('started', 0))}"
    gone = holder_gone(holder)  # type: ignore[arg-type]
    if holder.released:  # type: ignore[attr-defined]
        return f'{who} (finished)'
    if gone:
        return f'{who} (not any more: {gone}; sluice resume takes it over)'
    return f'{who} (alive, last heartbeat {time.time() - holder.heartbeat:.0f}s ago)'  # type: ignore[attr-defined]


def cmd_show(args: argparse.Namespace) -> int:
    from sluice.orchestration.explain import Explainer

    store = _open_store(args)
    run = store.run(args.run_id)
    records = store.executions(args.run_id)
    explainer = Explainer(store, run.pipeline_name)
    print(f"Run {run.run_id} of pipeline '{run.pipeline_name}': {run.state}, "
          f'{run.nodes_done}/{len(run.node_ids)} nodes done, started {_when(run.create_time)}')
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


def _lineage_lines(node: LineageNode, prefix: str = '', label: str = '') -> list[str]:
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
            lines.extend(_lineage_lines(child, prefix + '     ', f'{key}: '))
    return lines


def cmd_lineage(args: argparse.Namespace) -> int:
    store = _open_store(args)
    print('\n'.join(_lineage_lines(store.lineage(args.artifact_id))))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from sluice.ui.report import write_report

    store = _open_store(args)
    path = write_report(store, args.run_id, args.output or f'report-{args.run_id}.html')
    print(f'Report of run {args.run_id} written to {os.path.abspath(path)}')
    return 0


# -- production: what is in production at a destination, rollback, promote -----------------------
def _optional_store(args: argparse.Namespace) -> MetadataStore | None:
    """The store given by --metadata (errors are errors), else the usual one if there is one."""
    if args.metadata:
        return _open_store(args)
    try:
        return _open_store(args)
    except (CliError, MetadataStoreError):
        return None


def _model_line(model: dict | None) -> str:
    model = model or {}
    version = model.get('from_version') or {}  # promoted from a Model artifact standing for a destination version
    via = f" (promoted from version {version.get('version')} at {version.get('destination')})" if version else ''
    if not (model.get('artifact_id') or model.get('pipeline')):
        if version:
            return f'unknown: no push record says where it came from{via}'
        return 'unknown (no push record: pushed by hand or by another tool)'
    store = f"store {str(model.get('store_id') or '?')[:8]}"
    return (f"artifact #{model.get('artifact_id')} of {store}, pipeline {model.get('pipeline') or '?'}, "
            f"run {model.get('run_id') or '?'}{via}")


def _number(value: object) -> str:
    return f'{value:.4f}' if isinstance(value, (int, float)) else 'n/a'


def production_lines(destination: str) -> list[str]:
    """What is in production at a destination and its history, in words (no store needed)."""
    from sluice.components.pusher import complete_below, describe_ref, history, production, short

    now = production(destination)
    if now.current is not None:
        headline = f'version {now.current.number}'
    elif now.numbers:
        headline = (f'nothing (no complete version: {"version" if len(now.numbers) == 1 else "versions"} '
                    f'{", ".join(str(n) for n in now.numbers)} {"is" if len(now.numbers) == 1 else "are all"} '
                    'incomplete)')
    else:
        headline = 'nothing (no version there yet)'
    lines = [f'Production at {now.destination}: {headline}']
    current = now.current
    if current is not None:
        record = current.record or {}
        who = record.get('operator') or {}
        copied = f' ({current.copied_from()}, made by hand)' if current.copy_of else ''
        lines.append(f"  kind:        {current.kind}{copied}"
                     + (f", {record.get('time')}" if record.get('time') else '')
                     + (f" by {who.get('user')}@{who.get('host')}" if who else ''))
        if current.foreign and not current.copy_of:
            lines.append(f'  note:        {current.copied_from()}')
        lines.append(f'  model:       {_model_line(current.origin)}'
                     + (f' (as recorded for version {current.copy_of["version"]})' if current.copy_of else ''))
        lines.append(f'  fingerprint: {current.fingerprint}')
        if current.record is None:  # made or copied by hand: it replaced the complete version below it
            below = complete_below(now.destination, current.number)
            replaced = f'{below.describe()}, the complete version below it' if below else 'nothing'
            lines.append(f'  replaced:    {replaced}')
        if record.get('kind') == 'rollback':
            lines.append(f"  rollback to: {describe_ref(record.get('target'))}, replacing "
                         f"{describe_ref(record.get('previous'))}")
        if record.get('reason'):
            lines.append(f"  reason:      {record['reason']}")
        if record.get('blessing'):
            lines.append('  measured against: ' + (describe_ref(record['baseline']) if record.get('baseline') else
                                                   'no baseline'))
        blessing = record.get('blessing')
        if blessing:
            lines.append(f"  blessing:    {blessing.get('verdict')} (blessing #{blessing.get('artifact_id')})")
            for check in blessing.get('checks') or []:
                mark = 'ok  ' if check.get('passed') else 'FAIL'
                lines.append(f"    {mark} {check.get('metric')} [{check.get('slice')}]: {check.get('reason')}")
            if blessing.get('policy'):
                lines.append(f"    FAIL {blessing['policy']}")
        elif record.get('kind') == 'promote':
            lines.append('  blessing:    none (promoted without a blessing)')
        metrics = record.get('metrics') or {}
        for name, value in sorted((metrics.get('candidate') or {}).items()):
            base = (metrics.get('baseline') or {}).get(name)
            against = f' (baseline {_number(base)})' if name in (metrics.get('baseline') or {}) else ''
            lines.append(f'  metric:      {name} = {_number(value)}{against}')
    for note in now.notes():
        lines.append(f'  skipped:     {note}')
    rows = []
    for entry in history(now.destination):
        version = int(entry['version'])
        note = []
        if current is not None and version == current.number:
            note.append('current')
        elif not entry.get('present'):
            note.append('deleted')
        if entry.get('problem'):
            note.append('incomplete')
        if entry.get('kind') == 'rollback':
            note.append(f"to version {(entry.get('target') or {}).get('version')}")
        if entry.get('copy_of'):
            note.append(f"copy of version {entry['copy_of'].get('version')}")
        if entry.get('reason'):
            note.append(f"reason: {entry['reason']}")
        model = entry.get('model') or {}
        who = f"#{model.get('artifact_id')} {model.get('pipeline') or ''} {model.get('run_id') or ''}".strip() \
            if model.get('artifact_id') else '-'
        rows.append([entry.get('time') or '-', str(version), entry.get('kind') or '?', who,
                     short(entry.get('fingerprint')), str((entry.get('previous') or {}).get('version') or '-'),
                     '; '.join(note)])
    if rows:
        lines += ['', 'History (oldest first):', _table(rows, ['TIME', 'VERSION', 'KIND', 'MODEL', 'FINGERPRINT',
                                                             'REPLACED', 'NOTE'])]
    return lines


def cmd_production(args: argparse.Namespace) -> int:
    from sluice.components.pusher import production
    from sluice.components.production.record import store_identity

    destination = os.path.abspath(args.destination)
    if not os.path.isdir(destination):
        raise CliError(f'No push destination at {destination}: nothing has been pushed there.')
    lines = production_lines(destination)
    current = production(destination).current
    model = current.origin if current is not None else {}
    store = _optional_store(args) if model.get('artifact_id') else None
    if store is not None and model.get('store_id') == store_identity(store, create=False):
        try:
            lines += ['', f'Lineage of model #{model["artifact_id"]} (store {store.url}):',
                      *_lineage_lines(store.lineage(int(model['artifact_id'])))]
        except MetadataStoreError:
            pass
    print('\n'.join(lines))
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from sluice.components.pusher import ProductionError, PushError, rollback
    from sluice.components.production.record import record_change, version_artifact

    store = _open_store(args)  # first: a rollback that cannot be recorded is not made
    try:
        new, target, replaced = rollback(args.destination, args.to, args.reason or '')
    except (ProductionError, PushError) as e:
        raise CliError(f'rollback refused: {e}') from None
    print(f'Rolled back {new.destination}: version {new.number} is now in production, a copy of '
          f'{target.describe()} ({_model_line(target.origin)}); it replaces '
          f'{replaced.describe() if replaced else "nothing"}.')
    try:
        model = version_artifact(store, new.destination, target.number, target.fingerprint or '', target.facts())
        execution_id, pushed = record_change(store, 'Rollback', new.destination, model, new.number,
                                             new.fingerprint or '', new.record or {})
    except Exception as e:  # noqa: BLE001 - the destination changed; say that the store did not follow
        raise CliError(f'version {new.number} is in production at {new.destination}, but recording the rollback in '
                       f'{store.url} failed: {e}') from None
    print(f'Recorded in {store.url}: Rollback execution #{execution_id} (model #{model.id} -> PushedModel '
          f'#{pushed.id}).')
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from sluice.components.pusher import ProductionError, PushError, content_fingerprint, promote, short
    from sluice.components.production.record import model_origin, record_change, stands_for_version

    reason = (args.reason or '').strip()
    if not reason:
        raise CliError('promote needs --reason TEXT: it pushes a model without a blessing, so say why (the reason '
                       'is kept in the push record and shown by sluice production).')
    store = _open_store(args)
    found = store.artifacts([args.artifact_id])
    if not found:
        raise CliError(f'No artifact {args.artifact_id} in the metadata store {store.url}.')
    model = found[0]
    if model.type_name() != 'Model':
        raise CliError(f'Artifact {args.artifact_id} is a {model.type_name()}, not a Model; promote takes the id of '
                       "a Model (a Trainer's output: see sluice show RUN_ID).")
    if model.state != 'LIVE' or not model.exists():
        raise CliError(f'{model!r} is not a published model with its files on disk ({model.state}, {model.uri}).')
    if stands_for_version(model):  # a destination version: promote it only as the artifact knew it
        now = content_fingerprint(model.uri)
        if now != model.get('content_fingerprint'):
            raise CliError(f"promote refused: {model!r} stands for version {model.get('version')} at "
                           f"{model.get('destination')} as it was ({short(model.get('content_fingerprint'))}), but "
                           f'its files have changed since ({short(now)}): they are not the model this artifact '
                           f"stands for. See sluice production {model.get('destination')}.")
    try:
        new, replaced = promote(args.destination, model.uri, model_origin(store, model.id), reason)
    except (ProductionError, PushError) as e:
        raise CliError(f'promote refused: {e}') from None
    print(f'Promoted model #{model.id} to {new.destination}: version {new.number} is now in production, replacing '
          f'{replaced.describe() if replaced else "nothing"}. Reason: {reason}')
    try:
        execution_id, pushed = record_change(store, 'Promote', new.destination, model, new.number,
                                             new.fingerprint or '', new.record or {})
    except Exception as e:  # noqa: BLE001
        raise CliError(f'version {new.number} is in production at {new.destination}, but recording the promotion '
                       f'in {store.url} failed: {e}') from None
    print(f'Recorded in {store.url}: Promote execution #{execution_id} (model #{model.id} -> PushedModel '
          f'#{pushed.id}).')
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write an Airflow DAG or a Kubeflow Pipelines spec running the pipeline node by node (pipelines/export.py)."""
    from sluice.integrations import export

    try:
        if args.target == 'airflow':
            path = export.write_airflow_dag(args.file, args.output, metadata=args.metadata, dag_id=args.dag_id)
        else:
            path = export.write_kfp_pipeline(args.file, args.output, args.image, metadata=args.metadata,
                                             file_in_image=args.file_in_image)
    except export.ExportError as e:
        raise CliError(str(e)) from None
    print(f'Wrote {path}')
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='sluice', description='Run and inspect Sluice pipelines.')
    loud = parser.add_mutually_exclusive_group()  # also accepted after the command (see main)
    loud.add_argument('-v', '--verbose', dest='verbosity', action='store_const', const=1, default=0,
                      help="also print the libraries' messages (else kept in <pipeline_root>/.sluice-logs/RUN_ID.log)")
    loud.add_argument('-q', '--quiet', dest='verbosity', action='store_const', const=-1,
                      help='print only the outcome line of a run')
    sub = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')

    def with_store(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument('--metadata', metavar='URL', help='metadata store URL (default: $SLUICE_METADATA, '
                       'else the one runs/*/metadata.db here)')
        return p

    p = with_store(sub.add_parser('run', help='run a pipeline file (or part of it: --from, --to, --only)'))
    p.add_argument('file', nargs='?', help='a Python file defining create_pipeline() or `pipeline`')
    p.add_argument('--runner', default='local', choices=['local', 'beam'],
                   help='local (default): nodes in this process in order; beam: the DAG as a Beam pipeline')
    p.add_argument('--beam-arg', action='append', metavar='ARG', help='extra Beam pipeline option (repeatable)')
    p.add_argument('--no-cache', nargs='?', const='*', action='append', metavar='NODE',
                   help='execute NODE even if a cached result exists (repeatable); without NODE, every node')
    p.add_argument('--from', dest='from_nodes', action='append', default=[], metavar='NODE',
                   help='run NODE and everything downstream of it (repeatable); the rest is reused from the '
                        'newest earlier run where it succeeded')
    p.add_argument('--to', dest='to_nodes', action='append', default=[], metavar='NODE',
                   help='run NODE and everything upstream of it (repeatable)')
    p.add_argument('--only', action='append', default=[], metavar='NODE', help='run just NODE (repeatable)')
    p.set_defaults(func=cmd_run)

    p = with_store(sub.add_parser('watch', help='run a pipeline now and whenever its input files change'))
    p.add_argument('file', help='the pipeline file')
    p.add_argument('--every', type=float, default=60.0, metavar='SECONDS',
                   help='how often to look at the inputs (default 60)')
    p.set_defaults(func=cmd_watch)

    p = with_store(sub.add_parser('gc', help='delete the files of artifacts no kept run and no production model needs'))
    p.add_argument('--keep-runs', type=int, default=5, metavar='N',
                   help='keep the newest N runs of each pipeline and all they use (default 5)')
    p.add_argument('--older-than', type=float, metavar='DAYS', help='also keep every run newer than DAYS days')
    p.add_argument('--dry-run', action='store_true', help='say what would be deleted, delete nothing')
    p.set_defaults(func=cmd_gc)

    p = with_store(sub.add_parser(
        'run-node', help='run one node of a run, in this process (for Airflow, KFP, or several machines sharing '
                         'a store)',
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog='''exit status:
  0  the node is COMPLETE or CACHED in the run (or was done there already)
  1  the node failed, and a retry may succeed: a transient error (a lost connection, a worker gone),
     its timeout, or the run taken over; or the metadata store could not be used (down, unreachable,
     locked, this node held by another live process)
  2  usage: bad arguments, a pipeline file that does not load, an unknown node, or a node whose
     upstream nodes have not completed in the run yet (run those first)
  3  the node failed with an error a retry cannot fix (bad input data, anomalies, a module file that
     does not import, a wiring error, stale code, a refused push), or a metadata URL that is malformed
     or names a store of another schema version; the output says "not retried: ...". Fix the cause, then run the node again. Tasks written by `sluice export airflow` fail without
     retrying on this status; every other failure is retried as the node's retry policy says.'''))
    p.add_argument('file', help='the pipeline file')
    p.add_argument('--run-id', required=True, help='the run (created by the first node that runs)')
    p.add_argument('--node', required=True, metavar='NODE_ID')
    p.add_argument('--no-retry', action='store_true',
                   help="one attempt only, whatever the node's retry policy (the caller retries)")
    p.set_defaults(func=cmd_run_node)

    p = with_store(sub.add_parser('resume', help='continue a failed or killed run under the same run id'))
    p.add_argument('run_id')
    p.add_argument('--runner', default='local', choices=['local', 'beam'])
    p.add_argument('--take-over', action='store_true',
                   help='take the run over even if the process driving it still looks alive (its '
                        'unfinished work is abandoned and can no longer be published)')
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

    p = with_store(sub.add_parser('production', help='what is in production at a push destination, and its history'))
    p.add_argument('destination', help='a push destination (the directory holding <version>/ directories)')
    p.set_defaults(func=cmd_production)

    p = with_store(sub.add_parser('rollback', help='make an earlier version current again (recorded in the store)'))
    p.add_argument('destination')
    p.add_argument('--to', type=int, metavar='VERSION', help='the version to make current again (default: the one '
                   'in production before the current one took over)')
    p.add_argument('--reason', metavar='TEXT', help='why (kept in the push record)')
    p.set_defaults(func=cmd_rollback)

    p = with_store(sub.add_parser('promote', help='push a Model without a blessing, deliberately and recorded'))
    p.add_argument('artifact_id', type=int, metavar='MODEL_ARTIFACT_ID')
    p.add_argument('destination')
    p.add_argument('--reason', metavar='TEXT', help='required: why this model goes to production without a blessing')
    p.set_defaults(func=cmd_promote)

    p = sub.add_parser('export', help='write an Airflow DAG or a Kubeflow Pipelines spec running each node '
                                      'with run-node')
    targets = p.add_subparsers(dest='target', required=True, metavar='TARGET')
    t = targets.add_parser('airflow', help='an Airflow DAG file: one BashOperator task per node')
    t.add_argument('--dag-id', help='the DAG id (default: the pipeline name)')
    t.set_defaults(image=None, file_in_image=None)
    k = targets.add_parser('kfp', help='a Kubeflow Pipelines v2 pipeline spec (YAML): one task per node')
    k.add_argument('--image', required=True, help='the container image the tasks run in (Sluice and the pipeline '
                   'file installed)')
    k.add_argument('--file-in-image', metavar='PATH', help="the pipeline file's path in the image (default: its "
                   'absolute path here)')
    k.set_defaults(dag_id=None)
    for q in (t, k):
        q.add_argument('file', help='the pipeline file')
        q.add_argument('-o', '--output', required=True, metavar='FILE', help='where to write it')
        q.add_argument('--metadata', metavar='URL', help="the store the tasks use (default: the pipeline's own)")
    p.set_defaults(func=cmd_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None and hasattr(signal, 'SIGPIPE'):  # `sluice runs | head`: end quietly, as Unix tools do
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    for flag in extra:  # --verbose / --quiet after the command, as in `sluice run FILE --quiet`
        if flag not in ('-v', '--verbose', '-q', '--quiet'):
            parser.error(f'unrecognized arguments: {" ".join(extra)}')
        args.verbosity = 1 if flag in ('-v', '--verbose') else -1
    from sluice.ui.logs import setup as setup_logging
    try:
        with setup_logging(args.verbosity, args.command, process=argv is None):
            return args.func(args)
    except KeyboardInterrupt:
        print('sluice: interrupted', file=sys.stderr)
        return 130
    except (CliError, MetadataStoreError, PipelineError, WiringError) as e:
        print(f'sluice: error: {e}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
