"""The commands about what is in production at a push destination: ``sluice production`` (the current
version, where its model came from, and the history), ``rollback`` and ``promote`` (each a change at
the destination, then recorded in the store). A destination may be a local directory or an object
store URL (``s3://`` or ``gs://bucket/prefix``); a store that cannot be reached raises ``StorageError``, which the
command line prints as its error (the URL and the setting to fix)."""
from __future__ import annotations

import argparse
from typing import Any, Callable

from sluice.metadata import storage
from sluice.metadata.records import MetadataStoreError
from sluice.metadata.store import MetadataStore
from sluice.ui.cli.common import CliError, open_store, table, with_store
from sluice.ui.cli.inspect import lineage_lines


def _optional_store(args: argparse.Namespace) -> MetadataStore | None:
    """The store given by --metadata (errors are errors), else the usual one if there is one."""
    if args.metadata:
        return open_store(args)
    try:
        return open_store(args)
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
    from sluice.components.production.destination import production

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
    if now.current is not None:
        lines += _current_lines(now)
    for note in now.notes():
        lines.append(f'  skipped:     {note}')
    rows = _history_rows(now)
    if rows:
        lines += ['', 'History (oldest first):', table(rows, ['TIME', 'VERSION', 'KIND', 'MODEL', 'FINGERPRINT',
                                                            'REPLACED', 'NOTE'])]
    return lines


def _current_lines(now: object) -> list[str]:
    """The version in production (``now.current``): how it got there, its model, blessing and metrics."""
    from sluice.components.production.destination import complete_below, describe_ref

    current = now.current  # type: ignore[attr-defined]
    lines = []
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
        below = complete_below(now.destination, current.number)  # type: ignore[attr-defined]
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
    return lines


def _history_rows(now: object) -> list[list[str]]:
    """One row per version ever pushed to the destination, oldest first (the history table)."""
    from sluice.components.production.destination import history, short

    current = now.current  # type: ignore[attr-defined]
    rows = []
    for entry in history(now.destination):  # type: ignore[attr-defined]
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
    return rows


def cmd_production(args: argparse.Namespace) -> int:
    from sluice.components.production.destination import location, production
    from sluice.components.production.record import store_identity

    destination = location(args.destination)
    if not (storage.listdir(destination) if storage.is_remote(destination) else storage.isdir(destination)):
        raise CliError(f'No push destination at {destination}: nothing has been pushed there.')
    lines = production_lines(destination)
    current = production(destination).current
    model = current.origin if current is not None else {}
    store = _optional_store(args) if model.get('artifact_id') else None
    if store is not None and model.get('store_id') == store_identity(store, create=False):
        try:
            lines += ['', f'Lineage of model #{model["artifact_id"]} (store {store.url}):',
                      *lineage_lines(store.lineage(int(model['artifact_id'])))]
        except MetadataStoreError:
            pass
    print('\n'.join(lines))
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from sluice.components.production.changes import ProductionError, PushError, rollback
    from sluice.components.production.record import version_artifact

    store = open_store(args)  # first: a rollback that cannot be recorded is not made
    try:
        new, target, replaced = rollback(args.destination, args.to, args.reason or '')
    except (ProductionError, PushError) as e:
        raise CliError(f'rollback refused: {e}') from None
    print(f'Rolled back {new.destination}: version {new.number} is now in production, a copy of '
          f'{target.describe()} ({_model_line(target.origin)}); it replaces '
          f'{replaced.describe() if replaced else "nothing"}.')
    _record(store, 'Rollback', new, lambda: version_artifact(store, new.destination, target.number,
                                                            target.fingerprint or '', target.facts()))
    return 0


def _record(store: Any, kind: str, new: Any, model_of: Callable[[], Any]) -> None:
    """Record a change the destination has already made (``kind``: Rollback or Promote) in the store,
    and say so; a failure says the destination changed but the store did not follow."""
    from sluice.components.production.record import record_change

    try:
        model = model_of()
        execution_id, pushed = record_change(store, kind, new.destination, model, new.number,
                                             new.fingerprint or '', new.record or {})
    except Exception as e:  # noqa: BLE001 - the destination changed; say that the store did not follow
        raise CliError(f'version {new.number} is in production at {new.destination}, but recording the '
                       f'{"promotion" if kind == "Promote" else kind.lower()} in {store.url} failed: {e}') from None
    print(f'Recorded in {store.url}: {kind} execution #{execution_id} (model #{model.id} -> PushedModel '
          f'#{pushed.id}).')


def cmd_promote(args: argparse.Namespace) -> int:
    from sluice.components.production.changes import ProductionError, PushError, promote
    from sluice.components.production.destination import short, stored_fingerprint
    from sluice.components.production.record import model_origin, stands_for_version

    reason = (args.reason or '').strip()
    if not reason:
        raise CliError('promote needs --reason TEXT: it pushes a model without a blessing, so say why (the reason '
                       'is kept in the push record and shown by sluice production).')
    store = open_store(args)
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
        now = stored_fingerprint(model.uri)
        if now != model.get('content_fingerprint'):
            raise CliError(f"promote refused: {model!r} stands for version {model.get('version')} at "
                           f"{model.get('destination')} as it was ({short(model.get('content_fingerprint'))}), but "
                           f'its files have changed since ({short(now)}): they are not the model this artifact '
                           f"stands for. See sluice production {model.get('destination')}.")
    from sluice.components.onnx_exporter import onnx_dir, onnx_model_of

    try:  # with the ONNX copy recorded for the model (a Trainer's OnnxExporter made it), if there is one
        new, replaced = promote(args.destination, model.uri, model_origin(store, model.id), reason,
                                onnx_dir(onnx_model_of(store, model)))
    except (ProductionError, PushError) as e:
        raise CliError(f'promote refused: {e}') from None
    print(f'Promoted model #{model.id} to {new.destination}: version {new.number} is now in production, replacing '
          f'{replaced.describe() if replaced else "nothing"}. Reason: {reason}')
    _record(store, 'Promote', new, lambda: model)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The production commands, in the order ``sluice --help`` lists them."""
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
