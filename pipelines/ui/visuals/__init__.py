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
  marked (the destination's own history, ``sluice.components.production.destination.history``);
- run: the DAG with node states and durations, and a timeline (Gantt) of the run's executions;
- history (``history_view``): each node's duration across a pipeline's runs, the models pushed to its
  destination over time, and the drift of each feature of the served data at every ``sluice drift``.

Plots need Plotly's JavaScript on the page and nothing from the network: ``report.report_html`` puts it
inline once per page, and in Jupyter the first view shown in a kernel carries it inline. The only view
that loads anything from the internet is TFDV's optional facets view of statistics (``facets=True``),
as TFDV does. Nothing here imports TensorFlow: statistics, schemas and anomalies are read with
tensorflow_metadata's protocol buffers.

Modules: ``page`` (the View type, HTML tables, Plotly's page plumbing), ``data`` (examples,
statistics, schema, anomalies), ``models`` (model, evaluation, blessing, pushed model and its
destination's history), ``runs`` (a run's DAG and timeline, lineage), ``history`` (across runs) and ``artifacts`` (``render``:
the view of an artifact, chosen by its type).
"""
from __future__ import annotations

from sluice.ui.visuals.artifacts import render
from sluice.ui.visuals.history import history_view
from sluice.ui.visuals.page import CSS, View, plotly_script
from sluice.ui.visuals.runs import lineage_view, run_view

__all__ = ['CSS', 'View', 'history_view', 'lineage_view', 'plotly_script', 'render', 'run_view']
