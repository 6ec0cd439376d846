"""Views of the data: examples (rows per split, column types), statistics (a table and one plot per
feature, every split overlaid, anomalies and drift framed in red; TFDV's facets on request), the
schema and the anomalies.
"""
from __future__ import annotations

import html
import json
import os
from typing import Any, Sequence

from sluice.metadata import storage
from sluice.metadata.artifact import Artifact, row_counts
from sluice.ui.visuals.page import (LEGEND, RED, SPLIT_COLORS, View, artifact_heading, esc, figure_html,
                                    split_names, table)


def anomalous_features(related: Sequence[Artifact], flagged: dict[str, str] | None = None) -> dict[str, str]:
    """Feature -> what is wrong with it, from ExampleAnomalies artifacts (every split) and ``flagged``."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    found: dict[str, str] = {}
    for artifact in related:
        if artifact.type_name() != 'ExampleAnomalies':
            continue
        for split in split_names(artifact):
            path = os.path.join(storage.local_copy(artifact.uri), f'Split-{split}', 'SchemaDiff.pb')
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


def load_statistics(artifact: Artifact, split: str) -> Any:
    from tensorflow_metadata.proto.v0 import statistics_pb2
    with open(os.path.join(storage.local_copy(artifact.uri), f'Split-{split}', 'FeatureStats.pb'), 'rb') as f:
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
    head_html, head_text = artifact_heading(artifact)
    splits = split_names(artifact)
    stats = {s: load_statistics(artifact, s).datasets[0] for s in splits}
    per_split = {s: _feature_rows(stats[s]) for s in splits}
    features = sorted({f for rows in per_split.values() for f in rows})
    header = ['feature', 'split', 'type', 'count', 'missing', 'mean', 'std', 'min', 'max', 'values']
    rows = [[f, s, *per_split[s][f]] for f in features for s in splits if f in per_split[s]]
    t_html, t_text = table(header, rows, numeric=range(3, 9))
    counts = ', '.join(f'{s}: {stats[s].num_examples} examples' for s in splits)
    flagged = {f: why for f, why in (flagged or {}).items() if f in features}
    marks = '; '.join(f'{f} ({why})' for f, why in sorted(flagged.items()))
    body = head_html + f'<p>{esc(counts)}</p>'
    if marks:
        body += f'<p class="bad">Anomalies or drift: {esc(marks)}</p>'
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

    head_html, head_text = artifact_heading(artifact)
    with open(os.path.join(storage.local_copy(artifact.uri), 'schema.pbtxt')) as f:
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

    head_html, head_text = artifact_heading(artifact)
    rows = []
    for split in split_names(artifact):
        with open(os.path.join(storage.local_copy(artifact.uri), f'Split-{split}', 'SchemaDiff.pb'), 'rb') as f:
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


def examples_view(artifact: Artifact) -> View:
    head_html, head_text = artifact_heading(artifact)
    counts = row_counts(artifact)
    types = json.loads(artifact.get('column_types') or '{}')
    if counts:
        t_html, t_text = table(['split', 'rows'], [[s, counts.get(s, '')] for s in split_names(artifact)], numeric=(1,))
    else:
        line = 'splits: ' + ', '.join(split_names(artifact))
        t_html, t_text = f'<p>{esc(line)}</p>', line
    c_html, c_text = table(['column', 'type'], sorted(types.items())) if types else ('', '')
    return View(head_html + t_html + c_html, f'{head_text}\n{t_text}\n{c_text}'.rstrip())

