"""Views of models and the gate: the model (its ONNX inputs and the export check), the evaluation
(metrics per slice, candidate beside baseline, the ModelValidator's bounds and failing checks), the
blessing (every check and why) and the pushed model with the history of its destination.
"""
from __future__ import annotations

import datetime
import html
import json
import os
from typing import Sequence

from sluice.metadata import storage
from sluice.components.production.destination import push_destination, pushed_directory
from sluice.metadata.artifact import Artifact
from sluice.ui.visuals.page import GREY, LEGEND, RED, View, artifact_heading, esc, figure_html, table


def blessing_of(evaluation: Artifact, related: Sequence[Artifact]) -> Artifact | None:
    """The ModelBlessing among ``related`` that judged the same candidate model as this evaluation."""
    try:
        with open(os.path.join(storage.local_copy(evaluation.uri), 'metrics.json')) as f:
            candidate = json.load(f).get('candidate_model_id')
    except (OSError, ValueError):
        return None
    for artifact in related:
        if artifact.type_name() == 'ModelBlessing' and artifact.get('current_model_id') == candidate:
            return artifact
    return None


def evaluation_view(artifact: Artifact, blessing: Artifact | None = None) -> View:
    """Metrics per slice, candidate vs baseline; with the ModelBlessing of the same candidate, its
    bounds drawn and its failing checks marked."""
    head_html, head_text = artifact_heading(artifact)
    with open(os.path.join(storage.local_copy(artifact.uri), 'metrics.json')) as f:
        summary = json.load(f)
    rows = []
    for slice_name, models in summary['slices'].items():
        for metric, value in sorted(models.get('candidate', {}).items()):
            base = models.get('baseline', {}).get(metric)
            rows.append([slice_name, metric, value, base, None if base is None or value is None else value - base])
    note = f'candidate model #{summary["candidate_model_id"]} vs ' + _baseline_words(
        summary.get('baseline_version'), summary.get('push_destination'), 'no baseline (nothing in production)')
    t_html, t_text = table(['slice', 'metric', 'candidate', 'baseline', 'difference'], rows, numeric=(2, 3, 4))
    checks = _checks(blessing)
    plot = evaluation_plot(summary, checks) if rows else ''
    return View(head_html + f'<p>{esc(note)}</p>' + plot + t_html, f'{head_text}\n{note}\n{t_text}')


def _checks(blessing: Artifact | None) -> list[dict]:
    if blessing is None:
        return []
    path = os.path.join(storage.local_copy(blessing.uri), 'reasons.json')
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return list(json.load(f).get('checks') or [])


def evaluation_plot(summary: dict, checks: list[dict]) -> str:
    """One plot per metric: a bar per slice for the candidate, beside the baseline's; the validator's
    lower and upper bounds as dashed lines; bars of failing checks in red, marked FAIL."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    slices = list(summary['slices'])
    metrics = sorted({m for models in summary['slices'].values() for m in models.get('candidate', {})})
    failing = {(c.get('metric'), c.get('slice')) for c in checks if not c.get('passed')}
    bounds: dict[str, dict[str, float]] = {}
    for check in checks:
        for side in ('lower_bound', 'upper_bound'):
            value = (check.get('threshold') or {}).get(side)
            if isinstance(value, (int, float)):
                bounds.setdefault(check['metric'], {})[side] = value
    cols = min(2, len(metrics))
    nrows = (len(metrics) + cols - 1) // cols
    titles = [f'<b>{html.escape(m)}</b>' + (' <span style="color:#c62828">FAIL</span>'
                                            if any(k[0] == m for k in failing) else '') for m in metrics]
    fig = make_subplots(rows=nrows, cols=cols, subplot_titles=titles, vertical_spacing=min(0.3, 0.9 / nrows),
                        horizontal_spacing=0.08)
    has_baseline = any(models.get('baseline') for models in summary['slices'].values())
    labels = [s if len(s) <= 22 else s[:21] + '…' for s in slices]
    for index, metric in enumerate(metrics):
        row, col = index // cols + 1, index % cols + 1
        cand = [summary['slices'][s].get('candidate', {}).get(metric) for s in slices]
        fail = [(metric, s) in failing for s in slices]
        fig.add_trace(go.Bar(x=labels, y=cand, name='candidate', legendgroup='candidate', showlegend=index == 0,
                             marker={'color': ['#c62828' if f else '#1565c0' for f in fail],
                                     'line': {'color': ['#000' if f else '#1565c0' for f in fail],
                                              'width': [2 if f else 0 for f in fail]}},
                             text=['FAIL' if f else '' for f in fail], textposition='outside',
                             hovertemplate='%{x}: %{y:.4g}<extra>candidate</extra>'), row=row, col=col)
        if has_baseline:
            fig.add_trace(go.Bar(x=labels, y=[summary['slices'][s].get('baseline', {}).get(metric) for s in slices],
                                 name='baseline (production)', legendgroup='baseline', showlegend=index == 0,
                                 marker={'color': GREY}, hovertemplate='%{x}: %{y:.4g}<extra>baseline</extra>'),
                          row=row, col=col)
        for side, value in bounds.get(metric, {}).items():
            if value in (float('inf'), float('-inf')):
                continue
            fig.add_hline(y=value, line={'color': RED, 'dash': 'dash', 'width': 1.5}, layer='above', row=row, col=col,
                          annotation_text=f"{side.replace('_', ' ')} {value:g}", annotation_position='top left',
                          annotation_font_color=RED, annotation_bgcolor='rgba(255,255,255,0.85)')
    fig.update_layout(barmode='group', legend=LEGEND,
                      meta={'sluice': 'evaluation', 'metrics': metrics, 'failing': sorted(map(list, failing)),
                            'bounds': bounds})
    return figure_html(fig, 120 + 300 * nrows)


def _baseline_words(version: str | None, destination: str | None, none: str) -> str:
    """What a model was measured against: the production version at its destination."""
    if not version:
        return none
    return f'production version {version}' + (f' at {destination}' if destination else '')


def blessing_view(artifact: Artifact) -> View:
    head_html, head_text = artifact_heading(artifact)
    path = os.path.join(storage.local_copy(artifact.uri), 'reasons.json')
    reasons = {}
    if os.path.isfile(path):
        with open(path) as f:
            reasons = json.load(f)
    blessed = bool(artifact.get('blessed'))
    verdict = 'BLESSED' if blessed else 'NOT_BLESSED'
    against = _baseline_words(artifact.get('baseline_version'), artifact.get('push_destination'), 'no baseline')
    rows = [['pass' if c['passed'] else 'FAIL', c['metric'], c['slice'], c['candidate'], c['baseline'], c['reason']]
            for c in reasons.get('checks', [])]
    t_html, t_text = table(['', 'metric', 'slice', 'candidate', 'baseline', 'why'], rows, numeric=(3, 4))
    policy = reasons.get('policy') or ''
    cls = 'ok' if blessed else 'bad'
    body = (head_html + f'<p><span class="{cls}">{verdict}</span> model #{esc(artifact.get("current_model_id"))} '
            f'against {esc(against)}</p>' + t_html + (f'<p class="bad">{esc(policy)}</p>' if policy else ''))
    text = f'{head_text}\n{verdict} model #{artifact.get("current_model_id")} against {against}\n{t_text}' + \
        (f'\n{policy}' if policy else '')
    return View(body, text)


def pushed_view(artifact: Artifact) -> View:
    head_html, head_text = artifact_heading(artifact)
    destination = push_destination(artifact)
    try:
        history = history_plot(destination) if destination and os.path.isdir(destination) else ''
    except Exception as e:  # noqa: BLE001 - a push view without its history rather than no view
        history = f'<p class="bad">The history of {esc(destination)} could not be drawn: {esc(e)}</p>'
    if artifact.get('pushed'):
        line = f'Pushed as version {artifact.get("pushed_version")} to {pushed_directory(artifact)}'
        return View(head_html + f'<p class="ok">{esc(line)}</p>' + history, f'{head_text}\n{line}')
    line = f'Not pushed: {artifact.get("reason") or "unknown reason"}'
    return View(head_html + f'<p class="bad">{esc(line)}</p>' + history, f'{head_text}\n{line}')


HISTORY_SYMBOLS = {'push': ('circle', '#1565c0'), 'rollback': ('x', RED), 'promote': ('star', '#ef6c00'),
                   'hand-pushed': ('diamond', GREY), 'copied': ('diamond', GREY)}


def history_plot(destination: str) -> str:
    """The overall metrics of every model pushed to a destination, over time (one plot per metric):
    pushes as dots, promotions as stars, rollbacks as crosses with a dashed line, the current version
    ringed. A rollback shows the metrics of the version it went back to."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from sluice.components.production.destination import history, production

    entries = history(destination)
    if not entries:
        return ''
    current = production(destination).current
    by_version = {int(e['version']): e for e in entries}

    def metrics_of(entry: dict, depth: int = 0) -> dict:
        found = ((entry.get('metrics') or {}).get('candidate')) or {}
        target = entry.get('target') or entry.get('copy_of') or {}
        if not found and depth < 5 and str(target.get('version', '')).isdigit() and \
                int(target['version']) in by_version:
            return metrics_of(by_version[int(target['version'])], depth + 1)
        return found

    values = {int(e['version']): metrics_of(e) for e in entries}
    checked = {c.get('metric') for e in entries for c in ((e.get('blessing') or {}).get('checks') or [])}
    everything = sorted({m for v in values.values() for m in v})
    metrics = [m for m in everything if m in checked] or everything[:4]  # the gate's metrics, if it had any
    heading = f'<h4>Models pushed to {esc(destination)}</h4>'
    if not metrics:
        return heading + '<p>No metrics recorded with these versions.</p>'
    cols = min(2, len(metrics))
    nrows = (len(metrics) + cols - 1) // cols
    fig = make_subplots(rows=nrows, cols=cols, subplot_titles=[f'<b>{html.escape(m)}</b> (overall)' for m in metrics],
                        vertical_spacing=min(0.25, 0.8 / nrows), horizontal_spacing=0.08)
    for index, metric in enumerate(metrics):
        row, col = index // cols + 1, index % cols + 1
        points = [(e.get('time'), values[int(e['version'])].get(metric), e) for e in entries if e.get('time')]
        fig.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], mode='lines',
                                 line={'color': '#bbb', 'shape': 'hv'}, showlegend=False, hoverinfo='skip'),
                      row=row, col=col)
        for kind, (symbol, color) in HISTORY_SYMBOLS.items():
            mine = [p for p in points if (p[2].get('kind') or 'push') == kind]
            if not mine:
                continue
            fig.add_trace(go.Scatter(
                x=[p[0] for p in mine], y=[p[1] for p in mine], mode='markers', name=kind, legendgroup=kind,
                showlegend=index == 0, marker={'symbol': symbol, 'color': color, 'size': 11,
                                               'line': {'width': 1, 'color': '#333'}},
                text=[_history_words(p[2]) for p in mine], hovertemplate='%{text}<br>' + metric + ' %{y:.4g}'
                                                                           '<extra></extra>'), row=row, col=col)
        if current is not None and current.number in values:
            entry = by_version[current.number]
            fig.add_trace(go.Scatter(x=[entry.get('time')], y=[values[current.number].get(metric)], mode='markers',
                                     name='in production now', legendgroup='current', showlegend=index == 0,
                                     marker={'symbol': 'circle-open', 'size': 20, 'color': '#2e7d32',
                                             'line': {'width': 3}}, hoverinfo='skip'), row=row, col=col)
        for entry in entries:
            if entry.get('kind') in ('rollback', 'promote') and entry.get('time'):
                fig.add_vline(x=entry['time'], line={'color': HISTORY_SYMBOLS[entry['kind']][1], 'dash': 'dot',
                                                     'width': 1}, row=row, col=col)
    times = sorted(t for t in (_when(e.get('time')) for e in entries) if t is not None)
    if times:  # a margin on both sides, also around a single push
        pad = max((times[-1] - times[0]) * 0.08, datetime.timedelta(seconds=30))
        fig.update_xaxes(range=[(times[0] - pad).isoformat(), (times[-1] + pad).isoformat()])
    fig.update_layout(legend=LEGEND,
                      meta={'sluice': 'history', 'destination': destination, 'metrics': metrics,
                            'versions': sorted(values), 'kinds': [e.get('kind') or 'push' for e in entries]})
    return heading + figure_html(fig, 120 + 280 * nrows)


def _when(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(str(text).replace('Z', '+00:00')).replace(tzinfo=None)
    except ValueError:
        return None


def _history_words(entry: dict) -> str:
    kind = entry.get('kind') or 'push'
    words = f"version {entry.get('version')}: {kind}"
    if kind == 'rollback':
        words += f" to version {(entry.get('target') or {}).get('version')}"
    model = entry.get('model') or {}
    if model.get('artifact_id'):
        words += f" of model #{model['artifact_id']} (run {model.get('run_id') or '?'})"
    if entry.get('reason'):
        words += f"<br>reason: {html.escape(str(entry['reason'])[:80])}"
    return words


def model_view(artifact: Artifact) -> View:
    head_html, head_text = artifact_heading(artifact)
    diff = artifact.get('onnx_max_abs_diff')
    inputs = json.loads(artifact.get('onnx_inputs') or '[]')
    rows = [[i['name'], i['dtype'], str(i['shape']), 'required' if i['missing'] is None else repr(i['missing'])]
            for i in inputs]
    t_html, t_text = table(['ONNX input', 'type', 'shape', 'missing value'], rows)
    if diff is not None:
        line = f'ONNX vs SavedModel max abs difference: {diff:.3g}'
    elif artifact.get('onnx_skipped'):
        line = f"No ONNX copy: {artifact.get('onnx_skipped')}"
    elif artifact.type_name() == 'OnnxModel':
        line = 'No ONNX export.'
    else:
        line = 'A SavedModel (Format-Serving/); its ONNX copy, if the Trainer made one, is an OnnxModel of its own.'
    return View(head_html + f'<p>{esc(line)}</p>' + (t_html if rows else ''), f'{head_text}\n{line}\n{t_text}')
