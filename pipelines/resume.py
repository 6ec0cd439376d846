"""Resuming a run: what to reuse, what to run again and why.

A run is resumed under its own run id. In topological order, a node is reused when its latest
execution in the run is COMPLETE or CACHED, its outputs are still on disk, its cache key is the same
as it would be now (same code, parameters and inputs), and every node upstream of it is reused too.
Every other node runs (through the normal launch, so it can still be a cache hit from another run).
A RUNNING execution whose process is gone (killed, machine rebooted) or whose heartbeat stopped is
first marked FAILED as abandoned and its partial outputs are removed, so it can never be mistaken
for live work.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import time
from dataclasses import dataclass
from typing import Any

from components.driver import PipelineInfo
from metadata.store import DONE_STATES, ExecutionRecord, MetadataStore, MetadataStoreError, process_start
from pipelines.launcher import HEARTBEAT_SECONDS
from pipelines.pipeline import Pipeline, PipelineError, load_pipeline

STALE_HEARTBEAT_SECONDS = 4 * HEARTBEAT_SECONDS


@dataclass
class Step:
    """The plan for one node: 'reuse' or 'run', and why."""
    node_id: str
    action: str
    reason: str
    execution: ExecutionRecord | None = None


def definition_properties(pipeline: Pipeline) -> dict[str, Any]:
    """What a run stores so that the run id alone is enough to resume it."""
    import cloudpickle

    props: dict[str, Any] = {
        'pipeline_file': pipeline.source_file or '',
        'pipeline_args': json.dumps(pipeline.source_args, sort_keys=True, default=str),
        'enable_cache': int(pipeline.enable_cache),
        'beam_pipeline_args': json.dumps(pipeline.beam_pipeline_args),
    }
    try:
        props['pipeline_pickle'] = base64.b64encode(cloudpickle.dumps(pipeline)).decode('ascii')
    except Exception:  # not every pipeline pickles; a pipeline file is then required to resume
        props['pipeline_pickle'] = ''
    return props


def stored_pipeline(store: MetadataStore, run_id: str) -> Pipeline:
    """The pipeline of a run, from the pipeline file it was loaded from (read again, so fixes made
    since are used) or else from the copy stored with the run."""
    run = store.run(run_id)
    props = run.properties
    path = props.get('pipeline_file') or ''
    if path and os.path.isfile(path):
        pipeline = load_pipeline(path, **json.loads(props.get('pipeline_args') or '{}'))
    elif props.get('pipeline_pickle'):
        import cloudpickle
        pipeline = cloudpickle.loads(base64.b64decode(props['pipeline_pickle']))
    else:
        where = f' (its pipeline file {path} is gone)' if path else ''
        raise PipelineError(f'Run {run_id} stored no usable pipeline definition{where}; pass the pipeline: '
                            'runner.resume(pipeline, run_id).')
    pipeline.metadata = store.url
    pipeline.enable_cache = bool(props.get('enable_cache', 1))
    if props.get('beam_pipeline_args'):
        pipeline.beam_pipeline_args = json.loads(props['beam_pipeline_args'])
    if pipeline.name != run.pipeline_name:
        raise PipelineError(f"Run {run_id} belongs to pipeline '{run.pipeline_name}', not '{pipeline.name}'.")
    return pipeline


def abandoned_reason(record: ExecutionRecord, now: float | None = None) -> str | None:
    """Why a RUNNING execution is stale (its process is gone, or its heartbeat stopped), or None."""
    now = time.time() if now is None else now
    props = record.properties
    pid, host = props.get('pid'), props.get('host')
    if host == socket.gethostname() and isinstance(pid, int):
        started = props.get('pid_start') or ''
        alive = True
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            alive = False
        except PermissionError:
            pass
        if not alive or (started and process_start(pid) != started):
            return f'its process (pid {pid} on {host}) is gone'
    beat = props.get('heartbeat')
    if isinstance(beat, (int, float)) and now - beat > STALE_HEARTBEAT_SECONDS:
        return f'no heartbeat for {now - beat:.0f}s (process {pid} on {host})'
    return None


def mark_abandoned(store: MetadataStore, pipeline: Pipeline, record: ExecutionRecord, reason: str) -> None:
    """FAILED (abandoned) in the store; its unpublished output directories removed."""
    store.fail_execution(record.id, 'Abandoned', f'abandoned: {reason}')
    node = pipeline.node(record.node_id)
    for key in type(node).OUTPUTS:
        shutil.rmtree(os.path.join(pipeline.pipeline_root, node.id, key, str(record.id)), ignore_errors=True)


def plan(pipeline: Pipeline, store: MetadataStore, run_id: str) -> list[Step]:
    """Decide, node by node, what resuming ``run_id`` reuses and what it runs (and why). Stale
    RUNNING executions are marked FAILED (abandoned) on the way."""
    records = store.executions(run_id)
    latest: dict[str, ExecutionRecord] = {}
    for record in records:
        latest[record.node_id] = record
    for record in latest.values():
        if record.state == 'RUNNING':
            reason = abandoned_reason(record)
            if reason is None:
                raise MetadataStoreError(
                    f'Run {run_id}: {record.node_id} is still running (execution #{record.id}, process '
                    f"{record.properties.get('pid')} on {record.properties.get('host')}); wait for it to finish "
                    'or stop that process, then resume.')
            mark_abandoned(store, pipeline, record, reason)
            record.state = 'ABANDONED'
            record.properties['error_message'] = f'abandoned: {reason}'

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
        elif rerun_up:
            steps[component.id] = Step(component.id, 'run', f'upstream {", ".join(rerun_up)} runs again', record)
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
        key = driver.cache_key(driver.resolve_inputs())
    except Exception as e:  # inputs cannot be resolved any more: run it and report there
        return Step(component.id, 'run', f'its inputs cannot be resolved ({e})', record)
    if key != record.cache_key:
        return Step(component.id, 'run', 'its code, parameters or inputs changed since (cache key differs)', record)
    return Step(component.id, 'reuse', f'{record.state} in this run (execution #{record.id})', record)


def format_plan(run_id: str, pipeline: Pipeline, steps: list[Step]) -> str:
    width = max(len(s.node_id) for s in steps)
    lines = [f"Resume plan for run {run_id} of pipeline '{pipeline.name}':"]
    lines += [f'  {s.node_id:<{width}}  {s.action:<5}  {s.reason}' for s in steps]
    return '\n'.join(lines)
