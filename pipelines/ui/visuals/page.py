"""What a view is and how it reaches a page: ``View`` (HTML for Jupyter and reports, text for
terminals), HTML tables, the headings views share, and Plotly's plumbing (its JavaScript inline, once
per page or per kernel; a figure as a ``<div>``; the colors and legend every plot uses).
"""
from __future__ import annotations

import html
import json
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from sluice.metadata.artifact import Artifact

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


def esc(value: Any) -> str:
    return html.escape(str(value))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f'{value:.4g}'
    return '' if value is None else str(value)


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[int] = ()) -> tuple[str, str]:
    """(HTML table, text table)."""
    rows = [[_fmt(c) for c in r] for r in rows]
    head = ''.join(f'<th>{esc(h)}</th>' for h in header)
    body = ''.join('<tr>' + ''.join(f'<td class="num">{esc(c)}</td>' if i in numeric else f'<td>{esc(c)}</td>'
                                    for i, c in enumerate(r)) + '</tr>' for r in rows)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)] if rows else [len(h) for h in header]
    text = '\n'.join('  '.join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [list(header), *rows])
    return f'<table><tr>{head}</tr>{body}</table>', text


def artifact_heading(artifact: Artifact) -> tuple[str, str]:
    return (f'<h3>{esc(artifact.type_name())} #{esc(artifact.id)}</h3><p><code>{esc(artifact.uri)}</code></p>',
            f'{artifact.type_name()} #{artifact.id} {artifact.uri}')


def split_names(artifact: Artifact) -> list[str]:
    raw = artifact.get('split_names')
    return json.loads(raw) if raw else []

