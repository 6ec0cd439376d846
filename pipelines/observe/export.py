"""Where a run's figures go when it ends: a textfile for the node exporter's textfile collector
(``--metrics-file`` / ``$SLUICE_METRICS_FILE``) and a Prometheus Pushgateway (``--pushgateway URL`` /
``$SLUICE_PUSHGATEWAY``: push-add, grouped by ``job="sluice"`` and the pipeline). Neither can fail
the run: a problem is said in one line and the run's outcome stands. The push itself is in ``push``,
imported only by a run that pushes (every run imports this module)."""
from __future__ import annotations

import os
from typing import Callable

from sluice.metadata.store import MetadataStore

METRICS_FILE_ENV = 'SLUICE_METRICS_FILE'
PUSHGATEWAY_ENV = 'SLUICE_PUSHGATEWAY'


def _nothing() -> list[str]:
    return []


def export_run(store: MetadataStore, run_id: str, metrics_file: str | None = None,
               pushgateway: str | None = None) -> list[str]:
    """Writes and pushes the run's figures where configured; returns what went wrong, in words."""
    return start_export(store, run_id, metrics_file, pushgateway)()


def start_export(store: MetadataStore, run_id: str, metrics_file: str | None = None,
                 pushgateway: str | None = None) -> Callable[[], list[str]]:
    """``export_run`` up to the Pushgateway's answer: the figures read, written and sent; returns the
    call that waits for the answer and returns what went wrong, in words."""
    metrics_file = metrics_file or os.environ.get(METRICS_FILE_ENV) or None
    pushgateway = pushgateway or os.environ.get(PUSHGATEWAY_ENV) or None
    if not (metrics_file or pushgateway):
        return _nothing
    from sluice.observe.run_metrics import run_figures  # only when the figures go somewhere
    try:
        figures, run = run_figures(store, run_id)
    except Exception as e:  # noqa: BLE001 - figures are no reason to fail a finished run
        said = [f'the metrics of run {run_id} could not be read from the store: {type(e).__name__}: {e}']
        return lambda: said
    return _publish(figures, run.pipeline_name, metrics_file, pushgateway)


def publish(figures, pipeline: str, metrics_file: str | None = None, pushgateway: str | None = None,
            suffix: str = '') -> list[str]:
    """Writes ``figures`` (``exposition.Gauges``, or a prometheus_client ``CollectorRegistry``) to the
    textfile and pushes them to the Pushgateway given (else the ones the environment names); returns
    what went wrong, in words. ``suffix`` is added to the file's name (``{pipeline}-drift.prom``:
    another writer's figures never replace a run's). The textfile is written without
    prometheus_client (``exposition``), and pushed without it too."""
    return _publish(figures, pipeline, metrics_file, pushgateway, suffix)()


def _publish(figures, pipeline: str, metrics_file: str | None = None, pushgateway: str | None = None,
             suffix: str = '') -> Callable[[], list[str]]:
    """``publish`` up to the Pushgateway's answer (``push.send``)."""
    from sluice.observe.exposition import Gauges, write_textfile

    metrics_file = metrics_file or os.environ.get(METRICS_FILE_ENV) or None
    pushgateway = pushgateway or os.environ.get(PUSHGATEWAY_ENV) or None
    problems: list[str] = []
    if not (metrics_file or pushgateway):
        return _nothing
    if isinstance(figures, Gauges):
        text = figures.text()
    else:  # a prometheus_client registry (drift's figures)
        from prometheus_client import generate_latest
        text = generate_latest(figures).decode('utf-8')
    answer = _nothing
    if pushgateway:  # sent first: the Pushgateway takes it in while the file is written
        from sluice.observe.push import send
        answer = send(text, pipeline, pushgateway)
    if metrics_file:
        path = metrics_file.replace('{pipeline}', pipeline)
        if suffix:
            root, ext = os.path.splitext(path)
            path = root + suffix + ext
        try:
            try:
                write_textfile(path, text)  # a temporary file renamed into place
            except FileNotFoundError:  # no directory yet: made on first use
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
                write_textfile(path, text)
        except OSError as e:
            problems.append(f'the metrics file {path} could not be written: {e}')
    return lambda: problems + answer()
