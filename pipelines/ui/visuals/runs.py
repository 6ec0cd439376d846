"""Views of runs and lineage: a DAG drawn as SVG (boxes colored by state), a run's DAG with node
states and durations, its timeline (a Gantt chart of every execution attempt) and node table, and
what produced an artifact.
"""
from __future__ import annotations

from typing import Any, Sequence

from sluice.metadata.records import LineageNode
from sluice.ui.visuals.page import GREY, LEGEND, STATE_COLORS, View, esc, figure_html, table


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
        parts.append(f'<text x="{x + 8}" y="{y + 17}" font-weight="bold">{esc(node[:20])}</text>')
        parts.append(f'<text x="{x + 8}" y="{y + 34}" fill="{color}">{esc(state)} {esc(notes.get(node, ""))}</text>')
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
    body = f'<h3>{esc(head)}</h3>' + dag_svg(nodes, edges, states, durations)
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
    return View(svg + '<pre>' + esc('\n'.join(lines)) + '</pre>', '\n'.join(lines))
