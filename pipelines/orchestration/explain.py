"""Why a node executed (or was reused): which part of its cache key changed.

Each execution that runs records the parts of its cache key (custom property ``cache_key_parts``,
JSON; see components/fingerprint/). For an execution, ``Explainer.why`` finds the most recent
earlier COMPLETE or CACHED execution of the same node (same pipeline, any run) and names what
differs:

    >>> Explainer(store, 'penguin').why(record)
    'parameter train_steps: 100 -> 200 (since execution #7, run 20261122-101500-3f9a)'

Reads the store only; imports nothing heavy (no TensorFlow, no Beam).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sluice.metadata.records import DONE_STATES, NODE

if TYPE_CHECKING:
    from sluice.metadata.records import ExecutionRecord
    from sluice.metadata.store import MetadataStore

_ABSENT = object()
_FILE_KEYS = ('input_files', 'files')  # external fingerprints of the files a driver reads


@dataclass
class _Past:
    """What explanations need of an execution of the node."""
    id: int
    state: str
    run_id: str
    cache_key: str
    parts: dict[str, Any] | None


def _parts(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        parts = json.loads(text)
    except ValueError:
        return None
    return parts if isinstance(parts, dict) else None


def recorded_parts(record: ExecutionRecord) -> dict[str, Any] | None:
    """The parts of its cache key an execution recorded, or None (recorded before Sluice kept them)."""
    return _parts(record.properties.get('cache_key_parts'))


class Explainer:
    """Explains the executions of one pipeline; keeps each node's history once loaded."""

    def __init__(self, store: MetadataStore, pipeline_name: str) -> None:
        self.store, self.pipeline_name = store, pipeline_name
        self._histories: dict[str, list[_Past]] = {}

    def history(self, node_id: str) -> list[_Past]:
        """Every execution of a node in this pipeline (any run), oldest first."""
        if node_id not in self._histories:
            from ml_metadata.proto import metadata_store_pb2 as pb

            from sluice.metadata.records import value_of

            mlmd = self.store.mlmd
            ctx = mlmd.get_context_by_type_and_name(NODE, f'{self.pipeline_name}.{node_id}')
            past = []
            for p in (mlmd.get_executions_by_context(ctx.id) if ctx is not None else []):
                props = p.custom_properties
                text = {k: value_of(props[k]) for k in ('run_id', 'cache_key', 'cache_key_parts') if k in props}
                past.append(_Past(p.id, pb.Execution.State.Name(p.last_known_state), text.get('run_id', ''),
                                  text.get('cache_key', ''), _parts(text.get('cache_key_parts'))))
            self._histories[node_id] = sorted(past, key=lambda e: e.id)
        return self._histories[node_id]

    # -- the explanation ----------------------------------------------------------------------
    def why(self, record: ExecutionRecord) -> str:
        """One line: why this execution ran, or which execution's outputs it reused."""
        history = self.history(record.node_id)
        if record.state == 'CACHED':
            source = self._reused_from(record, history)
            if source is None:
                return 'reused: CACHED (an earlier execution with the same cache key)'
            return f'reused: CACHED from execution #{source.id} (run {source.run_id})'
        if not record.cache_key:
            return 'failed before its cache key was computed (see the error)'
        earlier = [e for e in history if e.id < record.id]
        done = [e for e in earlier if e.state in DONE_STATES]
        if not done:
            return 'first execution of this node' + (' (earlier attempts did not complete)' if earlier else '')
        prev = done[-1]
        where = f'execution #{prev.id}, run {prev.run_id}'
        if prev.cache_key == record.cache_key:
            return (f'cache key unchanged since {where}: executed again because caching was off '
                    '(--no-cache, enable_cache=False) or those outputs were gone')
        old = prev.parts or next((e.parts for e in reversed(history)
                                  if e.cache_key == prev.cache_key and e.parts is not None), None)
        new = _parts(record.properties.get('cache_key_parts'))
        if old is None or new is None:
            return f'cache key differs from {where}, which recorded no key parts: cannot say which part changed'
        reasons = self.differences(old, new, record)
        return '; '.join(reasons or ['cache key differs']) + f' (since {where})'

    def differences(self, old: dict[str, Any], new: dict[str, Any], record: ExecutionRecord) -> list[str]:
        """Each part of the key that differs between two parts dicts, in words."""
        out: list[str] = []
        if old.get('component') != new.get('component'):
            out.append(f"component type {old.get('component')} -> {new.get('component')}")
        out += _implementation_changes(old.get('implementation'), new.get('implementation'))
        out += _code_changes(old.get('code') or {}, new.get('code') or {})
        old_params, new_params = old.get('parameters') or {}, new.get('parameters') or {}
        for name in sorted(set(old_params) | set(new_params)):
            before, after = old_params.get(name, _ABSENT), new_params.get(name, _ABSENT)
            if before != after:
                out.append(f'parameter {name}: {_show(before)} -> {_show(after)}')
        old_inputs, new_inputs = old.get('inputs') or {}, new.get('inputs') or {}
        producers = new.get('producers') or {}
        for key in sorted(set(old_inputs) | set(new_inputs)):
            before, after = old_inputs.get(key, ''), new_inputs.get(key, '')
            if before != after:
                out.append(self._input_change(key, before, after, producers.get(key), record))
        old_ext, new_ext = old.get('external') or {}, new.get('external') or {}
        for key in sorted(set(old_ext) | set(new_ext)):
            if old_ext.get(key) != new_ext.get(key):
                out.append('input files changed' if key in _FILE_KEYS else f"{key.replace('_', ' ')} changed")
        return list(dict.fromkeys(out))

    def _input_change(self, key: str, before: str, after: str, producer: str | None,
                      record: ExecutionRecord) -> str:
        if not after:
            return f"input '{key}' is now absent"
        if producer:
            run_execs = [e for e in self.history(producer) if e.run_id == record.run_id and e.id < record.id
                         and e.state in DONE_STATES]
            if not run_execs:
                detail = f'from {producer}'
            elif run_execs[-1].state == 'COMPLETE':
                detail = f'{producer} re-executed'
            else:
                detail = f'{producer} reused an earlier result'
        else:
            artifacts = record.inputs.get(key) or []
            detail = f'now {artifacts[0].type_name()} #{artifacts[0].id}' if artifacts else 'another artifact'
        return f"input '{key}' {'changed' if before else 'is now present'} ({detail})"

    def _reused_from(self, record: ExecutionRecord, history: list[_Past]) -> _Past | None:
        """The COMPLETE execution that produced the outputs a CACHED execution reused."""
        by_id = {e.id: e for e in history}
        ids = [a.id for group in record.outputs.values() for a in group if a.id is not None]
        if ids:
            from ml_metadata.proto import metadata_store_pb2 as pb

            events = self.store.mlmd.get_events_by_artifact_ids(ids)
            producers = [by_id[e.execution_id] for e in events if e.type == pb.Event.OUTPUT
                         and e.execution_id in by_id and by_id[e.execution_id].state == 'COMPLETE']
            if producers:
                return max(producers, key=lambda e: e.id)
        same = [e for e in history if e.state == 'COMPLETE' and e.cache_key == record.cache_key and e.id < record.id]
        return same[-1] if same else None


def _changed_files(old: dict[str, str], new: dict[str, str]) -> list[str]:
    names = []
    for name in sorted(set(old) | set(new)):
        if name not in old:
            names.append(f'{name} (new)')
        elif name not in new:
            names.append(f'{name} (gone)')
        elif old[name] != new[name]:
            names.append(name)
    return names


def _implementation_changes(old: Any, new: Any) -> list[str]:
    if old == new:
        return []
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return ['code changed (executor source)']
    out = []
    files = _changed_files(old.get('files') or {}, new.get('files') or {})
    if files:
        out.append(f"code changed (executor source: {', '.join(files)})")
    if old.get('version') != new.get('version'):
        out.append(f"component version {old.get('version')} -> {new.get('version')}")
    old_libs, new_libs = old.get('libraries') or {}, new.get('libraries') or {}
    libs = [f"{name} {old_libs.get(name, 'not declared')} -> {new_libs.get(name, 'not declared')}"
            for name in sorted(set(old_libs) | set(new_libs)) if old_libs.get(name) != new_libs.get(name)]
    if libs:
        out.append(f"library versions changed ({', '.join(libs)})")
    return out or ['code changed (executor source)']


def _code_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    out = []
    for param in sorted(set(old) | set(new)):
        before, after = old.get(param), new.get(param)
        if before == after:
            continue
        if isinstance(after, str) or after is None:
            out.append(f'module file {param} is missing' if after else f'module file {param} removed')
            continue
        name = after.get('file') or param
        if isinstance(before, dict):
            files = _changed_files(before.get('files') or {}, after.get('files') or {})
            detail = '' if files in ([], [name]) else ': ' + ', '.join(files)
        else:
            detail = ''
        out.append(f'code changed (module file {name}{detail})')
    return out


def _show(value: Any, limit: int = 60) -> str:
    if value is _ABSENT:
        return '(not set)'
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[:limit - 3] + '...'


def explain(store: MetadataStore, execution_id: int) -> str:
    """Why one execution ran or was reused (see ``Explainer.why``)."""
    record = store.execution(execution_id)
    return Explainer(store, store.run(record.run_id).pipeline_name).why(record)
