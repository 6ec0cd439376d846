"""A run report: one self-contained HTML page with the DAG, node states and durations, a timeline of
the run, the views of its statistics, schema, anomalies, evaluation, blessing and push, and the
pipeline's history (node durations across runs, models pushed, drift of the served data), with plots
(Plotly, its JavaScript inline once in the page: nothing is loaded from the network).

    sluice report RUN_ID -o report.html
"""
from __future__ import annotations

import datetime
import html
import re

from sluice.metadata.artifact import Artifact
from sluice.metadata.records import latest_per_node
from sluice.metadata.store import MetadataStore
from sluice.ui.visuals import CSS, history_view, plotly_script, render, run_view

SECTIONS = ('Examples', 'ExampleStatistics', 'Schema', 'ExampleAnomalies', 'Model', 'ModelEvaluation',
            'ModelBlessing', 'PushedModel')
PAGE_CSS = '<style>body.sluice{max-width:1280px;margin:16px auto;padding:0 16px}</style>'


def _failed_validation(executions: list) -> dict[str, str]:
    """Features named by the error of a failed ExampleValidator (it leaves no ExampleAnomalies
    artifact), feature -> the anomaly in its words."""
    found: dict[str, str] = {}
    for record in executions:
        if record.state == 'FAILED' and record.component_type == 'ExampleValidator' and record.error:
            for split, feature, what in re.findall(r"split '([^']+)': feature '([^']+)': ([^\n(]+)", record.error):
                found.setdefault(feature, f'{split}: {what.strip()}')
    return found


def report_html(store: MetadataStore, run_id: str) -> str:
    run = store.run(run_id)
    executions = store.executions(run_id)
    latest = latest_per_node(executions)
    outputs: list[tuple[str, Artifact]] = []
    for node_id in run.node_ids or list(latest):
        record = latest.get(node_id)
        if record is None or record.state not in ('COMPLETE', 'CACHED'):
            continue
        for artifacts in record.outputs.values():
            outputs.extend((node_id, a) for a in artifacts if a.exists())
    related = [a for _, a in outputs]
    flagged = _failed_validation(executions)
    views = [run_view(run, executions)]
    headings = ['']
    for kind in SECTIONS:
        for node_id, artifact in outputs:
            if artifact.type_name() == kind:
                views.append(render(artifact, related=related, flagged=flagged))
                headings.append(f'<h2>{html.escape(node_id)}</h2>')
    destinations = sorted({a.get('push_destination') for _, a in outputs
                           if a.type_name() == 'PushedModel' and a.get('push_destination')})
    views.append(history_view(store, run.pipeline_name, destinations[0] if destinations else None,
                              models=False))  # the pushed model's view above shows the models pushed
    headings.append('<h2>History</h2>')
    script = plotly_script() if any(v.has_plots for v in views) else ''
    now = datetime.datetime.now().strftime('%Y-%m-%d %H:%M')
    title = f'Sluice run {run_id} ({run.pipeline_name})'
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>{CSS}{PAGE_CSS}'
            f'{script}</head><body class="sluice"><h1>{html.escape(title)}</h1><p>Store {html.escape(store.url)}; '
            f'written {now}.</p>' + ''.join(h + v.page_html() for h, v in zip(headings, views)) + '</body></html>')


def write_report(store: MetadataStore, run_id: str, path: str) -> str:
    with open(path, 'w', encoding='utf-8') as f:
        f.write(report_html(store, run_id))
    return path
