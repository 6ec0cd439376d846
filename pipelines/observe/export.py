"""Where a run's figures go when it ends: a textfile for the node exporter's textfile collector
(``--metrics-file`` / ``$SLUICE_METRICS_FILE``) and a Prometheus Pushgateway (``--pushgateway URL`` /
``$SLUICE_PUSHGATEWAY``: push-add, grouped by ``job="sluice"`` and the pipeline). Neither can fail
the run: a problem is said in one line and the run's outcome stands. The push itself is in ``push``,
imported only by a run that pushes (every run imports this module)."""
from __future__ import annotations

import os

from sluice.metadata.store import MetadataStore

METRICS_FILE_ENV = 'SLUICE_METRICS_FILE'
PUSHGATEWAY_ENV = 'SLUICE_PUSHGATEWAY'


def export_run(store: MetadataStore, run_id: str, metrics_file: str | None = None,
               pushgateway: str | None = None) -> list[str]:
    """Writes and pushes the run's figures where configured; returns what went wrong, in words."""
    metrics_file = metrics_file or os.environ.get(METRICS_FILE_ENV) or None
    pushgateway = pushgateway or os.environ.get(PUSHGATEWAY_ENV) or None
    if not (metrics_file or pushgateway):
        return []
    from sluice.observe.run_metrics import run_figures  # only when the figures go somewhere
    try:
        figures, run = run_figures(store, run_id)
    except Exception as e:  # noqa: BLE001 - figures are no reason to fail a finished run
        return [f'the metrics of run {run_id} could not be read from the store: {type(e).__name__}: {e}']
    return publish(figures, run.pipeline_name, metrics_file, pushgateway)


def publish(figures, pipeline: str, metrics_file: str | None = None, pushgateway: str | None = None,
            suffix: str = '') -> list[str]:
    """Writes ``figures`` (``exposition.Gauges``, or a prometheus_client ``CollectorRegistry``) to the
    textfile and pushes them to the Pushgateway given (else the ones the environment names); returns
    what went wrong, in words. ``suffix`` is added to the file's name (``{pipeline}-drift.prom``:
    another writer's figures never replace a run's). The textfile is written without
    prometheus_client (``exposition``), and pushed without it too."""
    from sluice.observe.exposition import Gauges, write_textfile

    metrics_file = metrics_file or os.environ.get(METRICS_FILE_ENV) or None
    pushgateway = pushgateway or os.environ.get(PUSHGATEWAY_ENV) or None
    problems: list[str] = []
    if not (metrics_file or pushgateway):
        return problems
    if isinstance(figures, Gauges):
        text = figures.text()
    else:  # a prometheus_client registry (drift's figures)
        from prometheus_client import generate_latest
        text = generate_latest(figures).decode('utf-8')
    if metrics_file:
        path = metrics_file.replace('{pipeline}', pipeline)
        if suffix:
            root, ext = os.path.splitext(path)
            path = root + suffix + ext
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            write_textfile(path, text)  # a temporary file renamed into place
        except OSError as e:
            problems.append(f'the metrics file {path} could not be written: {e}')
    if pushgateway:
        from sluice.observe.push import push
        problems += push(text, pipeline, pushgateway)
    return problems
