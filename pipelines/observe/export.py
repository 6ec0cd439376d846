"""Where a run's figures go when it ends: a textfile for the node exporter's textfile collector
(``--metrics-file`` / ``$SLUICE_METRICS_FILE``) and a Prometheus Pushgateway (``--pushgateway URL`` /
``$SLUICE_PUSHGATEWAY``: push-add, grouped by ``job="sluice"`` and the pipeline). Neither can fail
the run: a problem is said in one line and the run's outcome stands."""
from __future__ import annotations

import os

from sluice.metadata.store import MetadataStore

METRICS_FILE_ENV = 'SLUICE_METRICS_FILE'
PUSHGATEWAY_ENV = 'SLUICE_PUSHGATEWAY'
JOB = 'sluice'


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
    prometheus_client (``exposition``); the Pushgateway gets them through it."""
    from sluice.observe.exposition import Gauges, write_textfile

    metrics_file = metrics_file or os.environ.get(METRICS_FILE_ENV) or None
    pushgateway = pushgateway or os.environ.get(PUSHGATEWAY_ENV) or None
    problems = []
    if metrics_file:
        path = metrics_file.replace('{pipeline}', pipeline)
        if suffix:
            root, ext = os.path.splitext(path)
            path = root + suffix + ext
        if isinstance(figures, Gauges):
            text = figures.text()
        else:
            from prometheus_client import generate_latest
            text = generate_latest(figures).decode('utf-8')
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            write_textfile(path, text)  # a temporary file renamed into place
        except OSError as e:
            problems.append(f'the metrics file {path} could not be written: {e}')
    if pushgateway:
        problems += _push(figures.registry() if isinstance(figures, Gauges) else figures, pipeline, pushgateway)
    return problems


def _push(registry, pipeline: str, url: str) -> list[str]:
    """push-add to the Pushgateway at ``url``; a user and password in it are sent as basic auth and
    never printed (nor is the rest of the URL's path)."""
    import urllib.parse

    from prometheus_client import pushadd_to_gateway
    from prometheus_client.exposition import basic_auth_handler, default_handler

    from sluice.metadata.credentials import scrub
    from sluice.observe.notify import where

    parts = urllib.parse.urlsplit(url)
    user, password = urllib.parse.unquote(parts.username or ''), urllib.parse.unquote(parts.password or '')
    bare = urllib.parse.urlunsplit(parts._replace(netloc=parts.hostname + (f':{parts.port}' if parts.port else '')))

    def handler(url, method, timeout, headers, data):
        if user or password:
            return basic_auth_handler(url, method, timeout, headers, data, user, password)
        return default_handler(url, method, timeout, headers, data)

    try:
        pushadd_to_gateway(bare, job=JOB, grouping_key={'pipeline': pipeline}, registry=registry, timeout=10,
                           handler=handler)
    except Exception as e:  # noqa: BLE001 - an unreachable gateway, a refused push
        return [f'the metrics could not be pushed to the Pushgateway at {where(url)}: '
                f'{scrub(f"{type(e).__name__}: {e}", url, bare, password)}']
    return []
