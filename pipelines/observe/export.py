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
    prometheus_client (``exposition``), and pushed without it too."""
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
        problems += _push(figures, pipeline, pushgateway)
    return problems


def _push(figures, pipeline: str, url: str) -> list[str]:
    """push-add (HTTP POST of the text format) to the Pushgateway at ``url``, grouped by ``job`` and
    the pipeline, as the Pushgateway's API defines it; a user and password in the URL are sent as
    basic auth and never printed (nor is the rest of the URL's path). Written with http.client rather
    than prometheus_client, whose import alone cost a cached run about 2% (bench/observe_overhead.py)."""
    import base64
    import http.client
    import urllib.parse

    from sluice.metadata.credentials import scrub
    from sluice.observe.exposition import Gauges
    from sluice.observe.notify import where

    if isinstance(figures, Gauges):
        text = figures.text()
    else:  # a prometheus_client registry (drift's figures)
        from prometheus_client import generate_latest
        text = generate_latest(figures).decode('utf-8')
    parts = urllib.parse.urlsplit(url if '://' in url else 'http://' + url)
    user, password = urllib.parse.unquote(parts.username or ''), urllib.parse.unquote(parts.password or '')
    path = f"{parts.path.rstrip('/')}/metrics/job/{JOB}{_grouping('pipeline', pipeline)}"
    headers = {'Content-Type': 'text/plain; version=0.0.4; charset=utf-8'}
    if user or password:
        headers['Authorization'] = 'Basic ' + base64.b64encode(f'{user}:{password}'.encode()).decode()
    try:
        if parts.scheme not in ('http', 'https') or not parts.hostname:
            raise ValueError('the URL is not http(s)://HOST[:PORT][/PATH]')
        kind = http.client.HTTPSConnection if parts.scheme == 'https' else http.client.HTTPConnection
        connection = kind(parts.hostname, parts.port, timeout=10)
        try:
            connection.request('POST', path, body=text.encode('utf-8'), headers=headers)
            response = connection.getresponse()
            answer = response.read(500).decode('utf-8', 'replace').strip()
        finally:
            connection.close()
        if not 200 <= response.status < 300:
            raise OSError(f'HTTP {response.status} {response.reason}' + (f': {answer}' if answer else ''))
    except Exception as e:  # noqa: BLE001 - an unreachable gateway, a refused push
        return [f'the metrics could not be pushed to the Pushgateway at {where(url)}: '
                f'{scrub(f"{type(e).__name__}: {e}", url, password)}']
    return []


def _grouping(name: str, value: str) -> str:
    """One label of the grouping key as a path segment: URL-escaped, or base64url (``name@base64``)
    when the value holds a ``/`` or is empty, which a plain segment cannot carry."""
    import base64
    import urllib.parse

    if value and '/' not in value:
        return f"/{name}/{urllib.parse.quote(value, safe='')}"
    return f"/{name}@base64/{base64.urlsafe_b64encode(value.encode()).decode() or '='}"
