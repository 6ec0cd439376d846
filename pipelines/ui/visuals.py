"""Views of artifacts and runs: HTML for Jupyter and reports, text for terminals.

    >>> view = render(artifact)          # a View
    >>> view._repr_html_(), str(view)

Views with numbers to look at carry plots, drawn with Plotly (imported only when a plot is drawn):

- statistics: per feature, a histogram (numeric) or top-values bar chart (categorical), every split
  overlaid as a share of its examples, the missing-value share in the feature's title, and features
  with anomalies or drift (``related`` ExampleAnomalies, or ``flagged``) framed in red;
- evaluation: each metric per slice, candidate beside baseline, the ModelValidator's bounds drawn and
  failing bars in red (from a ``related`` ModelBlessing of the same candidate);
- pushed model: a metric of every model pushed to its destination over time, rollbacks and promotions
  marked (the destination's own history, ``sluice.components.pusher.history``);
- run: the DAG with node states and durations, and a timeline (Gantt) of the run's executions.

Plots need Plotly's JavaScript on the page and nothing from the network: ``report.report_html`` puts it
inline once per page, and in Jupyter the first view shown in a kernel carries it inline. The only view
that loads anything from the internet is TFDV's optional facets view of statistics (``facets=True``),
as TFDV does. Nothing here imports TensorFlow: statistics, schemas and anomalies are read with
tensorflow_metadata's protocol buffers.
"""
from __future__ import annotations

import datetime
import html
import json
import os
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from sluice.metadata.artifact import Artifact
from sluice.metadata.store import LineageNode

STATE_COLORS = {'COMPLETE': '#2e7d32', 'CACHED': '#1565c0', 'FAILED': '#c62828', 'CANCELED': '#c62828',
                'RUNNING': '#ef6c00', 'SKIPPED': '#757575', 'NOT STARTED': '#9e9e9e', 'ABANDONED': '#c62828'}
CSS = ('<style>.sluice{font-family:system-ui,sans-serif;font-size:13px}.sluice table{border-collapse:collapse;'
       'margin:4px 0 12px}.sluice th,.sluice td{border:1px solid #ccc;padding:3px 8px;text-align:left}'
       '.sluice th{background:#f3f3f3}.sluice .ok{color:#2e7d32;font-weight:bold}.sluice .bad{color:#c62828;'
       'font-weight:bold}.sluice h3,.sluice h4{margin:10px 0 4px}.sluice .num{text-align:right}</style>')


@dataclass
class View:
    """Something to show: ``_repr_html_`` for Jupyter, ``str`` for terminals."""
    html: str
    text: str

    @property
    def has_plots(self) -> bool:
        return PLOT_CLASS in self.html

    def page_html(self) -> str:
        """The view for a page that carries Plotly's JavaScript itself (see ``plotly_script``)."""
        return f'<div class="sluice">{CSS}{self.html}</div>'

    def _repr_html_(self) -> str:
        global _SCRIPT_SHOWN
        script = ''
        if self.has_plots and not _SCRIPT_SHOWN:  # once per kernel: later views use window.Plotly
            script, _SCRIPT_SHOWN = plotly_script(notebook=True), True
        return f'<div class="sluice">{CSS}{script}{self.html}</div>'

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.text


PLOT_CLASS = 'plotly-graph-div'
_SCRIPT_SHOWN = False
SPLIT_COLORS = ('#1f77b4', '#ff7f0e', '#2ca02c', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#bcbd22')
RED, GREY = '#c62828', '#9e9e9e'
LEGEND = {'orientation': 'h', 'yref': 'container', 'y': 1.0, 'yanchor': 'top', 'x': 0.0, 'xanchor': 'left'}


def plotly_script(notebook: bool = False) -> str:
    """Plotly's JavaScript, inline (no network). In a notebook, an AMD loader (classic Jupyter's
    require.js) is hidden while it loads, so that it defines ``window.Plotly``."""
    from plotly.offline import get_plotlyjs

    js = get_plotlyjs()
    if notebook:
        js = ('var __sluice_define = window.define; window.define = undefined;\n' + js +
              '\nwindow.define = __sluice_define;')
    return f'<script type="text/javascript">{js}</script>'


def figure_html(fig: Any, height: int, top: int = 80) -> str:
    """A Plotly figure as a ``<div>`` and the script that draws it (Plotly's JavaScript not included)."""
    fig.update_layout(height=height, template='plotly_white', margin={'l': 50, 'r': 20, 't': top, 'b': 40},
                      font={'family': 'system-ui,sans-serif', 'size': 11})
    return fig.to_html(include_plotlyjs=False, full_html=False, default_height=f'{height}px',
                       config={'displaylogo': False, 'responsive': True})


def _e(value: Any) -> str:
    return html.escape(str(value))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f'{value:.4g}'
    return '' if value is None else str(value)


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[int] = ()) -> tuple[str, str]:
    """(HTML table, text table)."""
    rows = [[_fmt(c) for c in r] for r in rows]
    head = ''.join(f'<th>{_e(h)}</th>' for h in header)
    body = ''.join('<tr>' + ''.join(f'<td class="num">{_e(c)}</td>' if i in numeric else f'<td>{_e(c)}</td>'
                                    for i, c in enumerate(r)) + '</tr>' for r in rows)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)] if rows else [len(h) for h in header]
    text = '\n'.join('  '.join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [list(header), *rows])
    return f'<table><tr>{head}</tr>{body}</table>', text


# -- artifact views ------------------------------------------------------------------------------
def render(artifact: Artifact, facets: bool = False, related: Sequence[Artifact] = (),
           flagged: dict[str, str] | None = None) -> View:
    """The view of an artifact, chosen by its type. ``related``: other artifacts of the same run, for
    what a view can show about this one (the anomalies of statistics, the bounds and verdict of an
    evaluation); ``flagged``: more features to mark in statistics (feature -> why)."""
    kind = artifact.type_name()
    renderer = {'ExampleStatistics': lambda a: statistics_view(a, facets, anomalous_features(related, flagged)),
                'Schema': schema_view, 'ExampleAnomalies': anomalies_view,
                'ModelEvaluation': lambda a: evaluation_view(a, blessing_of(a, related)),
                'ModelBlessing': blessing_view, 'PushedModel': pushed_view, 'Examples': examples_view,
                'Model': model_view}.get(kind)
    if renderer is None:
        return View(f'<p>{_e(kind)} #{_e(artifact.id)} at <code>{_e(artifact.uri)}</code></p>',
                    f'{kind} #{artifact.id} at {artifact.uri}')
    return renderer(artifact)


def anomalous_features(related: Sequence[Artifact], flagged: dict[str, str] | None = None) -> dict[str, str]:
    """Feature -> what is wrong with it, from ExampleAnomalies artifacts (every split) and ``flagged``."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    found: dict[str, str] = {}
    for artifact in related:
        if artifact.type_name() != 'ExampleAnomalies':
            continue
        for split in _splits(artifact):
            path = os.path.join(artifact.uri, f'Split-{split}', 'SchemaDiff.pb')
            if not os.path.isfile(path):
                continue
            with open(path, 'rb') as f:
                anomalies = anomalies_pb2.Anomalies.FromString(f.read())
            for feature, info in anomalies.anomaly_info.items():
                what = info.short_description or 'anomaly'
                drift = any(w in f'{what} {info.description}'.lower() for w in ('distance', 'divergence', 'drift'))
                found.setdefault(feature, f"{split}: {'drift: ' if drift else ''}{what}")
    for feature, why in (flagged or {}).items():
        found.setdefault(feature, why)
    return found


def blessing_of(evaluation: Artifact, related: Sequence[Artifact]) -> Artifact | None:
    """The ModelBlessing among ``related`` that judged the same candidate model as this evaluation."""
    try:
        with open(os.path.join(evaluation.uri, 'metrics.json')) as f:
            candidate = json.load(f).get('candidate_model_id')
    except (OSError, ValueError):
        return None
    for artifact in related:
        if artifact.type_name() == 'ModelBlessing' and artifact.get('current_model_id') == candidate:
            return artifact
    return None


def _title(artifact: Artifact) -> tuple[str, str]:
    return (f'<h3>{_e(artifact.type_name())} #{_e(artifact.id)}</h3><p><code>{_e(artifact.uri)}</code></p>',
            f'{artifact.type_name()} #{artifact.id} {artifact.uri}')


def _splits(artifact: Artifact) -> list[str]:
    raw = artifact.get('split_names')
    return json.loads(raw) if raw else []


def load_statistics(artifact: Artifact, split: str) -> Any:
    from tensorflow_metadata.proto.v0 import statistics_pb2
    with open(os.path.join(artifact.uri, f'Split-{split}', 'FeatureStats.pb'), 'rb') as f:
        return statistics_pb2.DatasetFeatureStatisticsList.FromString(f.read())


def _feature_rows(dataset: Any) -> dict[str, list[Any]]:
    rows = {}
    for feature in dataset.features:
        name = '.'.join(feature.path.step) or feature.name
        kind = feature.WhichOneof('stats')
        if kind == 'num_stats':
            s = feature.num_stats
            common = s.common_stats
            rows[name] = ['numeric', common.num_non_missing, common.num_missing, s.mean, s.std_dev, s.min, s.max, '']
        elif kind == 'string_stats':
            s = feature.string_stats
            common = s.common_stats
            top = ', '.join(f'{v.value} ({v.frequency:.0f})' for v in s.top_values[:3])
            rows[name] = ['string', common.num_non_missing, common.num_missing, None, None, None, None,
                          f'{s.unique} unique; top: {top}']
        else:
            rows[name] = [kind or '?', None, None, None, None, None, None, '']
    return rows


def statistics_view(artifact: Artifact, facets: bool = False, flagged: dict[str, str] | None = None) -> View:
    head_html, head_text = _title(artifact)
    splits = _splits(artifact)
    stats = {s: load_statistics(artifact, s).datasets[0] for s in splits}
    per_split = {s: _feature_rows(stats[s]) for s in splits}
    features = sorted({f for rows in per_split.values() for f in rows})
    header = ['feature', 'split', 'type', 'count', 'missing', 'mean', 'std', 'min', 'max', 'values']
    rows = [[f, s, *per_split[s][f]] for f in features for s in splits if f in per_split[s]]
    t_html, t_text = table(header, rows, numeric=range(3, 9))
    counts = ', '.join(f'{s}: {stats[s].num_examples} examples' for s in splits)
    flagged = {f: why for f, why in (flagged or {}).items() if f in features}
    marks = '; '.join(f'{f} ({why})' for f, why in sorted(flagged.items()))
    body = head_html + f'<p>{_e(counts)}</p>'
    if marks:
        body += f'<p class="bad">Anomalies or drift: {_e(marks)}</p>'
    if features:
        body += statistics_plot(stats, flagged)
    body += t_html
    if facets and len(splits) >= 1:
        body += facets_html(artifact, splits)
    return View(body, f'{head_text}\n{counts}\n' + (f'Anomalies or drift: {marks}\n' if marks else '') + t_text)


def _feature_name(feature: Any) -> str:
    return '.'.join(feature.path.step) or feature.name


def _share(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


def statistics_plot(stats: dict[str, Any], flagged: dict[str, str]) -> str:
    """One small plot per feature: every split overlaid as shares of its examples."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    by_feature: dict[str, dict[str, Any]] = {}
    for split, dataset in stats.items():
        for feature in dataset.features:
            by_feature.setdefault(_feature_name(feature), {})[split] = feature
    names = sorted(by_feature)
    cols = min(3, len(names))
    nrows = (len(names) + cols - 1) // cols
    titles = []
    for name in names:
        missing = []
        for split, feature in by_feature[name].items():
            common = _common_stats(feature)
            total = common.num_missing + common.num_non_missing if common is not None else 0
            missing.append((split, _share(common.num_missing, total) if common is not None else 0.0))
        words = ', '.join(f'{s} {_percent(m)}' for s, m in missing)
        any_missing = any(m > 0 for _, m in missing)
        missing_html = (f'<span style="color:#ef6c00">missing {words}</span>' if any_missing else
                        '<span style="color:#757575">no missing values</span>')
        title = f'<b>{html.escape(name)}</b> · {missing_html}'
        if name in flagged:
            title = f'<span style="color:{RED}">⚠ <b>{html.escape(name)}</b>: {html.escape(flagged[name][:60])}</span>' \
                    f'<br>{missing_html}'
        titles.append(title)
    fig = make_subplots(rows=nrows, cols=cols, subplot_titles=titles, vertical_spacing=min(0.12, 0.6 / nrows),
                        horizontal_spacing=0.07)
    colors = {s: SPLIT_COLORS[i % len(SPLIT_COLORS)] for i, s in enumerate(stats)}
    shown: set[str] = set()
    for index, name in enumerate(names):
        row, col = index // cols + 1, index % cols + 1
        numeric = any(f.WhichOneof('stats') == 'num_stats' for f in by_feature[name].values())
        top = _top_values(by_feature[name]) if not numeric else []
        for split, feature in by_feature[name].items():
            common = _common_stats(feature)
            non_missing = common.num_non_missing if common is not None else 0
            legend = dict(name=split, legendgroup=split, showlegend=split not in shown,
                          marker={'color': colors[split], 'line': {'width': 0}})
            shown.add(split)
            if numeric:
                buckets = _histogram(feature)
                if not buckets:
                    continue
                total = sum(b.sample_count for b in buckets) or 1
                span = max(b.high_value for b in buckets) - min(b.low_value for b in buckets)
                widths = [max(b.high_value - b.low_value, (span or 1.0) * 0.01) for b in buckets]
                fig.add_trace(go.Bar(x=[b.low_value for b in buckets], y=[b.sample_count / total for b in buckets],
                                     width=widths, offset=0, opacity=0.55,
                                     customdata=[[b.low_value, b.high_value, b.sample_count] for b in buckets],
                                     hovertemplate=f'{split}: [%{{customdata[0]:.4g}}, %{{customdata[1]:.4g}}] '
                                                   '%{customdata[2]:.0f} examples (%{y:.1%})<extra></extra>',
                                     **legend), row=row, col=col)
            else:
                freq = {v.value: v.frequency for v in feature.string_stats.top_values} \
                    if feature.WhichOneof('stats') == 'string_stats' else {}
                fig.add_trace(go.Bar(x=[_label(v) for v in top], y=[_share(freq.get(v, 0), non_missing) for v in top],
                                     hovertemplate=f'{split}: %{{x}} %{{y:.1%}}<extra></extra>', **legend),
                              row=row, col=col)
        fig.update_yaxes(tickformat='.0%', row=row, col=col)
        if not numeric:
            fig.update_xaxes(tickangle=-30, row=row, col=col)
        if name in flagged:
            axis = '' if index == 0 else str(index + 1)
            fig.add_shape(type='rect', xref=f'x{axis} domain', yref=f'y{axis} domain', x0=-0.04, x1=1.02, y0=-0.12,
                          y1=1.04, line={'color': RED, 'width': 2}, fillcolor='rgba(198,40,40,0.05)', layer='below')
    fig.update_layout(barmode='group', bargap=0.05, legend=LEGEND,
                      meta={'sluice': 'statistics', 'features': names, 'flagged': sorted(flagged)})
    fig.update_annotations(font_size=11)
    return figure_html(fig, 120 + 230 * nrows)


def _common_stats(feature: Any) -> Any:
    kind = feature.WhichOneof('stats')
    if kind == 'num_stats':
        return feature.num_stats.common_stats
    if kind == 'string_stats':
        return feature.string_stats.common_stats
    if kind == 'bytes_stats':
        return feature.bytes_stats.common_stats
    return None


def _histogram(feature: Any) -> list[Any]:
    """The standard (equal-width) histogram of a numeric feature, else its quantiles histogram."""
    histograms = list(feature.num_stats.histograms)
    histograms.sort(key=lambda h: h.type != 0)  # STANDARD first
    return [b for b in histograms[0].buckets] if histograms else []


def _top_values(features: dict[str, Any], limit: int = 12) -> list[str]:
    """The values most frequent in any split (up to ``limit``), most frequent first."""
    best: dict[str, float] = {}
    for feature in features.values():
        if feature.WhichOneof('stats') != 'string_stats':
            continue
        total = feature.string_stats.common_stats.num_non_missing or 1
        for v in feature.string_stats.top_values:
            best[v.value] = max(best.get(v.value, 0.0), v.frequency / total)
    return sorted(best, key=lambda v: -best[v])[:limit]


def _percent(share: float) -> str:
    return '<0.1%' if 0 < share < 0.001 else f'{share:.1%}'


def _label(value: str) -> str:
    if not value.strip():
        return repr(value)
    return value if len(value) <= 16 else value[:15] + '…'


def facets_html(artifact: Artifact, splits: list[str]) -> str:
    """TFDV's facets overview, train vs eval side by side (loads facets from the internet)."""
    from tensorflow_data_validation.utils import display_util

    lhs = load_statistics(artifact, splits[0])
    rhs = load_statistics(artifact, splits[1]) if len(splits) > 1 else None
    return display_util.get_statistics_html(lhs, rhs, lhs_name=splits[0], rhs_name=splits[1] if rhs else 'None')


def schema_view(artifact: Artifact) -> View:
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    head_html, head_text = _title(artifact)
    with open(os.path.join(artifact.uri, 'schema.pbtxt')) as f:
        schema = text_format.Parse(f.read(), schema_pb2.Schema())
    domains = {d.name: d for d in schema.string_domain}
    rows = []
    for feature in schema.feature:
        presence = 'required' if feature.presence.min_fraction == 1.0 else 'optional'
        shape = ('[' + ', '.join(str(d.size) for d in feature.shape.dim) + ']') if feature.HasField('shape') else \
            'variable'
        if feature.HasField('float_domain'):
            domain = f'[{feature.float_domain.min:g}, {feature.float_domain.max:g}]'
        elif feature.HasField('int_domain'):
            domain = f'[{feature.int_domain.min}, {feature.int_domain.max}]'
        elif feature.domain in domains:
            values = list(domains[feature.domain].value)
            domain = f'{len(values)} values: ' + ', '.join(values[:5]) + (' ...' if len(values) > 5 else '')
        else:
            domain = ''
        rows.append([feature.name, schema_pb2.FeatureType.Name(feature.type), presence, shape, domain])
    t_html, t_text = table(['feature', 'type', 'presence', 'shape', 'domain'], rows)
    return View(head_html + t_html, f'{head_text}\n{t_text}')


def anomalies_view(artifact: Artifact) -> View:
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    head_html, head_text = _title(artifact)
    rows = []
    for split in _splits(artifact):
        with open(os.path.join(artifact.uri, f'Split-{split}', 'SchemaDiff.pb'), 'rb') as f:
            anomalies = anomalies_pb2.Anomalies.FromString(f.read())
        for feature, info in sorted(anomalies.anomaly_info.items()):
            rows.append([split, feature, info.short_description, info.description])
        if anomalies.HasField('dataset_anomaly_info'):
            info = anomalies.dataset_anomaly_info
            rows.append([split, '(dataset)', info.short_description, info.description])
    if not rows:
        return View(head_html + '<p class="ok">No anomalies.</p>', f'{head_text}\nNo anomalies.')
    t_html, t_text = table(['split', 'feature', 'anomaly', 'description'], rows)
    return View(head_html + t_html, f'{head_text}\n{t_text}')


def evaluation_view(artifact: Artifact, blessing: Artifact | None = None) -> View:
    """Metrics per slice, candidate vs baseline; with the ModelBlessing of the same candidate, its
    bounds drawn and its failing checks marked."""
    head_html, head_text = _title(artifact)
    with open(os.path.join(artifact.uri, 'metrics.json')) as f:
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
    return View(head_html + f'<p>{_e(note)}</p>' + plot + t_html, f'{head_text}\n{note}\n{t_text}')


def _checks(blessing: Artifact | None) -> list[dict]:
    if blessing is None:
        return []
    path = os.path.join(blessing.uri, 'reasons.json')
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
    head_html, head_text = _title(artifact)
    path = os.path.join(artifact.uri, 'reasons.json')
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
    body = (head_html + f'<p><span class="{cls}">{verdict}</span> model #{_e(artifact.get("current_model_id"))} '
            f'against {_e(against)}</p>' + t_html + (f'<p class="bad">{_e(policy)}</p>' if policy else ''))
    text = f'{head_text}\n{verdict} model #{artifact.get("current_model_id")} against {against}\n{t_text}' + \
        (f'\n{policy}' if policy else '')
    return View(body, text)


def pushed_view(artifact: Artifact) -> View:
    head_html, head_text = _title(artifact)
    destination = artifact.get('pushed_destination') or ''
    try:
        history = history_plot(destination) if destination and os.path.isdir(destination) else ''
    except Exception as e:  # noqa: BLE001 - a push view without its history rather than no view
        history = f'<p class="bad">The history of {_e(destination)} could not be drawn: {_e(e)}</p>'
    if artifact.get('pushed'):
        where = os.path.join(destination, artifact.get('pushed_version') or '')
        line = f'Pushed as version {artifact.get("pushed_version")} to {where}'
        return View(head_html + f'<p class="ok">{_e(line)}</p>' + history, f'{head_text}\n{line}')
    line = f'Not pushed: {artifact.get("reason") or "unknown reason"}'
    return View(head_html + f'<p class="bad">{_e(line)}</p>' + history, f'{head_text}\n{line}')


HISTORY_SYMBOLS = {'push': ('circle', '#1565c0'), 'rollback': ('x', RED), 'promote': ('star', '#ef6c00'),
                   'hand-pushed': ('diamond', GREY), 'copied': ('diamond', GREY)}


def history_plot(destination: str) -> str:
    """The overall metrics of every model pushed to a destination, over time (one plot per metric):
    pushes as dots, promotions as stars, rollbacks as crosses with a dashed line, the current version
    ringed. A rollback shows the metrics of the version it went back to."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from sluice.components.pusher import history, production

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
    heading = f'<h4>Models pushed to {_e(destination)}</h4>'
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


def examples_view(artifact: Artifact) -> View:
    head_html, head_text = _title(artifact)
    counts = json.loads(artifact.get('row_counts') or '{}')
    types = json.loads(artifact.get('column_types') or '{}')
    if counts:
        t_html, t_text = table(['split', 'rows'], [[s, counts.get(s, '')] for s in _splits(artifact)], numeric=(1,))
    else:
        line = 'splits: ' + ', '.join(_splits(artifact))
        t_html, t_text = f'<p>{_e(line)}</p>', line
    c_html, c_text = table(['column', 'type'], sorted(types.items())) if types else ('', '')
    return View(head_html + t_html + c_html, f'{head_text}\n{t_text}\n{c_text}'.rstrip())


def model_view(artifact: Artifact) -> View:
    head_html, head_text = _title(artifact)
    diff = artifact.get('onnx_max_abs_diff')
    inputs = json.loads(artifact.get('onnx_inputs') or '[]')
    rows = [[i['name'], i['dtype'], str(i['shape']), 'required' if i['missing'] is None else repr(i['missing'])]
            for i in inputs]
    t_html, t_text = table(['ONNX input', 'type', 'shape', 'missing value'], rows)
    line = f'ONNX vs SavedModel max abs difference: {diff:.3g}' if diff is not None else 'No ONNX export.'
    return View(head_html + f'<p>{_e(line)}</p>' + (t_html if rows else ''), f'{head_text}\n{line}\n{t_text}')


# -- runs and lineage ----------------------------------------------------------------------------
def dag_svg(nodes: Sequence[str], edges: Sequence[tuple[str, str]], states: dict[str, str],
            notes: dict[str, str] | None = None) -> str:
    """A drawing of a DAG: nodes in columns by depth, boxes colored by state, arrows upstream -> downstream."""
    notes = notes or {}
    depth: dict[str, int] = {}
    for node in nodes:  # nodes come in topological order
        depth[node] = max([depth[a] + 1 for a, b in edges if b == node and a in depth], default=0)
    columns: dict[int, list[str]] = {}
    for node in nodes:
        columns.setdefault(depth[node], []).append(node)
    w, h, gx, gy = 150, 44, 50, 18
    pos = {n: (20 + d * (w + gx), 20 + i * (h + gy)) for d, col in columns.items() for i, n in enumerate(col)}
    width = 40 + len(columns) * (w + gx)
    height = 40 + max(len(c) for c in columns.values()) * (h + gy)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="system-ui,sans-serif" font-size="12">',
             '<defs><marker id="arrow" markerWidth="8" markerHeight="8" refX="8" refY="4" orient="auto">'
             '<path d="M0,0 L8,4 L0,8 z" fill="#555"/></marker></defs>']
    for a, b in edges:
        (x1, y1), (x2, y2) = pos[a], pos[b]
        parts.append(f'<line x1="{x1 + w}" y1="{y1 + h / 2}" x2="{x2 - 2}" y2="{y2 + h / 2}" stroke="#555" '
                     'marker-end="url(#arrow)"/>')
    for node in nodes:
        x, y = pos[node]
        state = states.get(node, 'NOT STARTED')
        color = STATE_COLORS.get(state, '#9e9e9e')
        parts.append(f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="6" fill="white" stroke="{color}" '
                     'stroke-width="2"/>')
        parts.append(f'<text x="{x + 8}" y="{y + 17}" font-weight="bold">{_e(node[:20])}</text>')
        parts.append(f'<text x="{x + 8}" y="{y + 34}" fill="{color}">{_e(state)} {_e(notes.get(node, ""))}</text>')
    parts.append('</svg>')
    return ''.join(parts)


def run_edges(executions: Sequence[Any]) -> list[tuple[str, str]]:
    """(producer node, consumer node) pairs: which node's outputs each node read in the run."""
    producer = {a.id: r.node_id for r in executions for group in r.outputs.values() for a in group}
    edges = {(producer[a.id], r.node_id) for r in executions for group in r.inputs.values() for a in group
             if a.id in producer and producer[a.id] != r.node_id}
    return sorted(edges)


def run_view(run: Any, executions: Sequence[Any]) -> View:
    """A run (``store.run``, ``store.executions``): its DAG with node states and durations, a timeline
    of its executions, and a table of its nodes."""
    edges = run_edges(executions)
    latest = run.latest()
    nodes = run.node_ids or list(latest)
    states = {n: latest[n].state for n in nodes if n in latest}
    durations = {n: f'{latest[n].update_time - latest[n].create_time:.1f}s' for n in nodes if n in latest}
    rows = [[n, latest[n].component_type if n in latest else '', states.get(n, 'NOT STARTED'),
             durations.get(n, ''), latest[n].error if n in latest else ''] for n in nodes]
    t_html, t_text = table(['node', 'component', 'state', 'time', 'error'], rows)
    head = f'Run {run.run_id} of pipeline {run.pipeline_name!r}: {run.state}, {run.nodes_done}/{len(nodes)} nodes done'
    body = f'<h3>{_e(head)}</h3>' + dag_svg(nodes, edges, states, durations)
    if executions:
        body += timeline_plot(run, executions)
    return View(body + t_html, f'{head}\n{t_text}')


def timeline_plot(run: Any, executions: Sequence[Any]) -> str:
    """A Gantt chart of a run: one bar per execution (every attempt) from its start to its end, on
    seconds since the run started, colored by state."""
    import plotly.graph_objects as go

    order = list(run.node_ids or [])
    order += [r.node_id for r in executions if r.node_id not in order]
    start = min([run.create_time, *(r.create_time for r in executions)])
    fig = go.Figure()
    for state in dict.fromkeys(r.state for r in executions):
        mine = [r for r in executions if r.state == state]
        fig.add_trace(go.Bar(
            orientation='h', y=[r.node_id for r in mine], base=[r.create_time - start for r in mine],
            x=[max(r.update_time - r.create_time, 0.05) for r in mine], name=state,
            marker={'color': STATE_COLORS.get(state, GREY)},
            text=[f'{r.update_time - r.create_time:.1f}s' for r in mine], textposition='outside',
            customdata=[[r.id, r.create_time - start, r.update_time - start] for r in mine],
            hovertemplate='%{y} execution #%{customdata[0]}: %{customdata[1]:.1f}s to %{customdata[2]:.1f}s'
                          '<extra>' + state + '</extra>'))
    fig.update_yaxes(categoryorder='array', categoryarray=list(reversed(order)))
    fig.update_xaxes(title_text='seconds since the run started', rangemode='tozero')
    fig.update_layout(barmode='overlay', legend=LEGEND,
                      meta={'sluice': 'timeline', 'executions': len(executions)})
    return '<h4>Timeline</h4>' + figure_html(fig, 100 + 26 * len(order), top=40)


def lineage_view(root: LineageNode) -> View:
    """What produced an artifact: a drawing (artifacts and executions) and an indented text tree."""
    nodes: list[str] = []
    edges: list[tuple[str, str]] = []
    states: dict[str, str] = {}
    seen: set[str] = set()

    def visit(node: LineageNode) -> str:
        a = node.artifact
        label = f'{a.type_name()} #{a.id}'
        if label in seen:
            return label
        seen.add(label)
        if node.execution is not None:
            ex = node.execution
            ex_label = f'{ex.node_id} ex#{ex.id}'
            if ex_label not in seen:
                seen.add(ex_label)
                for children in node.inputs.values():
                    for child in children:
                        edges.append((visit(child), ex_label))
                nodes.append(ex_label)
                states[ex_label] = ex.state
            edges.append((ex_label, label))
        nodes.append(label)
        states[label] = 'artifact'
        return label

    visit(root)
    svg = dag_svg(nodes, edges, states)
    lines: list[str] = []

    def text(node: LineageNode, prefix: str) -> None:
        a = node.artifact
        lines.append(f'{prefix}{a.type_name()} #{a.id} {a.uri}')
        if node.execution is not None:
            lines.append(f'{prefix}  <- {node.execution.node_id} (execution #{node.execution.id})')
            for children in node.inputs.values():
                for child in children:
                    text(child, prefix + '     ')

    text(root, '')
    return View(svg + '<pre>' + _e('\n'.join(lines)) + '</pre>', '\n'.join(lines))
