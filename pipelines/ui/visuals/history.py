"""The history a person watches, across runs: how long each node took in every run of a pipeline,
the metric of each model pushed to its destination over time (``models.history_plot``), and the drift
of each feature of the served data at each ``sluice drift`` check (its ``drift-history.jsonl``)."""
from __future__ import annotations

import datetime
import os
from typing import Any

from sluice.components.production.destination import read_jsonl
from sluice.components.served_drift import DRIFT_HISTORY, REQUEST_LOG_DIR
from sluice.ui.visuals.models import history_plot
from sluice.ui.visuals.page import LEGEND, RED, View, esc, figure_html, table


def _time(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S')


def durations_plot(runs: list[Any]) -> tuple[str, list[list[str]]]:
    """Each node's executed time in every run (cached and reused nodes left out: they did no work),
    one line per node over the runs' start times; and the same as table rows."""
    import plotly.graph_objects as go

    series: dict[str, list[tuple[str, float, str, str]]] = {}
    for run in sorted(runs, key=lambda r: r.create_time):
        for node_id, ex in run.latest().items():
            if ex.state in ('COMPLETE', 'FAILED'):
                series.setdefault(node_id, []).append((_time(run.create_time), ex.update_time - ex.create_time,
                                                       run.run_id, ex.state))
    fig = go.Figure()
    for node_id, points in series.items():
        fig.add_trace(go.Scatter(
            x=[p[0] for p in points], y=[p[1] for p in points], mode='lines+markers', name=node_id,
            legendgroup=node_id, text=[f'run {p[2]}: {p[3]}' for p in points],
            hovertemplate='%{text}<br>%{y:.1f}s<extra>' + node_id + '</extra>'))
        failed = [p for p in points if p[3] == 'FAILED']
        if failed:  # failed executions marked with a red cross on the node's line
            fig.add_trace(go.Scatter(x=[p[0] for p in failed], y=[p[1] for p in failed], mode='markers',
                                     legendgroup=node_id, showlegend=False, hoverinfo='skip',
                                     marker={'color': RED, 'symbol': 'x', 'size': 10}))
    fig.update_yaxes(title_text='seconds (executed, not cached)', rangemode='tozero')
    fig.update_layout(legend=LEGEND, meta={'sluice': 'durations', 'runs': len(runs), 'nodes': sorted(series)})
    rows = [[node_id, str(len(points)), f'{min(p[1] for p in points):.1f}s', f'{max(p[1] for p in points):.1f}s',
             f'{points[-1][1]:.1f}s'] for node_id, points in sorted(series.items())]
    return '<h4>Node durations across runs</h4>' + figure_html(fig, 420, top=60), rows


def read_drift_history(log_dir: str) -> list[dict]:
    return read_jsonl(os.path.join(log_dir, DRIFT_HISTORY))


def drift_plot(entries: list[dict]) -> str:
    """Each feature's skew at every judged drift check, with its threshold dashed."""
    import plotly.graph_objects as go

    judged = [e for e in entries if e.get('judged')]
    if not judged:
        return ''
    features = sorted({s['feature'] for e in judged for s in e.get('skews', [])})
    fig = go.Figure()
    for feature in features:
        points = [(e['time'], s['value'], s['threshold'], e['version']) for e in judged for s in e.get('skews', [])
                  if s['feature'] == feature]
        fig.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], mode='lines+markers',
                                 name=feature, legendgroup=feature, text=[f'version {p[3]}' for p in points],
                                 hovertemplate='%{text}: %{y:.4f}<extra>' + feature + '</extra>'))
        fig.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[2] for p in points], mode='lines',
                                 line={'dash': 'dash', 'width': 1}, legendgroup=feature, showlegend=False,
                                 hoverinfo='skip'))
    fig.update_yaxes(title_text='skew from training (TFDV)', rangemode='tozero')
    fig.update_layout(legend=LEGEND, meta={'sluice': 'drift', 'checks': len(judged), 'features': features})
    return '<h4>Drift of the served data</h4>' + figure_html(fig, 420, top=60)


def history_view(store: Any, pipeline: str, destination: str | None = None, log_dir: str | None = None,
                 models: bool = True) -> View:
    """A pipeline's history: node durations across its runs, and for a push destination, the models
    pushed there over time (``models=False``: not, e.g. where the pushed model's view shows them)
    and the drift of the data they were served."""
    runs = store.runs(pipeline)
    body, rows = durations_plot(runs) if runs else ('', [])
    t_html, t_text = table(['node', 'runs executed', 'fastest', 'slowest', 'latest'], rows)
    body += t_html
    text = f'History of pipeline {pipeline!r}: {len(runs)} runs\n{t_text}'
    if destination:
        body += history_plot(destination) if models else ''
        entries = read_drift_history(log_dir or os.path.join(destination, REQUEST_LOG_DIR))
        body += drift_plot(entries)
        judged = [e for e in entries if e.get('judged')]
        if judged:
            last = judged[-1]
            text += (f"\nDrift checks: {len(judged)}; the latest ({last['time']}, version {last['version']}): "
                     f"{', '.join(last.get('drifted') or []) or 'no feature'} drifted")
    return View(f'<h3>{esc(text.splitlines()[0])}</h3>' + body, text)
