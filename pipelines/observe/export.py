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
    basic auth and never printed (nor is the rest of the URL's path). Written without prometheus_client,
    whose import alone cost a cached run about 2% (bench/observe_overhead.py), and over plain HTTP
    without http.client (``post``)."""
    import base64
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
        status, reason, answer = (_post_tls if parts.scheme == 'https' else post)(
            parts, path, text.encode('utf-8'), headers)
        if not 200 <= status < 300:
            raise OSError(f'HTTP {status} {reason}' + (f': {answer}' if answer else ''))
    except Exception as e:  # noqa: BLE001 - an unreachable gateway, a refused push
        return [f'the metrics could not be pushed to the Pushgateway at {where(url)}: '
                f'{scrub(f"{type(e).__name__}: {e}", url, password)}']
    return []


def post(parts, path: str, body: bytes, headers: dict[str, str], timeout: float = 10.0) -> tuple[int, str, str]:
    """POST ``body`` over plain HTTP/1.1 to the host of ``parts`` (``urllib.parse.urlsplit``); returns
    (status, reason, the first 500 characters of the answer's body). One request on one connection,
    closed after it: what a push needs, without http.client, whose import (with the email package it
    parses headers with) costs a process about 6 ms, most of what a push took (bench/observe_overhead.py)."""
    import socket

    host = parts.netloc.rpartition('@')[2]  # host[:port] as the URL writes it (an IPv6 host in brackets)
    if any(c in path + host for c in ' \r\n\t'):
        raise ValueError('the URL holds a space or a line break')
    head = [f'POST {path} HTTP/1.1', f'Host: {host}', f'Content-Length: {len(body)}', 'Connection: close',
            *(f'{k}: {v}' for k, v in headers.items())]
    with socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout) as connection:
        connection.sendall('\r\n'.join(head).encode('latin-1') + b'\r\n\r\n' + body)
        answer = b''
        while len(answer) < 1 << 16 and not _whole(answer):
            chunk = connection.recv(1 << 16)
            if not chunk:
                break
            answer += chunk
    status_line, _, rest = answer.partition(b'\r\n')
    version, _, status_reason = status_line.decode('latin-1').partition(' ')
    status, _, reason = status_reason.partition(' ')
    if not version.startswith('HTTP/') or not status.isdigit():
        raise OSError(f'not an HTTP answer: {status_line[:80]!r}')
    content = rest.partition(b'\r\n\r\n')[2]
    return int(status), reason.strip(), content[:500].decode('utf-8', 'replace').strip()


def _whole(answer: bytes) -> bool:
    """Whether an answer read so far is complete by its Content-Length (else the server closing the
    connection, as asked, ends it)."""
    head, found, content = answer.partition(b'\r\n\r\n')
    if not found:
        return False
    for line in head.split(b'\r\n')[1:]:
        name, _, value = line.partition(b':')
        if name.strip().lower() == b'content-length' and value.strip().isdigit():
            return len(content) >= int(value)
    return False


def _post_tls(parts, path: str, body: bytes, headers: dict[str, str], timeout: float = 10.0) -> tuple[int, str, str]:
    """``post`` over HTTPS, with http.client (TLS costs the import of ssl anyway)."""
    import http.client

    connection = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request('POST', path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.reason, response.read(500).decode('utf-8', 'replace').strip()
    finally:
        connection.close()


def _grouping(name: str, value: str) -> str:
    """One label of the grouping key as a path segment: URL-escaped, or base64url (``name@base64``)
    when the value holds a ``/`` or is empty, which a plain segment cannot carry."""
    import base64
    import urllib.parse

    if value and '/' not in value:
        return f"/{name}/{urllib.parse.quote(value, safe='')}"
    return f"/{name}@base64/{base64.urlsafe_b64encode(value.encode()).decode() or '='}"
