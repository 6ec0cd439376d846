"""Watching runs without reading logs: the metrics file after a failure, retries and a resume (values
from ML-Metadata), a real Pushgateway scraped by a real Prometheus whose shipped alert fires, and
failure notices through a webhook that fails twice before it answers."""
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


def test_the_metrics_file_follows_a_failure_retries_and_a_resume_with_the_stores_figures(tmp_path, monkeypatch):
    path = tmp_path / 'metrics' / 'flaky.prom'
    monkeypatch.setenv('SLUICE_METRICS_FILE', str(tmp_path / 'metrics' / '{pipeline}.prom'))
    pipeline = flaky_pipeline(tmp_path, fail_times=2)
    failed = LocalDagRunner(progress=False).run(pipeline)
    assert failed.state == 'FAILED'
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
        max(r.update_time for r in records))
    assert figures['sluice_run_duration_seconds{pipeline="flaky"}'] == pytest.approx(
        max(r.update_time for r in records) - store.run(failed.run_id).create_time)


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
        firing = wait_for(lambda: [a for a in get_json(prometheus + '/api/v1/alerts')['data']['alerts']
                                   if a['labels']['alertname'] == 'SluiceRunFailed' and a['state'] == 'firing'],
                          'the SluiceRunFailed alert to fire')
        assert firing[0]['labels']['pipeline'] == 'flaky'
        assert result.run_id in firing[0]['annotations']['description']


def test_spans_go_to_an_opentelemetry_exporter_when_one_is_named_and_nowhere_with_none(tmp_path):
    """The default trace file is written without OpenTelemetry's SDK (it is not even imported); an
    exporter named in OTEL_TRACES_EXPORTER gets the same spans through the SDK, in the run's stored
    trace; ``none`` writes no trace and the run still keeps its trace context."""
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
      .properties['trace_context']), 'opentelemetry.sdk.trace' in sys.modules]))
''')
    (tmp_path / 'input').mkdir()
    (tmp_path / 'input' / 'a.txt').write_text('hello')

    def run(side, exporter):
        env = {**os.environ, 'OTEL_TRACES_EXPORTER': exporter} if exporter else \
            {k: v for k, v in os.environ.items() if k != 'OTEL_TRACES_EXPORTER'}
        proc = subprocess.run([sys.executable, str(script), side], capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        line = next(x for x in proc.stdout.splitlines() if x.startswith('RESULT '))
        run_id, state, context, sdk = json.loads(line[len('RESULT '):])
        assert state == 'COMPLETE'
        return proc.stdout.replace(line, ''), run_id, context.split('-')[1], sdk

    _, run_id, trace_id, sdk = run('file', None)
    assert not sdk
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
