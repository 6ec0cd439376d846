"""Resuming a run: what to reuse, what to run again and why.

A run is resumed under its own run id. In topological order, a node is reused when its latest
execution in the run is COMPLETE or CACHED, its outputs are still on disk, its cache key is the same
as it would be now (same code, parameters and inputs), and every node upstream of it is reused too.
Every other node runs (through the normal launch, so it can still be a cache hit from another run).
A resume first takes the run's lease (see ``sluice.orchestration.lease``); a RUNNING execution of the process
that held it before (gone, silent, or taken over) is then marked FAILED as abandoned and its partial
outputs are removed, so it can never be mistaken for live work nor be published late.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import time
from dataclasses import dataclass
from typing import Any, Callable

from sluice.components import fingerprint as fp
from sluice.components.driver import PipelineInfo
from sluice.metadata.credentials import without_password
from sluice.metadata.records import (DONE_STATES, ExecutionRecord, FencingError, MetadataStoreError,
                                     latest_per_node)
from sluice.metadata.store import MetadataStore
from sluice.orchestration.explain import Explainer, recorded_parts
from sluice.metadata import storage
from sluice.orchestration.launcher import execution_tmp_dir
from sluice.orchestration.lease import holder_gone, lease_seconds, process_gone
from sluice.dsl.pipeline import Pipeline, PipelineError, load_pipeline


@dataclass
class Step:
    """The plan for one node: 'reuse' or 'run', and why."""
    node_id: str
    action: str
    reason: str
    execution: ExecutionRecord | None = None


def definition_properties(pipeline: Pipeline) -> dict[str, Any]:
    """What a run stores so that the run id alone is enough to resume it. No password: a resume opens
    the store from the URL it is given (``stored_pipeline``), and the pipeline is stored with its
    store URL's password left out."""
    import copy

    import cloudpickle

    args = {k: without_password(v) if isinstance(v, str) else v for k, v in pipeline.source_args.items()}
    stored = copy.copy(pipeline)
    stored.metadata = without_password(pipeline.metadata)
    # Callbacks hold what they need to reach people (a webhook's URL and headers are often its secret):
    # never stored. A resume from the pipeline file has them again; one from the stored copy has none.
    stored.on_success, stored.on_failure = [], []
    props: dict[str, Any] = {
        'pipeline_file': pipeline.source_file or '',
        'cwd': os.getcwd(),  # relative paths in the pipeline file are resolved from here on resume
        'pipeline_args': json.dumps(args, sort_keys=True, default=str),
        'enable_cache': int(pipeline.enable_cache),
        'no_cache_nodes': json.dumps(sorted(getattr(pipeline, 'no_cache', ()))),
        'beam_pipeline_args': json.dumps(pipeline.beam_pipeline_args),
    }
    try:
        props['pipeline_pickle'] = base64.b64encode(cloudpickle.dumps(stored)).decode('ascii')
    except Exception:  # not every pipeline pickles; a pipeline file is then required to resume
        props['pipeline_pickle'] = ''
    signature = pickle_signature(props['pipeline_pickle'])
    if signature:
        props['pipeline_pickle_hmac'] = signature
    return props


PIPELINE_KEY_ENV = 'SLUICE_PIPELINE_KEY'


def pickle_signature(encoded: str) -> str:
    """HMAC-SHA256 of a stored pipeline copy under ``$SLUICE_PIPELINE_KEY`` ('' without a key)."""
    import hashlib
    import hmac

    key = os.environ.get(PIPELINE_KEY_ENV, '')
    if not key or not encoded:
        return ''
    return hmac.new(key.encode(), encoded.encode('ascii'), hashlib.sha256).hexdigest()


def check_signature(run_id: str, props: dict[str, Any]) -> None:
    """With ``$SLUICE_PIPELINE_KEY`` set, refuse to unpickle a stored copy not signed with that key
    (written by someone without it, or changed since): unpickling runs code."""
    import hmac

    want = pickle_signature(props.get('pipeline_pickle') or '')
    if want and not hmac.compare_digest(want, str(props.get('pipeline_pickle_hmac') or '')):
        raise PipelineError(
            f'Run {run_id}: the copy of its pipeline stored in the metadata store is not signed with the key in '
            f'${PIPELINE_KEY_ENV} (it was stored without that key, or changed since), so it is not loaded: '
            'loading it would run its code. Resume where the pipeline file and its directory exist, or pass '
            'the pipeline: runner.resume(pipeline, run_id).')


def stored_pipeline(store: MetadataStore, run_id: str, pipeline: Pipeline | None = None,
                    say: Callable[[str], None] | None = None) -> Pipeline:
    """The pipeline of a run, with the run's own settings, whatever the current directory.

    Without ``pipeline``: the pipeline file the run was loaded from, read again (so fixes made since
    are used) in the directory the run was started from (so relative paths in it mean what they
    meant then); if that file or directory is not here, the copy stored with the run. Either way,
    the pipeline root, Beam arguments and cache flag are the run's, and the store is ``store``.
    ``say`` is told what is loaded, before it is (running that code is what loading it means).
    """
    run = store.run(run_id)
    props = run.properties
    if pipeline is None:
        pipeline = _load_stored(run_id, props, say or (lambda _: None))
    if pipeline.name != run.pipeline_name:
        raise PipelineError(f"Run {run_id} belongs to pipeline '{run.pipeline_name}', not '{pipeline.name}'.")
    pipeline.metadata = store.connect_url
    if props.get('pipeline_root'):
        pipeline.pipeline_root = props['pipeline_root']
    pipeline.enable_cache = bool(props.get('enable_cache', 1))
    pipeline.no_cache = set(json.loads(props.get('no_cache_nodes') or '[]'))
    if props.get('beam_pipeline_args'):
        pipeline.beam_pipeline_args = json.loads(props['beam_pipeline_args'])
    return pipeline


def _load_stored(run_id: str, props: dict[str, Any], say: Callable[[str], None]) -> Pipeline:
    path, cwd = props.get('pipeline_file') or '', props.get('cwd') or ''
    args = json.loads(props.get('pipeline_args') or '{}')
    if path and os.path.isfile(path) and cwd and os.path.isdir(cwd):
        say(f'Loading the pipeline of run {run_id} from {path}, in {cwd} (as recorded with the run)')
        here = os.getcwd()
        os.chdir(cwd)
        try:
            return load_pipeline(path, **args)
        finally:
            os.chdir(here)
    if props.get('pipeline_pickle'):
        import cloudpickle
        check_signature(run_id, props)
        signed = 'signed with $SLUICE_PIPELINE_KEY' if props.get('pipeline_pickle_hmac') else 'not signed'
        say(f'Loading the copy of the pipeline stored with run {run_id} ({signed}): its file {path or "(none)"} '
            f'or directory {cwd or "(unknown)"} is not here')
        try:
            return cloudpickle.loads(base64.b64decode(props['pipeline_pickle']))
        except Exception as e:  # e.g. a module the pipeline imported is not installed here
            raise PipelineError(
                f'Run {run_id}: its pipeline file {path or "(none)"} or the directory it was started from '
                f'({cwd or "unknown"}) is not here, and the copy stored with the run cannot be loaded here '
                f'({type(e).__name__}: {e}). Resume where those exist, or pass the pipeline: '
                'runner.resume(pipeline, run_id).') from None
    if path and os.path.isfile(path) and not cwd:  # a run recorded before Sluice stored its directory
        say(f'Loading the pipeline of run {run_id} from {path} (as recorded with the run)')
        return load_pipeline(path, **args)
    where = f' (its pipeline file {path} is not here)' if path else ''
    raise PipelineError(f'Run {run_id} stored no usable pipeline definition{where}; pass the pipeline: '
                        'runner.resume(pipeline, run_id).')


def abandoned_reason(store: MetadataStore, record: ExecutionRecord, now: float | None = None) -> str | None:
    """Why a RUNNING execution is stale (the process that drove its run is gone, silent, or lost the
    run to another process), or None if it may still be live work."""
    lease = record.properties.get('lease')
    if lease:
        holder = store.lease_record(lease)
        who = f"pid {record.properties.get('pid')} on {record.properties.get('host')}"
        if holder is None:
            return f'its lease {lease} is not in the store ({who})'
        gone = holder_gone(holder, now)
        if gone:
            return gone
        if store.lease_superseded(lease):
            return f'its run was taken over from its process ({who})'
        return None
    return _legacy_abandoned_reason(record, now)


def _legacy_abandoned_reason(record: ExecutionRecord, now: float | None = None) -> str | None:
    """For executions recorded before leases: the process is gone, or its heartbeat stopped."""
    now = time.time() if now is None else now
    props = record.properties
    pid, host = props.get('pid'), props.get('host')
    gone = process_gone(props)
    if gone:
        return gone
    beat = props.get('heartbeat')
    if isinstance(beat, (int, float)) and now - beat > lease_seconds():
        return f'no heartbeat for {now - beat:.0f}s (process {pid} on {host})'
    return None


def mark_abandoned(store: MetadataStore, pipeline: Pipeline, record: ExecutionRecord, reason: str) -> bool:
    """FAILED (abandoned) in the store, its unpublished outputs and scratch space removed. False if
    its process ended it first (it finished or failed meanwhile): then nothing is touched."""
    try:
        store.fail_execution(record.id, 'Abandoned', f'abandoned: {reason}')
    except FencingError:
        return False
    node = pipeline.node(record.node_id)
    for key in type(node).OUTPUTS:
        storage.remove_tree(storage.join(pipeline.pipeline_root, node.id, key, str(record.id)))
    shutil.rmtree(execution_tmp_dir(pipeline.pipeline_root, node.id, record.id), ignore_errors=True)
    return True


def settle_stale(store: MetadataStore, pipeline: Pipeline, run_id: str, record: ExecutionRecord,
                 lease: str | None, then: str = 'resume') -> ExecutionRecord:
    """A node's latest execution, with a stale RUNNING one (not ``lease``'s) marked abandoned
    (state ABANDONED in the returned record); raises while it may still be live work."""
    if record.state != 'RUNNING' or record.properties.get('lease') == lease:
        return record
    reason = abandoned_reason(store, record)
    if reason is None:
        raise MetadataStoreError(
            f'Run {run_id}: {record.node_id} is still running (execution #{record.id}, process '
            f"{record.properties.get('pid')} on {record.properties.get('host')}); wait for it to finish "
            f'or stop that process, then {then}.')
    if not mark_abandoned(store, pipeline, record, reason):
        return store.execution(record.id)  # its process ended it meanwhile
    record.state = 'ABANDONED'
    record.properties['error_message'] = f'abandoned: {reason}'
    return record


def plan(pipeline: Pipeline, store: MetadataStore, run_id: str, lease: str | None = None) -> list[Step]:
    """Decide, node by node, what resuming ``run_id`` reuses and what it runs (and why). Stale
    RUNNING executions are marked FAILED (abandoned) on the way. ``lease`` is the caller's own lease
    on the run (its executions are never stale)."""
    latest = latest_per_node(store.executions(run_id))
    for node_id, record in list(latest.items()):
        latest[node_id] = settle_stale(store, pipeline, run_id, record, lease)

    info = PipelineInfo(pipeline.name, pipeline.pipeline_root, run_id, tuple(pipeline.beam_pipeline_args))
    steps: dict[str, Step] = {}
    for component in pipeline.components:
        record = latest.get(component.id)
        rerun_up = [u.id for u in component.upstream if steps[u.id].action != 'reuse']
        if record is None:
            steps[component.id] = Step(component.id, 'run', 'never started')
        elif record.state == 'ABANDONED':
            steps[component.id] = Step(component.id, 'run', record.error, record)
        elif record.state not in DONE_STATES:
            steps[component.id] = Step(component.id, 'run', f'{record.state}: {record.error or record.state}', record)
        elif record.properties.get('reused_from_run') and all(
                a.exists() for group in record.outputs.values() for a in group):  # taken from another run
            steps[component.id] = Step(component.id, 'reuse', f"reused from run {record.properties['reused_from_run']} "
                                       '(a partial run)', record)
        elif rerun_up:
            steps[component.id] = Step(component.id, 'run', f'upstream {", ".join(rerun_up)} runs again', record)
        elif record.properties.get('skipped'):  # its condition was decided on what the run keeps
            steps[component.id] = Step(component.id, 'reuse', f"skipped in this run: {record.properties['skipped']}",
                                       record)
        else:
            steps[component.id] = _check_reuse(component, store, info, record)
    return [steps[c.id] for c in pipeline.components]


def _check_reuse(component: Any, store: MetadataStore, info: PipelineInfo, record: ExecutionRecord) -> Step:
    outputs = [a for group in record.outputs.values() for a in group]
    missing = [a for a in outputs if not a.exists()]
    if missing:
        return Step(component.id, 'run', f'its output files are gone ({missing[0].uri})', record)
    driver = type(component).driver(component, store, info)
    try:
        parts = driver.cache_key_parts(driver.resolve_inputs())
    except Exception as e:  # inputs cannot be resolved, or its code changed after loading: run and report there
        return Step(component.id, 'run', f'its key cannot be computed ({e})', record)
    changes = key_changes(store, info.name, record, parts)
    if changes:
        return Step(component.id, 'run', f'changed since: {"; ".join(changes)}', record)
    return Step(component.id, 'reuse', f'{record.state} in this run (execution #{record.id})', record)


def key_changes(store: MetadataStore, pipeline_name: str, record: ExecutionRecord, parts: dict[str, Any]) -> list[str]:
    """What differs, in words, between the cache key ``record`` was made with and ``parts`` (its key
    computed now); empty when the keys are the same."""
    if fp.key_of(parts) == record.cache_key:
        return []
    before = recorded_parts(record)
    changes = Explainer(store, pipeline_name).differences(before, parts, record) if before else []
    return changes or ['its code, parameters or inputs (the cache key differs)']


def format_plan(run_id: str, pipeline: Pipeline, steps: list[Step]) -> str:
    width = max(len(s.node_id) for s in steps)
    lines = [f"Resume plan for run {run_id} of pipeline '{pipeline.name}':"]
    lines += [f'  {s.node_id:<{width}}  {s.action:<5}  {s.reason}' for s in steps]
    return '\n'.join(lines)
