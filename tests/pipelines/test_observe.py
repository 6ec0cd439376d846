"""Watching runs without reading logs: the metrics file after a failure, retries and a resume (values
from ML-Metadata; the text checked against prometheus_client's parser and writer), a real Pushgateway
scraped by a real Prometheus whose shipped alert fires, and failure notices through a webhook that
fails twice before it answers."""
from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from sluice import LocalDagRunner, Pipeline, Retry
from sluice.metadata import MetadataStore
from sluice.metadata.records import latest_per_node
from sluice.observe import Webhook
from sluice.observe import publish
from sluice.observe.run_metrics import Gauges
from sluice.observe.run_metrics import _runs_newest_first, last_success, newest_contexts
from dummies import Flaky, Upper
from serving_helpers import free_port

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RULES = os.path.join(REPO, 'monitoring', 'sluice-alerts.yml')


def flaky_pipeline(tmp_path, fail_times, **kwargs):
    flaky = Flaky(counter=str(tmp_path / 'calls.txt'), fail_times=fail_times).with_retry(Retry(attempts=2, delay=0))
    upper = Upper(text=flaky.outputs['text'])
    return Pipeline('flaky', str(tmp_path / 'root'), [flaky, upper], metadata=f'sqlite:///{tmp_path}/m.db', **kwargs)


def parse(text: str) -> dict[str, float]:
    """{'name{labels}': value} of a Prometheus text exposition, comments left out."""
    found = {}
    for line in text.splitlines():
        if line and not line.startswith('#'):
            series, value = line.rsplit(' ', 1)
            found[series] = float(value)
    return found


def as_prometheus_client_writes_it(text: str) -> str:
    """``text`` read by prometheus_client's parser, its figures set on prometheus_client's own gauges
    (in the order read) and written by its ``generate_latest``: the reference's text for them."""
    from prometheus_client import CollectorRegistry, Gauge, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    registry = CollectorRegistry()
    for family in text_string_to_metric_families(text):
        assert family.type == 'gauge'
        gauge = Gauge(family.name, family.documentation, sorted(family.samples[0].labels), registry=registry)
        for sample in family.samples:
            assert sample.name == family.name and sample.timestamp is None
            (gauge.labels(**sample.labels) if sample.labels else gauge).set(sample.value)
    return generate_latest(registry).decode()


def test_the_metrics_file_follows_a_failure_retries_and_a_resume_with_the_stores_figures(tmp_path, monkeypatch):
    path = tmp_path / 'metrics' / 'flaky.prom'
    monkeypatch.setenv('SLUICE_METRICS_FILE', str(tmp_path / 'metrics' / '{pipeline}.prom'))
    pipeline = flaky_pipeline(tmp_path, fail_times=2)
    failed = LocalDagRunner(progress=False).run(pipeline)
    assert failed.state == 'FAILED'
    assert as_prometheus_client_writes_it(path.read_text()) == path.read_text()
    figures = parse(path.read_text())
    store = MetadataStore(pipeline.metadata)
    flaky = latest_per_node(store.executions(failed.run_id))['Flaky']
    assert figures[f'sluice_run_info{{pipeline="flaky",run_id="{failed.run_id}",state="FAILED"}}'] == 1
    assert figures['sluice_run_success{pipeline="flaky"}'] == 0
    assert figures['sluice_node_attempts{node="Flaky",pipeline="flaky"}'] == 2  # two tries, both recorded
    assert figures['sluice_node_state{node="Flaky",pipeline="flaky",state="FAILED"}'] == 1
    assert figures['sluice_node_duration_seconds{node="Flaky",pipeline="flaky"}'] == pytest.approx(
        flaky.update_time - flaky.create_time)
    assert not any(k.startswith('sluice_last_success_timestamp_seconds') for k in figures)  # never succeeded

    resumed = LocalDagRunner(progress=False).resume(pipeline, failed.run_id)
    assert resumed.state == 'COMPLETE'
    figures = parse(path.read_text())
    records = store.executions(failed.run_id)
    assert figures[f'sluice_run_info{{pipeline="flaky",run_id="{failed.run_id}",state="COMPLETE"}}'] == 1
    assert figures['sluice_node_attempts{node="Flaky",pipeline="flaky"}'] == 3 == sum(
        1 for r in records if r.node_id == 'Flaky')  # the resume's try added, nothing counted twice
    assert figures['sluice_node_state{node="Flaky",pipeline="flaky",state="COMPLETE"}'] == 1
    assert figures['sluice_run_nodes{pipeline="flaky",state="COMPLETE"}'] == 2
    assert figures['sluice_last_success_timestamp_seconds{pipeline="flaky"}'] == pytest.approx(
        max(r.update_time for r in records), abs=1e-3)
    assert figures['sluice_run_duration_seconds{pipeline="flaky"}'] == pytest.approx(
        max(r.update_time for r in records) - store.run(failed.run_id).create_time)
    assert as_prometheus_client_writes_it(path.read_text()) == path.read_text()
    assert os.listdir(path.parent) == ['flaky.prom']  # no temporary file left beside it


def reference_last_success(store, pipeline):
    """What sluice_last_success_timestamp_seconds means, read the plain way: the end of the newest
    COMPLETE run (by start) among all the pipeline's runs."""
    for run in store.runs_newest_first(pipeline):
        if run.state == 'COMPLETE':
            return max([ex.update_time for ex in run.executions] or [run.create_time])
    return None


def test_last_success_is_the_run_started_last_even_when_an_older_run_is_resumed_after_it(tmp_path, monkeypatch):
    """Run A fails, run B (started after it) succeeds, then A is resumed and succeeds: A's figures
    say B's end as the last success, since B started last; the store is read as far as needed."""
    path = tmp_path / 'metrics' / 'flaky.prom'
    monkeypatch.setenv('SLUICE_METRICS_FILE', str(tmp_path / 'metrics' / '{pipeline}.prom'))
    pipeline = flaky_pipeline(tmp_path, fail_times=2)
    first = LocalDagRunner(progress=False).run(pipeline)
    assert first.state == 'FAILED'
    second = LocalDagRunner(progress=False).run(pipeline)
    assert second.state == 'COMPLETE'
    store = MetadataStore(pipeline.metadata)
    second_end = max(ex.update_time for ex in store.executions(second.run_id))
    assert parse(path.read_text())['sluice_last_success_timestamp_seconds{pipeline="flaky"}'] == pytest.approx(
        second_end, abs=1e-3)
    resumed = LocalDagRunner(progress=False).resume(pipeline, first.run_id)
    assert resumed.state == 'COMPLETE'
    figures = parse(path.read_text())
    assert figures[f'sluice_run_info{{pipeline="flaky",run_id="{first.run_id}",state="COMPLETE"}}'] == 1
    assert figures['sluice_last_success_timestamp_seconds{pipeline="flaky"}'] == pytest.approx(second_end, abs=1e-3)
    assert reference_last_success(store, 'flaky') == pytest.approx(second_end, abs=1e-3)
    first_end = max(ex.update_time for ex in store.executions(first.run_id))
    assert first_end > second_end and figures['sluice_run_duration_seconds{pipeline="flaky"}'] == pytest.approx(
        first_end - store.run(first.run_id).create_time)
    assert last_success(store, 'flaky') == pytest.approx(second_end, abs=1e-3)


def test_the_runs_are_read_newest_first_a_page_at_a_time_as_the_store_orders_them():
    """The order of MetadataStore.runs_newest_first (creation time, then name for runs registered in
    the same millisecond), whatever the page boundaries: pages of filter queries from the newest run,
    or first a window of the contexts created since a given run."""
    store = MetadataStore(None)
    for i in range(60):
        store.register_run('a' if i % 3 else 'b', f'run-{(i * 37) % 60:02d}', {'node_ids': '[]'})
    want = [r.run_id for r in reversed(store.runs())]
    assert len({r.create_time for r in store.runs()}) < 60  # some share a millisecond
    for first_page in (1, 2, 5, 100):
        assert [c.name for c, _ in _runs_newest_first(store, first_page=first_page)] == want
    for since in (want[0], want[1], want[30], want[-1]):  # from the contexts created since a run, then pages
        for window in (1, 2, 3, 16, 1024):
            newest = newest_contexts(store, since, window=window)
            assert newest.run.name == since
            assert [c.name for c, _ in _runs_newest_first(store, newest, first_page=2)] == want
    assert [c.name for c, p in _runs_newest_first(store) if p == 'b'] == [
        r.run_id for r in store.runs_newest_first('b')]
    assert last_success(store, 'a') is None  # no run has executions: none is COMPLETE


def test_the_textfile_is_what_prometheus_clients_generate_latest_writes_for_the_same_figures(tmp_path):
    """Written without prometheus_client, checked with it: its parser reads the file back to the
    same figures, and its generate_latest writes the same bytes for them: escapes in label values
    (backslash, double quote, newline) and help texts, Go's float format, and the order of metrics
    and label sets."""
    from prometheus_client import CollectorRegistry, Gauge, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    tricky = 'a "quoted" C:\\path\\ and a\nnewline, ünïcode'
    figures = [
        ('sluice_a', 'Plain.', 1, {'pipeline': 'p'}),
        ('sluice_b', 'Help with a backslash \\ and a\nnewline.', 0.5, {'pipeline': 'p', 'node': tricky}),
        ('sluice_b', 'Help with a backslash \\ and a\nnewline.', -2, {'node': 'n2', 'pipeline': 'p'}),
        ('sluice_a', 'Plain.', 3, {'pipeline': 'q'}),
        ('sluice_c', 'Numbers.', 1796314688, {'v': 'big int'}),
        ('sluice_c', 'Numbers.', 1796314688.123, {'v': 'timestamp'}),
        ('sluice_c', 'Numbers.', 123456.0, {'v': 'six digits'}),
        ('sluice_c', 'Numbers.', 1234567.0, {'v': 'seven digits'}),
        ('sluice_c', 'Numbers.', 1e-7, {'v': 'small'}),
        ('sluice_c', 'Numbers.', 1e22, {'v': 'huge'}),
        ('sluice_c', 'Numbers.', -1234567.0, {'v': 'negative'}),
        ('sluice_c', 'Numbers.', 0.1 + 0.2, {'v': 'repr'}),
        ('sluice_c', 'Numbers.', float('inf'), {'v': '+inf'}),
        ('sluice_c', 'Numbers.', float('-inf'), {'v': '-inf'}),
        ('sluice_c', 'Numbers.', float('nan'), {'v': 'nan'}),
        ('sluice_c', 'Numbers.', True, {'v': 'bool'}),
        ('sluice_a', 'Plain.', 7, {'pipeline': 'p'}),  # set again: keeps its place, takes the value
        ('sluice_d', 'No labels.', 42, {}),
    ]
    ours, registry, gauges = Gauges(), CollectorRegistry(), {}
    for name, doc, value, labels in figures:
        ours.set(name, doc, value, **labels)
        if name not in gauges:
            gauges[name] = Gauge(name, doc, sorted(labels), registry=registry)
        (gauges[name].labels(**{k: str(v) for k, v in labels.items()}) if labels else gauges[name]).set(value)
    reference = generate_latest(registry).decode()
    assert ours.text() == reference
    assert 'node="a \\"quoted\\" C:\\\\path\\\\ and a\\nnewline, ünïcode"' in reference
    assert '1.796314688e+09' in reference and '+Inf' in reference and 'NaN' in reference

    assert publish(ours, 'p', metrics_file=str(tmp_path / 'out' / '{pipeline}.prom')) == []
    written = (tmp_path / 'out' / 'p.prom').read_bytes()
    assert written == reference.encode()
    assert os.listdir(tmp_path / 'out') == ['p.prom']
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(tmp_path / 'out' / 'p.prom').st_mode & 0o777 == 0o666 & ~umask

    def samples(text):
        return [(f.name, f.documentation, s.name, s.labels, 'NaN' if s.value != s.value else s.value)
                for f in text_string_to_metric_families(text) for s in f.samples]
    read = samples(written.decode())
    assert read == samples(reference)
    assert ('sluice_b', 'Help with a backslash \\ and a\nnewline.', 'sluice_b', {'node': tricky, 'pipeline': 'p'},
            0.5) in read
    assert as_prometheus_client_writes_it(written.decode()) == reference

    with pytest.raises(ValueError):  # as prometheus_client refuses it
        ours.set('sluice_a', 'Plain.', 1, pipeline='p', node='n')
    with pytest.raises(ValueError):
        Gauges().set('sluice-bad', 'Bad name.', 1)

    each, one_by_one = Gauges(), Gauges()  # set_each: one label varying, the others written once
    for varying, shared in (('state', {'pipeline': 'p', 'node': tricky}), ('a', {'pipeline': 'p'}),
                            ('m', {'z': 'x', 'b': 'y'}), ('only', {})):
        values = {'COMPLETE': 1, tricky: 0.5, 'x': 3}
        each.set_each(f'sluice_e_{varying}', 'Each.', varying, values, **shared)
        for key, value in values.items():
            one_by_one.set(f'sluice_e_{varying}', 'Each.', value, **shared, **{varying: key})
    each.set_each('sluice_e_a', 'Each.', 'a', {'COMPLETE': 9}, pipeline='p')  # set again: keeps its place
    one_by_one.set('sluice_e_a', 'Each.', 9, pipeline='p', a='COMPLETE')
    assert each.text() == one_by_one.text() and 'sluice_e_a{a="COMPLETE",pipeline="p"} 9.0' in each.text()
    with pytest.raises(ValueError):
        each.set_each('sluice_e_state', 'Each.', 'state', {'x': 1}, pipeline='p')


@contextlib.contextmanager
def receiver(failures: int):
    """An HTTP server on loopback that answers 500 to the first ``failures`` posts, then 200."""
    posts: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            posts.append(json.loads(self.rfile.read(int(self.headers['Content-Length']))))
            self.send_response(500 if len(posts) <= failures else 200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f'http://127.0.0.1:{server.server_address[1]}/hook', posts
    finally:
        server.shutdown()
        server.server_close()


def test_a_failure_notice_reaches_a_webhook_that_fails_twice_and_a_broken_callback_changes_nothing(tmp_path):
    seen = []

    def broken(notice):
        raise RuntimeError('the chat service is down')

    with receiver(failures=2) as (url, posts):
        pipeline = flaky_pipeline(tmp_path, fail_times=5, on_failure=[broken, Webhook(url, delay=0.05), seen.append],
                                  on_success=[seen.append])
        result = LocalDagRunner(progress=False).run(pipeline)
    assert result.state == 'FAILED'
    assert len(posts) == 3 and posts[0] == posts[2]  # retried until the receiver answered
    notice = posts[-1]
    assert notice['run_id'] == result.run_id and notice['state'] == 'FAILED' and notice['pipeline'] == 'flaky'
    assert notice['nodes'] == {'Flaky': 'FAILED', 'Upper': 'SKIPPED'}
    assert notice['failed'][0]['node'] == 'Flaky' and 'worker blipped (call 2)' in notice['failed'][0]['error']
    assert notice['resume_command'] == f"sluice resume {result.run_id} --metadata sqlite:///{tmp_path}/m.db"
    assert [n.run_id for n in seen] == [result.run_id]  # the callback after the broken one still ran


def test_a_webhooks_secret_url_and_token_are_neither_stored_nor_printed_and_redirects_are_not_followed(
        tmp_path, caplog):
    import base64
    moved = []

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            self.send_response(302)
            self.send_header('Location', 'http://127.0.0.1:%d/elsewhere' % self.server.server_address[1])
            self.end_headers()

        def do_GET(self):  # noqa: N802 - a followed redirect would arrive here, with the token
            moved.append(self.headers.get('Authorization'))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f'http://127.0.0.1:{server.server_address[1]}/services/T0/B0/SECRETPATH'
    try:
        hook = Webhook(url, headers={'Authorization': 'Bearer TOPSECRET'}, attempts=1)
        pipeline = flaky_pipeline(tmp_path, fail_times=5, on_failure=[hook])
        result = LocalDagRunner(progress=False).run(pipeline)
    finally:
        server.shutdown()
        server.server_close()
    assert result.state == 'FAILED' and moved == []  # the redirect was not followed, the token not carried
    stored = base64.b64decode(MetadataStore(pipeline.metadata).run(result.run_id).properties['pipeline_pickle'])
    assert b'SECRETPATH' not in stored and b'TOPSECRET' not in stored
    said = caplog.text
    assert 'answered 302, a redirect (not followed' in said and 'SECRETPATH' not in said and 'TOPSECRET' not in said


def test_the_pushgateway_gets_the_text_with_basic_auth_and_a_refusal_is_said_without_the_password():
    """The push as it goes over the wire (a recording server on loopback): POST of the same text the
    metrics file holds, under the URL's own path, the password sent as basic auth; a refusal (HTTP 500)
    is one problem that names the status and not the password."""
    import base64
    seen = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers['Content-Length']))
            seen.append((self.path, self.headers.get('Authorization'), self.headers.get('Content-Type'), body))
            self.send_response(500 if len(seen) > 1 else 200)
            self.end_headers()
            self.wfile.write(b'storage full' if len(seen) > 1 else b'')

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f'http://ops:s3cr%40t@127.0.0.1:{server.server_address[1]}/gateway'
    figures = Gauges()
    figures.set('sluice_run_success', 'Whether the run succeeded.', 0, pipeline='penguin')
    try:
        assert publish(figures, 'penguin', pushgateway=url) == []
        [problem] = publish(figures, 'penguin', pushgateway=url)
    finally:
        server.shutdown()
        server.server_close()
    path, auth, kind, body = seen[0]
    assert path == '/gateway/metrics/job/sluice/pipeline/penguin'
    assert base64.b64decode(auth.split()[1]).decode() == 'ops:s3cr@t'
    assert kind == 'text/plain; version=0.0.4; charset=utf-8' and body.decode() == figures.text()
    assert problem == (f'the metrics could not be pushed to the Pushgateway at http://127.0.0.1:'
                       f'{server.server_address[1]}/...: OSError: HTTP 500 Internal Server Error: storage full')
    assert 's3cr' not in problem


def test_a_push_answered_but_left_open_returns_at_once_and_a_non_http_answer_is_a_clear_error():
    """The push's own HTTP client (sluice.observe.push.post, not http.client): an answer is complete at
    its Content-Length even when the server keeps the connection open; what is not HTTP is said so."""
    import socket
    import urllib.parse
    from sluice.observe.push import post

    def serve(answer, keep_open):
        listener = socket.create_server(('127.0.0.1', 0))
        got = []

        def one():
            connection, _ = listener.accept()
            with connection:
                data = b''
                while b'\r\n\r\n' not in data or len(data.partition(b'\r\n\r\n')[2]) < 4:
                    data += connection.recv(4096)
                got.append(data)
                connection.sendall(answer)
                time.sleep(keep_open)
            listener.close()

        threading.Thread(target=one, daemon=True).start()
        return urllib.parse.urlsplit(f'http://127.0.0.1:{listener.getsockname()[1]}'), got

    parts, got = serve(b'HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok', keep_open=5)
    started = time.monotonic()
    assert post(parts, '/metrics/job/x', b'body', {'Content-Type': 'text/plain'}, timeout=8) == (202, 'Accepted', 'ok')
    assert time.monotonic() - started < 3
    request = got[0].decode()
    assert request.startswith('POST /metrics/job/x HTTP/1.1\r\n') and request.endswith('\r\n\r\nbody')
    assert f'Host: 127.0.0.1:{parts.port}\r\n' in request and 'Content-Length: 4\r\n' in request

    parts, _ = serve(b'SSH-2.0-OpenSSH_9.2\r\n', keep_open=0)
    with pytest.raises(OSError, match=r"not an HTTP answer: b'SSH-2.0-OpenSSH_9.2'"):
        post(parts, '/metrics/job/x', b'body', {}, timeout=8)


def test_the_push_connects_to_an_ip_address_as_written_and_to_a_host_name_looked_up_when_the_run_started(
        monkeypatch):
    """An IP address is connected to without a lookup (getaddrinfo's first call in a process costs a
    millisecond and more); a host name is looked up in a thread by before_run, and the push connects to
    what it found, looking the name up again only when that is older than RESOLVED_FOR; both push the
    same text, and a refused connection is said, not raised."""
    import socket
    from sluice.observe import before_run, push
    seen, looked_up = [], []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            seen.append((self.path, self.rfile.read(int(self.headers['Content-Length']))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    real = socket.getaddrinfo

    def counting(host, *args, **kwargs):
        looked_up.append((host, 'ahead' if threading.current_thread() is not threading.main_thread() else 'push'))
        return real(host, *args, **kwargs)

    def wait_for_lookup(ahead):
        if not isinstance(ahead, tuple):  # the lock held while looking
            assert ahead.acquire(timeout=10)
            ahead.release()

    monkeypatch.setattr(socket, 'getaddrinfo', counting)
    monkeypatch.setattr(push, '_ahead', {})
    assert push._literal('127.0.0.1') == socket.AF_INET and push._literal('::1') == socket.AF_INET6
    assert push._literal('localhost') is None and push._literal('fe80::1%eth0') is None
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    figures = Gauges()
    figures.set('sluice_run_success', 'Whether the run succeeded.', 1, pipeline='penguin')
    try:
        monkeypatch.setenv('SLUICE_PUSHGATEWAY', f'http://127.0.0.1:{port}')
        before_run()  # nothing to look up
        assert publish(figures, 'penguin') == [] and looked_up == [] and push._ahead == {}

        monkeypatch.setenv('SLUICE_PUSHGATEWAY', f'http://localhost:{port}/gateway')
        before_run()
        wait_for_lookup(push._ahead[('localhost', port)])
        assert looked_up == [('localhost', 'ahead')]
        assert publish(figures, 'penguin') == [] and len(looked_up) == 1  # connected to what was found ahead

        before_run()  # found a moment ago: not looked up again
        assert len(looked_up) == 1
        monkeypatch.setattr(push, 'RESOLVED_FOR', 0.0)  # found too long ago: looked up again
        assert publish(figures, 'penguin') == [] and looked_up[1] == ('localhost', 'push')
        before_run()  # and ahead again for the next run of a process (sluice watch)
        wait_for_lookup(push._ahead[('localhost', port)])
        assert looked_up[2] == ('localhost', 'ahead')
    finally:
        server.shutdown()
        server.server_close()
    assert [path for path, _ in seen] == ['/metrics/job/sluice/pipeline/penguin'] + \
        ['/gateway/metrics/job/sluice/pipeline/penguin'] * 2
    assert {body.decode() for _, body in seen} == {figures.text()}

    closed = free_port()
    [problem] = publish(figures, 'penguin', pushgateway=f'http://127.0.0.1:{closed}/secret-path')
    assert problem.startswith(f'the metrics could not be pushed to the Pushgateway at http://127.0.0.1:{closed}/...: '
                              'ConnectionRefusedError') and 'secret-path' not in problem


def test_a_runs_push_is_sent_while_its_lease_is_held_and_its_answer_read_after_the_release(tmp_path, monkeypatch):
    """The end of a run sends its push before the run's lease is released (the Pushgateway takes it in
    meanwhile) and reads the answer after, with the text the metrics file holds; a refusal is said
    after the run's outcome line, and the run's outcome stands."""
    from sluice.observe import push
    from sluice.orchestration.lease import Lease
    from sluice.orchestration.run import Progress
    arrived, order, said = [], [], []

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            arrived.append(self.rfile.read(int(self.headers['Content-Length'])).decode())
            time.sleep(0.2)
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b'full')

        def log_message(self, *args):
            pass

    class Said(Progress):
        def say(self, text, outcome=False):
            said.append(text)

    real_send, real_release = push.send, Lease.release

    def send(*args):
        order.append('sent')
        wait = real_send(*args)
        return lambda: order.append('answer read') or wait()

    def release(self):
        order.append(f'lease {self.record.scope} released')
        real_release(self)

    monkeypatch.setattr(push, 'send', send)
    monkeypatch.setattr(Lease, 'release', release)
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv('SLUICE_PUSHGATEWAY', f'http://127.0.0.1:{server.server_address[1]}')
    monkeypatch.setenv('SLUICE_METRICS_FILE', str(tmp_path / 'metrics' / '{pipeline}.prom'))
    pipeline = flaky_pipeline(tmp_path, fail_times=0)
    try:
        result = LocalDagRunner(progress=Said(enabled=False)).run(pipeline)
    finally:
        server.shutdown()
        server.server_close()
    assert result.state == 'COMPLETE'
    order = [x for x in order if x in ('sent', 'answer read', f'lease {result.run_id} released')]
    assert order[:3] == ['sent', f'lease {result.run_id} released', 'answer read'] and 'sent' not in order[3:]
    assert arrived == [(tmp_path / 'metrics' / 'flaky.prom').read_text()]
    assert said[-2].startswith(f'Run {result.run_id} COMPLETE in ')
    assert said[-1] == (f'Note: the metrics could not be pushed to the Pushgateway at http://127.0.0.1:'
                        f'{server.server_address[1]}: OSError: HTTP 500 Internal Server Error: full (the run is not '
                        'affected).')


def test_the_run_span_is_the_one_registered_with_the_run_and_its_context_is_not_read_back(tmp_path, monkeypatch):
    """The process that registers a run hands the trace context it registered the run with to its own
    span (not read back from the store); a resume reads it from the store, and its span is a child of
    that span, in the same trace."""
    reads = []
    real = MetadataStore.run_properties
    monkeypatch.setattr(MetadataStore, 'run_properties',
                        lambda self, run_id: reads.append(run_id) or real(self, run_id))
    for name in ('OTEL_TRACES_EXPORTER', 'OTEL_SDK_DISABLED'):
        monkeypatch.delenv(name, raising=False)
    pipeline = flaky_pipeline(tmp_path, fail_times=2)
    failed = LocalDagRunner(progress=False).run(pipeline)
    assert failed.state == 'FAILED' and reads == []
    stored = MetadataStore(pipeline.metadata).run(failed.run_id).properties['trace_context']
    _, trace_id, span_id, _ = stored.split('-')
    trace = tmp_path / 'root' / '.sluice-logs' / f'{failed.run_id}.trace.jsonl'
    [run_span] = [json.loads(x) for x in trace.read_text().splitlines() if '"sluice run flaky"' in x]
    assert run_span['context'] == {'trace_id': f'0x{trace_id}', 'span_id': f'0x{span_id}'}
    assert run_span['parent_id'] is None

    assert LocalDagRunner(progress=False).resume(pipeline, failed.run_id).state == 'COMPLETE'
    assert reads == [failed.run_id]
    lines = trace.read_text().splitlines()
    spans = [json.loads(x) for x in lines]
    [resumed] = [s for s in spans if s['name'] == 'sluice resume']
    assert resumed['parent_id'] == f'0x{span_id}' and {s['context']['trace_id'] for s in spans} == {f'0x{trace_id}'}
    assert lines == [json.dumps(s) for s in spans]  # each line as json.dumps writes the span


def test_a_webhook_that_never_answers_gives_up_without_raising():
    url = f'http://127.0.0.1:{free_port()}/nobody'
    from sluice.observe.notify import RunNotice
    notice = RunNotice('p', 'r', 'FAILED', {}, [], '', '')
    started = time.monotonic()
    assert Webhook(url, attempts=3, delay=0.05, timeout=1)(notice) is False
    assert time.monotonic() - started < 5


def test_alert_rules_pass_promtool():
    promtool = shutil.which('promtool')
    if promtool is None:
        pytest.fail("promtool not found: install Debian's 'prometheus' package (make test does)")
    done = subprocess.run([promtool, 'check', 'rules', RULES], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'SUCCESS: 5 rules found' in done.stdout


@contextlib.contextmanager
def process(args, log):
    with open(log, 'w') as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def wait_for(check, what, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
        except OSError:
            found = None
        if found:
            return found
        time.sleep(0.25)
    raise AssertionError(f'timed out waiting for {what}')


def get_json(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def test_prometheus_scrapes_the_pushgateway_after_a_failed_run_and_the_failure_alert_fires(tmp_path, monkeypatch):
    gateway_port, prometheus_port = free_port(), free_port()
    config = tmp_path / 'prometheus.yml'
    config.write_text(f'''global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ['{RULES}']
scrape_configs:
  - job_name: pushgateway
    honor_labels: true
    static_configs: [{{targets: ['127.0.0.1:{gateway_port}']}}]
''')
    with process(['prometheus-pushgateway', f'--web.listen-address=127.0.0.1:{gateway_port}'],
                 tmp_path / 'gateway.log'), \
            process(['prometheus', f'--config.file={config}', f'--storage.tsdb.path={tmp_path / "tsdb"}',
                     f'--web.listen-address=127.0.0.1:{prometheus_port}'], tmp_path / 'prometheus.log'):
        gateway, prometheus = f'http://127.0.0.1:{gateway_port}', f'http://127.0.0.1:{prometheus_port}'
        wait_for(lambda: urllib.request.urlopen(gateway + '/-/ready', timeout=2).status == 200, 'the Pushgateway')
        monkeypatch.setenv('SLUICE_PUSHGATEWAY', gateway)
        result = LocalDagRunner(progress=False).run(flaky_pipeline(tmp_path, fail_times=5))
        assert result.state == 'FAILED'
        with urllib.request.urlopen(gateway + '/metrics', timeout=5) as response:
            pushed = response.read().decode()
        assert 'sluice_run_success{instance="",job="sluice",pipeline="flaky"} 0' in pushed
        # A grouping value a path segment cannot carry (a '/') goes base64-encoded; the gateway decodes it.
        figures = Gauges()
        figures.set('sluice_run_success', 'Whether the run succeeded.', 1, pipeline='team/penguin')
        assert publish(figures, 'team/penguin', pushgateway=gateway + '/') == []
        with urllib.request.urlopen(gateway + '/metrics', timeout=5) as response:
            assert 'sluice_run_success{instance="",job="sluice",pipeline="team/penguin"} 1' in response.read().decode()
        firing = wait_for(lambda: [a for a in get_json(prometheus + '/api/v1/alerts')['data']['alerts']
                                   if a['labels']['alertname'] == 'SluiceRunFailed' and a['state'] == 'firing'],
                          'the SluiceRunFailed alert to fire')
        assert firing[0]['labels']['pipeline'] == 'flaky'
        assert result.run_id in firing[0]['annotations']['description']


def test_spans_go_to_an_opentelemetry_exporter_when_one_is_named_and_nowhere_with_none(tmp_path):
    """The default trace file is written without OpenTelemetry's SDK (it is not even imported), and
    the metrics file without prometheus_client; an exporter named in OTEL_TRACES_EXPORTER gets the
    same spans through the SDK, in the run's stored trace; ``none`` writes no trace and the run still
    keeps its trace context."""
    script = tmp_path / 'traced.py'
    script.write_text(f'''
import json, sys
sys.path.insert(0, {os.path.dirname(os.path.dirname(os.path.abspath(__file__)))!r})
from sluice import LocalDagRunner, Pipeline
from dummies import Source, Upper
source = Source(input_base={str(tmp_path)!r} + '/input')
pipeline = Pipeline('traced', {str(tmp_path)!r} + '/root-' + sys.argv[1], [source, Upper(text=source.outputs['text'])],
                    metadata='sqlite:///' + {str(tmp_path)!r} + '/m-' + sys.argv[1] + '.db')
result = LocalDagRunner(progress=False).run(pipeline)
from sluice.metadata import MetadataStore
print('RESULT', json.dumps([result.run_id, result.state, str(MetadataStore(pipeline.metadata).run(result.run_id)
      .properties['trace_context']), 'opentelemetry.sdk.trace' in sys.modules, 'prometheus_client' in sys.modules]))
''')
    (tmp_path / 'input').mkdir()
    (tmp_path / 'input' / 'a.txt').write_text('hello')

    def run(side, exporter, metrics_file=None):
        env = {**os.environ, 'OTEL_TRACES_EXPORTER': exporter} if exporter else \
            {k: v for k, v in os.environ.items() if k != 'OTEL_TRACES_EXPORTER'}
        env.pop('SLUICE_PUSHGATEWAY', None)
        if metrics_file:
            env['SLUICE_METRICS_FILE'] = metrics_file
        proc = subprocess.run([sys.executable, str(script), side], capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        line = next(x for x in proc.stdout.splitlines() if x.startswith('RESULT '))
        run_id, state, context, sdk, prometheus_client = json.loads(line[len('RESULT '):])
        assert state == 'COMPLETE'
        assert not prometheus_client  # the metrics file is written without it
        return proc.stdout.replace(line, ''), run_id, context.split('-')[1], sdk

    _, run_id, trace_id, sdk = run('file', None, metrics_file=str(tmp_path / 'metrics' / '{pipeline}.prom'))
    assert not sdk
    assert f'sluice_run_info{{pipeline="traced",run_id="{run_id}",state="COMPLETE"}} 1.0' in (
        tmp_path / 'metrics' / 'traced.prom').read_text()
    spans = [json.loads(x) for x in (tmp_path / 'root-file' / '.sluice-logs' / f'{run_id}.trace.jsonl').read_text().splitlines()]
    assert [s['name'] for s in spans] == ['Source', 'Upper', 'sluice run traced']
    assert {s['context']['trace_id'] for s in spans} == {f'0x{trace_id}'}

    out, run_id, trace_id, sdk = run('console', 'console')
    assert sdk
    printed = json.loads('[' + out.strip().replace('}\n{', '},\n{') + ']')  # the SDK's console exporter
    assert sorted(s['name'] for s in printed) == ['Source', 'Upper', 'sluice run traced']
    assert {s['context']['trace_id'] for s in printed} == {f'0x{trace_id}'}
    assert {s['attributes']['sluice.state'] for s in printed} == {'COMPLETE'}
    assert not (tmp_path / 'root-console' / '.sluice-logs' / f'{run_id}.trace.jsonl').exists()

    _, run_id, trace_id, sdk = run('none', 'none')
    assert not sdk and int(trace_id, 16)
    assert not (tmp_path / 'root-none' / '.sluice-logs' / f'{run_id}.trace.jsonl').exists()


def test_span_times_are_written_as_datetime_writes_them():
    import datetime
    import math
    import random

    from sluice.observe.trace import _iso

    rng = random.Random(25)
    for i in range(20000):
        seconds = rng.uniform(0, 4e9)
        if i % 2:  # near a second's end or start, and on microsecond halves: rounding and carrying
            seconds = math.floor(seconds) + rng.choice([0.9999995, 0.9999994999, 0.9999996, 0.0000005, 0.0000015,
                                                        0.0000025, 0.0, 0.5])
        assert _iso(seconds) == datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime(
            '%Y-%m-%dT%H:%M:%S.%fZ'), repr(seconds)
