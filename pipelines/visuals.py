"""Views of artifacts and runs: HTML for Jupyter and reports, text for terminals.

    >>> view = render(artifact)          # a View
    >>> view._repr_html_(), str(view)

Every view is self-contained HTML (no scripts, no network) except the optional TFDV facets view of
statistics (``facets=True``), which loads the facets web components from the internet as TFDV
does. Nothing here imports TensorFlow: statistics, schemas and anomalies are read with
tensorflow_metadata's protocol buffers.
"""
from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from metadata.artifact import Artifact
from metadata.store import LineageNode

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

    def _repr_html_(self) -> str:
        return f'<div class="sluice">{CSS}{self.html}</div>'

    def __str__(self) -> str:
        return self.text


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
def render(artifact: Artifact, facets: bool = False) -> View:
    """The view of an artifact, chosen by its type."""
    kind = artifact.type_name()
    renderer = {'ExampleStatistics': lambda a: statistics_view(a, facets), 'Schema': schema_view,
                'ExampleAnomalies': anomalies_view, 'ModelEvaluation': evaluation_view,
                'ModelBlessing': blessing_view, 'PushedModel': pushed_view, 'Examples': examples_view,
                'Model': model_view}.get(kind)
    if renderer is None:
        return View(f'<p>{_e(kind)} #{_e(artifact.id)} at <code>{_e(artifact.uri)}</code></p>',
                    f'{kind} #{artifact.id} at {artifact.uri}')
    return renderer(artifact)


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


def statistics_view(artifact: Artifact, facets: bool = False) -> View:
    head_html, head_text = _title(artifact)
    splits = _splits(artifact)
    per_split = {s: _feature_rows(load_statistics(artifact, s).datasets[0]) for s in splits}
    features = sorted({f for rows in per_split.values() for f in rows})
    header = ['feature', 'split', 'type', 'count', 'missing', 'mean', 'std', 'min', 'max', 'values']
    rows = [[f, s, *per_split[s][f]] for f in features for s in splits if f in per_split[s]]
    t_html, t_text = table(header, rows, numeric=range(3, 9))
    counts = ', '.join(f'{s}: {load_statistics(artifact, s).datasets[0].num_examples} examples' for s in splits)
    body = head_html + f'<p>{_e(counts)}</p>' + t_html
    if facets and len(splits) >= 1:
        body += facets_html(artifact, splits)
    return View(body, f'{head_text}\n{counts}\n{t_text}')


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


def evaluation_view(artifact: Artifact) -> View:
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
    return View(head_html + f'<p>{_e(note)}</p>' + t_html, f'{head_text}\n{note}\n{t_text}')


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
    if artifact.get('pushed'):
        where = os.path.join(artifact.get('pushed_destination') or '', artifact.get('pushed_version') or '')
        line = f'Pushed as version {artifact.get("pushed_version")} to {where}'
        return View(head_html + f'<p class="ok">{_e(line)}</p>', f'{head_text}\n{line}')
    line = f'Not pushed: {artifact.get("reason") or "unknown reason"}'
    return View(head_html + f'<p class="bad">{_e(line)}</p>', f'{head_text}\n{line}')


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
    """A run (``store.run``, ``store.executions``): its DAG with node states and durations, and a
    table of its nodes."""
    edges = run_edges(executions)
    latest = run.latest()
    nodes = run.node_ids or list(latest)
    states = {n: latest[n].state for n in nodes if n in latest}
    durations = {n: f'{latest[n].update_time - latest[n].create_time:.1f}s' for n in nodes if n in latest}
    rows = [[n, latest[n].component_type if n in latest else '', states.get(n, 'NOT STARTED'),
             durations.get(n, ''), latest[n].error if n in latest else ''] for n in nodes]
    t_html, t_text = table(['node', 'component', 'state', 'time', 'error'], rows)
    head = f'Run {run.run_id} of pipeline {run.pipeline_name!r}: {run.state}, {run.nodes_done}/{len(nodes)} nodes done'
    body = f'<h3>{_e(head)}</h3>' + dag_svg(nodes, edges, states, durations) + t_html
    return View(body, f'{head}\n{t_text}')


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
