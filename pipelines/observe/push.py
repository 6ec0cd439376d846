"""The push of a run's figures to a Prometheus Pushgateway (``sluice.observe.publish``): push-add, grouped by
``job="sluice"`` and the pipeline, over plain HTTP without http.client (``post``).

The Pushgateway's address is found ahead, while the run works (``resolve_ahead``, from
``sluice.observe.before_run`` when the run starts): a host name's first lookup in a process loads
the C library's name services, a millisecond and more that the end of a short run would wait for;
an IP address is not looked up at all."""
from __future__ import annotations

import socket
import time
from typing import Any, Callable

JOB = 'sluice'
RESOLVED_FOR = 30.0  # seconds an address found ahead is used for; a longer run looks the host up again
_ahead: dict[tuple[str, int], Any] = {}  # (host, port) -> a lock held while it is looked up, then (when, addresses)


def push(text: str, pipeline: str, url: str) -> list[str]:
    """push-add (HTTP POST of ``text``, the text format) to the Pushgateway at ``url``, grouped by ``job``
    and the pipeline, as the Pushgateway's API defines it; returns what went wrong, in words (``send``
    and the answer it returns)."""
    return send(text, pipeline, url)()


def send(text: str, pipeline: str, url: str) -> Callable[[], list[str]]:
    """The push (see ``push``) sent: returns the call that waits for the Pushgateway's answer and says
    what went wrong, in words, so the caller can do other work while the Pushgateway takes the push in
    (a millisecond and more). A user and password in the URL are sent as basic auth and never printed
    (nor is the rest of the URL's path). Written without prometheus_client, whose import alone cost a
    cached run about 2% (bench/observe_overhead.py), and over plain HTTP without http.client (``post``)."""
    import base64
    import urllib.parse

    parts = urllib.parse.urlsplit(url if '://' in url else 'http://' + url)
    user, password = urllib.parse.unquote(parts.username or ''), urllib.parse.unquote(parts.password or '')
    path = f"{parts.path.rstrip('/')}/metrics/job/{JOB}{_grouping('pipeline', pipeline)}"
    headers = {'Content-Type': 'text/plain; version=0.0.4; charset=utf-8'}
    if user or password:
        headers['Authorization'] = 'Basic ' + base64.b64encode(f'{user}:{password}'.encode()).decode()

    def problem(e: Exception) -> list[str]:
        from sluice.metadata.credentials import scrub
        return [f'the metrics could not be pushed to the Pushgateway at {where(url)}: '
                f'{scrub(f"{type(e).__name__}: {e}", url, password)}']

    def answered(status: int, reason: str, answer: str) -> list[str]:
        if 200 <= status < 300:
            return []
        return problem(OSError(f'HTTP {status} {reason}' + (f': {answer}' if answer else '')))

    try:
        if parts.scheme not in ('http', 'https') or not parts.hostname:
            raise ValueError('the URL is not http(s)://HOST[:PORT][/PATH]')
        if parts.scheme == 'https':
            said = answered(*_post_tls(parts, path, text.encode('utf-8'), headers))
            return lambda: said
        connection = _request(parts, path, text.encode('utf-8'), headers)
    except Exception as e:  # noqa: BLE001 - an unreachable gateway, a bad URL
        said = problem(e)
        return lambda: said

    def wait() -> list[str]:
        try:
            return answered(*_answer(connection))
        except Exception as e:  # noqa: BLE001 - no answer, not HTTP
            return problem(e)
    return wait


def post(parts, path: str, body: bytes, headers: dict[str, str], timeout: float = 10.0) -> tuple[int, str, str]:
    """POST ``body`` over plain HTTP/1.1 to the host of ``parts`` (``urllib.parse.urlsplit``); returns
    (status, reason, the first 500 characters of the answer's body). One request on one connection,
    closed after it: what a push needs, without http.client, whose import (with the email package it
    parses headers with) costs a process about 6 ms, most of what a push took (bench/observe_overhead.py)."""
    return _answer(_request(parts, path, body, headers, timeout))


def _request(parts, path: str, body: bytes, headers: dict[str, str], timeout: float = 10.0) -> socket.socket:
    """``post``'s request, sent: the connection its answer will come on."""
    host = parts.netloc.rpartition('@')[2]  # host[:port] as the URL writes it (an IPv6 host in brackets)
    if any(c in path + host for c in ' \r\n\t'):
        raise ValueError('the URL holds a space or a line break')
    head = [f'POST {path} HTTP/1.1', f'Host: {host}', f'Content-Length: {len(body)}', 'Connection: close',
            *(f'{k}: {v}' for k, v in headers.items())]
    connection = _connect(parts.hostname, parts.port or 80, timeout)
    try:
        connection.sendall('\r\n'.join(head).encode('latin-1') + b'\r\n\r\n' + body)
    except BaseException:
        connection.close()
        raise
    return connection


def _answer(connection: socket.socket) -> tuple[int, str, str]:
    """``post``'s answer, read from ``connection`` (then closed)."""
    with connection:
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


def where(url: str) -> str:
    """Only the scheme, host and port of ``url``: for many webhooks (Slack's, Teams') the path or the
    query is the secret, so a URL is never printed whole."""
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    port = f':{parts.port}' if parts.port else ''
    return f'{parts.scheme}://{parts.hostname or ""}{port}/...' if parts.path not in ('', '/') or parts.query \
        else f'{parts.scheme}://{parts.hostname or ""}{port}'


def _literal(host: str) -> int | None:
    """The address family of an IP address written as one (``socket.connect`` takes it as it is),
    None for a host name."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
            return family
        except (OSError, ValueError):
            pass
    return None


def resolve_ahead(url: str) -> None:
    """Looks up the host of the Pushgateway at ``url`` in a daemon thread (``getaddrinfo`` lets the
    run's own thread go on meanwhile), for the push at the run's end (``_connect``). Nothing for an IP
    address or an https URL (TLS connects by name), nothing said: a lookup that fails here is made
    again by the push, which says why."""
    import urllib.parse

    try:
        parts = urllib.parse.urlsplit(url if '://' in url else 'http://' + url)
        host, port = parts.hostname, parts.port or 80
    except ValueError:  # a port that is no number: the push says so
        return
    if parts.scheme != 'http' or not host or _literal(host) is not None:
        return
    found = _ahead.get((host, port))  # a process running one run after another (sluice watch) looks again
    if found is not None and (not isinstance(found, tuple) or time.monotonic() - found[0] < RESOLVED_FOR):
        return
    import _thread

    done = _thread.allocate_lock()  # held while looking: what the push waits on

    def look_up() -> None:
        try:
            _ahead[host, port] = (time.monotonic(), socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM))
        except OSError:
            _ahead.pop((host, port), None)
        finally:
            done.release()

    done.acquire()
    _ahead[host, port] = done
    # _thread, not threading: Thread.start waits until the thread runs, a third of a millisecond of the run's
    # own; this thread is a daemon's kind, and the push waits for it on ``done``
    _thread.start_new_thread(look_up, ())


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to ``host``: an IP address as it is, a host name at the addresses found ahead
    (``resolve_ahead``, waited for if still looking, used for ``RESOLVED_FOR`` seconds), else looked
    up now; each address tried in turn, as ``socket.create_connection`` does."""
    family = _literal(host)
    if family is not None:
        addresses = [(family, socket.SOCK_STREAM, 0, '', (host, port))]
    else:
        found = _ahead.get((host, port))
        if found is not None and not isinstance(found, tuple):  # still looking it up
            if found.acquire(timeout=timeout):
                found.release()
            found = _ahead.get((host, port))
        if isinstance(found, tuple) and time.monotonic() - found[0] < RESOLVED_FOR:
            addresses = found[1]
        else:
            addresses = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    error: OSError | None = None
    for family, kind, proto, _, address in addresses:
        connection = socket.socket(family, kind, proto)
        try:
            connection.settimeout(timeout)
            connection.connect(address)
            return connection
        except OSError as e:
            error = e
            connection.close()
    raise error or OSError(f'no address found for {host}')


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
