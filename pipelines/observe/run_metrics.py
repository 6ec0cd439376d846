"""A run's figures in Prometheus' format, read from what the run recorded in ML-Metadata.

Every figure is a gauge computed from the store (the latest execution of each node, its outputs), so
writing them again after a resume or after each ``run-node`` task replaces the run's figures: nothing
is counted twice. Labels are the pipeline and, where it applies, the node, the split, the metric;
the run id is on ``sluice_run_info`` only, so a Pushgateway group keeps one series per name.
"""
from __future__ import annotations

import json
import os
from typing import Any

from prometheus_client import CollectorRegistry, Gauge

from sluice.metadata import storage
from sluice.metadata.records import ExecutionRecord, latest_per_node
from sluice.metadata.store import MetadataStore

NODE_STATES = ('COMPLETE', 'CACHED', 'FAILED', 'RUNNING', 'CANCELED', 'SKIPPED')


class _Gauges:
    """Gauges registered on first use, each with its label names."""

    def __init__(self, registry: CollectorRegistry):
        self.registry, self.gauges = registry, {}

    def set(self, name: str, doc: str, value: float, **labels: Any) -> None:
        gauge = self.gauges.get(name)
        if gauge is None:
            gauge = self.gauges[name] = Gauge(name, doc, sorted(labels), registry=self.registry)
        gauge.labels(**{k: str(v) for k, v in labels.items()}).set(value)


def run_registry(store: MetadataStore, run_id: str) -> tuple[CollectorRegistry, bool]:
    """The run's figures, and whether the run succeeded (COMPLETE)."""
    run = store.run(run_id)
    pipeline = run.pipeline_name
    g = _Gauges(CollectorRegistry())
    latest = latest_per_node(store.executions(run_id))  # with their outputs
    state = run.state
    ends = [ex.update_time for ex in run.executions] or [run.create_time]
    g.set('sluice_run_info', 'The run these figures are from, and its state (always 1).', 1, pipeline=pipeline,
          run_id=run_id, state=state)
    g.set('sluice_run_success', 'Whether the run is COMPLETE (1) or not (0).', int(state == 'COMPLETE'),
          pipeline=pipeline)
    g.set('sluice_run_start_timestamp_seconds', 'When the run started (Unix time).', run.create_time,
          pipeline=pipeline)
    g.set('sluice_run_duration_seconds', 'From the start of the run to its last recorded change.',
          max(ends) - run.create_time, pipeline=pipeline)
    for node_state in NODE_STATES:
        g.set('sluice_run_nodes', "The run's nodes by state.", sum(1 for ex in latest.values()
                                                                   if ex.state == node_state),
              pipeline=pipeline, state=node_state)
    for node_id, ex in sorted(latest.items()):
        _node(g, pipeline, node_id, ex, [e for e in run.executions if e.node_id == node_id])
    last = last_success(store, pipeline)
    if last is not None:
        g.set('sluice_last_success_timestamp_seconds', 'When a run of the pipeline last succeeded (Unix time).',
              last, pipeline=pipeline)
    return g.registry, state == 'COMPLETE'


def _node(g: _Gauges, pipeline: str, node_id: str, ex: ExecutionRecord, attempts: list[ExecutionRecord]) -> None:
    g.set('sluice_node_duration_seconds', "The node's latest execution, start to end.",
          max(0.0, ex.update_time - ex.create_time), pipeline=pipeline, node=node_id)
    for node_state in NODE_STATES:
        g.set('sluice_node_state', "The state of the node's latest execution (1 for its state).",
              int(ex.state == node_state), pipeline=pipeline, node=node_id, state=node_state)
    g.set('sluice_node_attempts', 'Executions of the node in the run (retries and resumes included).',
          len(attempts), pipeline=pipeline, node=node_id)
    g.set('sluice_node_cache_hit', 'Whether the node was taken from the cache (1) or executed (0).',
          int(ex.state == 'CACHED'), pipeline=pipeline, node=node_id)
    for artifacts in ex.outputs.values():
        for artifact in artifacts:
            _artifact(g, pipeline, node_id, artifact)


def _artifact(g: _Gauges, pipeline: str, node_id: str, artifact: Any) -> None:
    kind = artifact.type_name()
    if kind == 'Examples':
        counts = artifact.get('row_counts')
        for split, rows in (json.loads(counts) if isinstance(counts, str) and counts else {}).items():
            g.set('sluice_examples_rows', 'Examples written per split.', rows, pipeline=pipeline, node=node_id,
                  split=split)
            g.set('sluice_examples_bytes', "Bytes of a split's files.", _bytes(artifact.split_uri(split)),
                  pipeline=pipeline, node=node_id, split=split)
    elif kind == 'ModelBlessing':
        g.set('sluice_model_blessed', 'Whether the candidate was BLESSED (1) or not (0).',
              int(bool(artifact.get('blessed'))), pipeline=pipeline)
        for model, metrics in _overall_metrics(artifact).items():
            for name, value in metrics.items():
                if isinstance(value, (int, float)):
                    g.set('sluice_model_metric', 'Overall evaluation metrics of the candidate and the baseline.',
                          value, pipeline=pipeline, model=model, metric=name)
    elif kind == 'ExampleAnomalies' and os.path.isfile(os.path.join(storage.local_copy(artifact.uri), 'drift.json')):
        _drift(g, pipeline, artifact)  # a ServedDrift node: its figures as sluice drift publishes them
    elif kind == 'InfraBlessing':
        g.set('sluice_model_infra_blessed', 'Whether the candidate loaded and answered in sluice serve (1).',
              int(bool(artifact.get('blessed'))), pipeline=pipeline)
    elif kind == 'PushedModel':
        pushed = bool(artifact.get('pushed'))
        g.set('sluice_model_pushed', 'Whether the run pushed its model (1) or not (0).', int(pushed),
              pipeline=pipeline)
        version = str(artifact.get('pushed_version') or '')
        if pushed and version.isdigit():
            g.set('sluice_model_pushed_version', 'The version the run pushed.', int(version), pipeline=pipeline)


def _drift(g: _Gauges, pipeline: str, artifact: Any) -> None:
    with open(os.path.join(storage.local_copy(artifact.uri), 'drift.json')) as f:
        report = json.load(f)
    labels = {'pipeline': pipeline, 'version': str(report.get('version'))}
    g.set('sluice_drift_served_rows', 'Served rows in the request logs compared with the training data.',
          report.get('served_rows', 0), **labels)
    g.set('sluice_drift_judged', 'Whether there were enough served rows to judge drift (1) or not (0).',
          int(bool(report.get('judged'))), **labels)
    if report.get('judged'):
        g.set('sluice_drift_anomalies', 'Anomalies of the served rows against the schema.',
              len(report.get('anomalies') or []), **labels)
        for s in report.get('skews') or []:
            g.set('sluice_drift_skew', "A feature's skew from training (TFDV's comparator).", s['value'], **labels,
                  feature=s['feature'], measure=s['measure'])
            g.set('sluice_drift_threshold', "The threshold of a feature's skew.", s['threshold'], **labels,
                  feature=s['feature'], measure=s['measure'])


def _bytes(path: str) -> int:
    if storage.is_remote(path):
        return storage.size(path)
    total = 0
    for dirpath, _, names in os.walk(path):
        total += sum(os.path.getsize(os.path.join(dirpath, n)) for n in names)
    return total


def _overall_metrics(blessing: Any) -> dict[str, dict]:
    path = os.path.join(storage.local_copy(blessing.uri), 'reasons.json')
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f).get('overall_metrics') or {}


def last_success(store: MetadataStore, pipeline: str) -> float | None:
    """The end of the pipeline's latest COMPLETE run (the one started last; Unix time), or None."""
    for run in store.runs_newest_first(pipeline):
        if run.state == 'COMPLETE':
            return max([ex.update_time for ex in run.executions] or [run.create_time])
    return None
