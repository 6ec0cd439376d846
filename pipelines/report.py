"""A run report: one self-contained HTML page (no scripts, no network) with the DAG, node states and
durations, and the views of the run's statistics, schema, anomalies, evaluation, blessing and push.

    sluice report RUN_ID -o report.html
"""
from __future__ import annotations

import datetime
import html

from metadata.store import MetadataStore
from pipelines.visuals import CSS, render, run_view

SECTIONS = ('Examples', 'ExampleStatistics', 'Schema', 'ExampleAnomalies', 'Model', 'ModelEvaluation',
            'ModelBlessing', 'PushedModel')



def report_html(store: MetadataStore, run_id: str) -> str:
    run = store.run(run_id)
    executions = store.executions(run_id)
    latest = {r.node_id: r for r in executions}  # oldest first, so the latest attempt wins
    parts = [run_view(run, executions)._repr_html_()]
    for kind in SECTIONS:
        for node_id in run.node_ids or list(latest):
            record = latest.get(node_id)
            if record is None or record.state not in ('COMPLETE', 'CACHED'):
                continue
            for artifacts in record.outputs.values():
                for artifact in artifacts:
                    if artifact.type_name() == kind and artifact.exists():
                        parts.append(f'<h2>{html.escape(node_id)}</h2>' + render(artifact)._repr_html_())
    now = datetime.datetime.now().strftime('%Y-%m-%d %H:%M')
    title = f'Sluice run {run_id} ({run.pipeline_name})'
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>{CSS}</head>'
            f'<body class="sluice"><h1>{html.escape(title)}</h1><p>Store {html.escape(store.url)}; written {now}.</p>'
            + ''.join(parts) + '</body></html>')


def write_report(store: MetadataStore, run_id: str, path: str) -> str:
    with open(path, 'w', encoding='utf-8') as f:
        f.write(report_html(store, run_id))
    return path
