"""``sluice serve`` as a user runs it: a real server process on loopback, in front of destinations the
example pipeline pushed to, changed by pushes, rollbacks, promotions and hands; and the InfraValidator,
which starts one on the candidate before the Pusher. (One file: its tests share one session fixture,
two pipeline runs, and pytest-xdist gives a file to one worker.)"""
from __future__ import annotations

import glob
import json
import os
import pathlib
import shutil
import subprocess
import sys
import threading
import time

import numpy as np

import pytest
import shared_runs
from serving_helpers import INFRA_PENGUIN, PENGUIN, call, promote, serving, sluice

from sluice.components.infra_validator import InfraValidatorExecutor
from sluice.metadata.artifact import Examples, InfraBlessing, Model, OnnxModel

FEATURES = ['body_mass_g', 'culmen_depth_mm', 'culmen_length_mm', 'flipper_length_mm']
ROW = {'culmen_length_mm': 0.25, 'culmen_depth_mm': 0.67, 'flipper_length_mm': 0.15, 'body_mass_g': 0.29}


# The models: two real penguin models pushed by the example pipeline (trained twice, so their files
# differ; the second time through an InfraValidator). Here, not in a conftest.py: tests elsewhere import
# tests/conftest.py by its module name, which a second conftest would shadow.
@pytest.fixture(scope='session')
def penguin_run(tmp_path_factory) -> str:
    """A directory where the example penguin pipeline ran twice, the second time retraining, with an
    InfraValidator before the Pusher: its ``runs/penguin/serving`` holds two versions, two models whose
    files differ, each pushed by the Pusher. The second run's output is in ``second-run.txt``. Both runs
    are `sluice run` in this process (its main(), as shared_runs.command_in_process): a process of
    their own would import TensorFlow and Beam again, and nothing here is about the process."""
    where = tmp_path_factory.mktemp('penguin-serving')
    first = shared_runs.command_in_process('run', PENGUIN, '-q')(where)
    assert first['status'] == 0, first['stdout'][-3000:]
    second = shared_runs.command_in_process('run', INFRA_PENGUIN, '--no-cache', 'Trainer')(where)
    assert second['status'] == 0, second['stdout'][-3000:]
    (where / 'second-run.txt').write_text(second['stdout'])
    where = str(where)
    versions = sorted(os.listdir(os.path.join(where, 'runs', 'penguin', 'serving')))
    assert len([v for v in versions if v.isdigit()]) == 2, versions
    return where


@pytest.fixture
def models(penguin_run) -> list[tuple[str, str]]:
    """The two models, oldest first: each Model artifact's directory and its OnnxModel's (Trainer.onnx)."""
    found = []
    for node, key in (('Trainer', 'model'), ('Trainer.onnx', 'onnx_model')):
        root = os.path.join(penguin_run, 'runs', 'penguin', node, key)
        found.append([os.path.join(root, d) for d in sorted(os.listdir(root), key=int)])
    assert len(found[0]) == len(found[1]) == 2, found
    return list(zip(*found))


def _destination(penguin_run: str) -> str:
    return os.path.join(penguin_run, 'runs', 'penguin', 'serving')


def _eval_examples(penguin_run: str) -> list[bytes]:
    import tensorflow as tf
    files = sorted(glob.glob(os.path.join(penguin_run, 'runs', 'penguin', 'CsvExampleGen', 'examples', '*',
                                          'Split-eval', '*')))
    assert files
    return [bytes(r) for r in tf.data.TFRecordDataset(files, compression_type='GZIP').as_numpy_iterator()]


def _saved_model_answers(version_dir: str, records: list[bytes]) -> np.ndarray:
    import tensorflow as tf
    serving_default = tf.saved_model.load(version_dir).signatures['serving_default']
    [name] = serving_default.structured_input_signature[1].keys()
    [out] = serving_default(**{name: tf.constant(records)}).values()
    return out.numpy()


def _rows(records: list[bytes]) -> list[dict]:
    from tensorflow.core.example import example_pb2
    rows = []
    for record in records:
        features = example_pb2.Example.FromString(record).features.feature
        rows.append({name: features[name].float_list.value[0] for name in FEATURES})
    return rows


def _versions(destination: str) -> list[int]:
    return sorted(int(d) for d in os.listdir(destination) if d.isdigit())


def test_answers_match_the_saved_models_on_the_eval_rows_in_every_request_form(penguin_run):
    destination = _destination(penguin_run)
    older, newer = _versions(destination)
    records = _eval_examples(penguin_run)
    rows = _rows(records)
    expected = _saved_model_answers(os.path.join(destination, str(newer)), records)
    with serving(destination) as server:
        status, body, headers = call(f'{server.url}/v1/models/penguin:predict', {'instances': rows})
        assert status == 200, body
        assert body['model_version'] == str(newer) and headers['x-model-version'] == str(newer)
        assert np.abs(np.array(body['predictions']) - expected).max() <= 1e-5

        columns = {name: [row[name] for row in rows] for name in FEATURES}
        status, body, _ = call(f'{server.url}/v1/models/penguin/versions/{newer}:predict', {'inputs': columns})
        assert status == 200 and np.abs(np.array(body['outputs']) - expected).max() <= 1e-5

        v2 = {'inputs': [{'name': n, 'shape': [len(rows), 1], 'datatype': 'FP32', 'data': columns[n]}
                         for n in FEATURES], 'id': 'r1'}
        status, body, _ = call(f'{server.url}/v2/models/penguin/infer', v2)
        assert status == 200 and body['model_version'] == str(newer) and body['id'] == 'r1'
        [out] = body['outputs']
        assert out['shape'] == list(expected.shape)
        assert np.abs(np.array(out['data']).reshape(expected.shape) - expected).max() <= 1e-5

        # The version in production before this one, by label and by number, answers as its own SavedModel.
        expected_older = _saved_model_answers(os.path.join(destination, str(older)), records)
        for path in ('labels/previous', f'versions/{older}'):
            status, body, _ = call(f'{server.url}/v1/models/penguin/{path}:predict', {'instances': rows})
            assert status == 200 and body['model_version'] == str(older), body
            assert np.abs(np.array(body['predictions']) - expected_older).max() <= 1e-5


def test_tf_serving_and_v2_shapes_and_the_errors_users_make(penguin_run):
    destination = _destination(penguin_run)
    newer = str(_versions(destination)[-1])
    with serving(destination) as server:
        url = f'{server.url}/v1/models/penguin'
        assert call(url)[:2] == (200, {'model_version_status': [
            {'version': newer, 'state': 'AVAILABLE', 'status': {'error_code': 'OK', 'error_message': ''}}]})
        status, meta, _ = call(url + '/metadata')
        signature = meta['metadata']['signature_def']['signature_def']['serving_default']
        assert status == 200 and sorted(signature['inputs']) == FEATURES
        assert {s['dtype'] for s in signature['inputs'].values()} == {'DT_FLOAT'}
        assert signature['method_name'] == 'tensorflow/serving/predict'

        # Values bare or as one-element lists; a column from the CSV that is not an input (the label) is
        # answered and named.
        status, body, _ = call(url + ':predict', {'instances': [ROW, {k: [v] for k, v in ROW.items()},
                                                               {**ROW, 'species': 0}]})
        assert status == 200 and len(body['predictions']) == 3 and len(body['predictions'][0]) == 3
        assert body['predictions'][0] == body['predictions'][1] == body['predictions'][2]
        assert body['ignored_features'] == ['species']
        assert abs(sum(body['predictions'][0]) - 1) < 1e-5

        errors = [
            ({'instances': [{k: v for k, v in ROW.items() if k != 'body_mass_g'}]}, 400,
             'feature "body_mass_g" of instance 0 is missing: expected float32 (a number) (it is required)'),
            ({'instances': [{**ROW, 'culmen_length_mm': 'long'}]}, 400,
             'feature "culmen_length_mm" of instance 0: expected float32 (a number), got "long" (a string)'),
            ({'instances': [{**ROW, 'flipper_length_mm': True}]}, 400,
             'feature "flipper_length_mm" of instance 0: expected float32 (a number), got true (a boolean)'),
            ({'instances': [ROW], 'inputs': {}}, 400, 'give either "instances" (rows) or "inputs" (columns), not both'),
            ({'instances': []}, 400, '"instances" must be a non-empty list of rows, one object per example; got [] (a list)'),
            ({'inputs': {'body_mass_g': [1.0, 2.0], 'culmen_depth_mm': [1.0]}}, 400,
             '"inputs" must map each feature to a list of values, all of one non-zero length; got lengths '
             "{'body_mass_g': 2, 'culmen_depth_mm': 1}"),
            ({'rows': [ROW]}, 400, 'the request body has neither "instances" (rows) nor "inputs" (columns); keys: '
             "['rows']"),
        ]
        for request, code, message in errors:
            assert call(url + ':predict', request)[:2] == (code, {'error': message}), request
        assert call(url + ':predict', raw=b'') [:2] == (400, {'error': 'the request body is empty: send a JSON object, '
                                                                        'e.g. {"instances": [{...}]}'})
        status, body, _ = call(url + ':predict', raw=b'{"instances": [')
        assert status == 400 and body['error'].startswith('the request body is not JSON: ')
        # Values JSON or float32 cannot hold are the client's mistake (400), never a server error (500).
        status, body, _ = call(url + ':predict', raw=b'{"instances": [{"body_mass_g": NaN}]}')
        assert status == 400 and 'NaN is not a JSON number' in body['error']
        status, body, _ = call(url + ':predict', {'instances': [{**ROW, 'body_mass_g': 1e39}]})
        assert (status, body['error']) == (400, 'feature "body_mass_g" of row 0: 1e+39 is outside float32\'s range')
        status, body, _ = call(f'{server.url}/v2/models/penguin/infer', {'inputs': [
            {'name': n, 'shape': ['a'], 'datatype': 'FP32', 'data': [0.5]} for n in FEATURES]})
        assert status == 400 and 'does not hold the 1 values given (a list of whole numbers' in body['error']
        status, body, _ = call(url + ':predict', raw=b' ' * (10 << 20))
        assert status == 413 and 'this server takes at most 8388608' in body['error']
        assert call(f'{server.url}/v1/models/pinguin:predict', {'instances': [ROW]})[:2] == (
            404, {'error': 'no model "pinguin" here: this server serves "penguin"'})
        status, body, _ = call(url + '/versions/7:predict', {'instances': [ROW]})
        assert status == 404 and body['error'].startswith(f'no version 7 at {destination}; versions: ')
        assert call(url + ':classify', {'instances': [ROW]})[0] == 400
        v2 = f'{server.url}/v2/models/penguin'
        status, body, _ = call(v2 + '/infer', {'inputs': [{'name': 'body_mass_g', 'shape': [1, 1],
                                                           'datatype': 'BYTES', 'data': ['x']}]})
        assert (status, body) == (400, {'error': 'input "body_mass_g": expected datatype FP32, got \'BYTES\''})
        assert call(v2 + '/ready')[:2] == (200, {'name': 'penguin', 'version': newer, 'ready': True})
        assert call(f'{server.url}/v2/health/live')[:2] == (200, {'live': True})

        # After all of that, it still answers; /metrics counted the answers by status and version.
        assert call(url + ':predict', {'instances': [ROW]})[0] == 200
        metrics = server.metrics()
        assert f'sluice_serve_requests_total{{api="v1",code="400",model="penguin",version="{newer}"}} 8.0' in metrics
        assert 'sluice_serve_requests_total{api="v1",code="400",model="penguin",version="none"} 3.0' in metrics  # no JSON
        assert 'code="500"' not in metrics
        assert 'sluice_serve_requests_total{api="v1",code="413",model="penguin",version="none"} 1.0' in metrics
        [gauge] = [line for line in metrics.splitlines() if line.startswith('sluice_serve_model_version{')]
        assert gauge.startswith('sluice_serve_model_version{model="penguin"} ') and float(gauge.split()[1]) == int(newer)


def test_swaps_under_load_fail_no_request_and_answer_from_old_or_new(models, tmp_path):
    destination = str(tmp_path / 'dest')
    a, b = models
    first = promote(destination, a)
    answers: list[tuple[int, str]] = []
    stop = threading.Event()

    def load(url):
        for _ in range(3000):  # bounded in count and in time
            if stop.is_set():
                return
            status, body, _ = call(url + '/v1/models/penguin:predict', {'instances': [ROW] * 8})
            answers.append((status, body.get('model_version') or body.get('error')))

    with serving(destination, '--name', 'penguin') as server:
        threads = [threading.Thread(target=load, args=(server.url,)) for _ in range(4)]
        for t in threads:
            t.start()
        served = [first]
        try:  # the load is answered by the first version before anything changes (a slow start under load)
            server.wait_for(lambda: answers and answers[-1][1] == str(first), f'version {first} to answer', timeout=30)
            for change in (lambda: promote(destination, b), lambda: _rollback(destination),
                           lambda: promote(destination, b)):
                version = change()
                served.append(version)
                server.wait_for(lambda: answers and answers[-1][1] == str(version), f'version {version} to answer',
                                timeout=30)
                time.sleep(0.3)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
        log = server.log()
    assert answers and {status for status, _ in answers} == {200}, [x for x in answers if x[0] != 200][:5]
    assert {v for _, v in answers} == {str(v) for v in served}  # every answer from a version in production
    for version in served[1:]:
        assert f'Serving version {version} (was version' in log


def _rollback(destination: str) -> int:
    from sluice.components.production.changes import rollback
    new, _, _ = rollback(destination, reason='test')
    return new.number


def test_half_copied_and_corrupt_versions_are_never_served(models, tmp_path):
    destination = str(tmp_path / 'dest')
    a, b = models
    first = promote(destination, a)
    scratch = str(tmp_path / 'scratch')
    other = os.path.join(scratch, str(promote(scratch, b)))
    with serving(destination, '--name', 'penguin') as server:
        url = server.url + '/v1/models/penguin'
        # A copy by hand, still under way: the SavedModel is there, the ONNX file half written, no record.
        copying = os.path.join(destination, str(first + 1))
        shutil.copytree(other, copying, ignore=shutil.ignore_patterns('model.onnx', 'sluice_push.json'))
        with open(os.path.join(other, 'model.onnx'), 'rb') as f:
            onnx_bytes = f.read()
        with open(os.path.join(copying, 'model.onnx'), 'wb') as f:
            f.write(onnx_bytes[:len(onnx_bytes) // 2])
        status_body = server.wait_for(lambda: _failed(url), 'the half-copied version to be reported')
        assert status_body['version'] == str(first + 1) and 'does not load in ONNX Runtime' in \
            status_body['status']['error_message']
        assert call(url + ':predict', {'instances': [ROW]})[1]['model_version'] == str(first)
        assert f'sluice_serve_load_failures_total{{model="penguin",version="{first + 1}"}}' in server.metrics()
        assert f'Version {first + 1} at {destination} failed to load (attempt 1)' in server.log()
        assert f'still serving version {first}' in server.log()
        # The copy completes: the version is followed.
        with open(os.path.join(copying, 'model.onnx'), 'wb') as f:
            f.write(onnx_bytes)
        server.wait_for(lambda: call(url + ':predict', {'instances': [ROW]})[1].get('model_version') ==
                        str(first + 1), 'the completed copy to be served')

        # A pushed version whose files no longer match its record (a corrupt ONNX file) is never served.
        corrupt = os.path.join(destination, str(first + 2))
        staged = str(tmp_path / 'staged')
        shutil.copytree(other, staged)
        _rewrite_record(staged, destination, first + 2)
        with open(os.path.join(staged, 'model.onnx'), 'r+b') as f:
            f.seek(len(onnx_bytes) // 3)
            f.write(b'\0' * 64)
        os.rename(staged, corrupt)
        deadline = time.monotonic() + 3  # fifteen polls
        while time.monotonic() < deadline:
            assert call(url + ':predict', {'instances': [ROW]})[1]['model_version'] == str(first + 1)
        status, body, _ = call(url + f'/versions/{first + 2}:predict', {'instances': [ROW]})
        assert status == 404 and 'is incomplete (its files do not match the fingerprint in its push record' in \
            body['error']


def _failed(url: str):
    _, body, _ = call(url)
    return next((s for s in body['model_version_status'] if s['state'] == 'END'), None)


def _rewrite_record(version_dir: str, destination: str, number: int) -> None:

    path = os.path.join(version_dir, 'sluice_push.json')
    with open(path) as f:
        record = json.load(f)
    record.update(destination=destination, version=number)
    with open(path, 'w') as f:
        json.dump(record, f)


def test_rollback_and_hand_deletion_are_followed(models, penguin_run, tmp_path):
    destination = str(tmp_path / 'dest')
    a, b = models
    first, second = promote(destination, a), promote(destination, b)
    with serving(destination, '--name', 'penguin') as server:
        url = server.url + '/v1/models/penguin'

        def answering():
            return call(url + ':predict', {'instances': [ROW]})[1].get('model_version')

        assert answering() == str(second)
        sluice('rollback', destination, '--reason', 'test', cwd=penguin_run)  # recorded in the run's store
        third = max(_versions(destination))
        server.wait_for(lambda: answering() == str(third), 'the rollback to be followed')
        _, body, _ = call(url + ':predict', {'instances': [ROW]})
        _, by_first, _ = call(url + f'/versions/{first}:predict', {'instances': [ROW]})
        assert body['predictions'] == by_first['predictions']  # the rollback serves the first model again
        shutil.rmtree(os.path.join(destination, str(third)))
        server.wait_for(lambda: answering() == str(second), 'the deletion of the rollback to be followed')
        shutil.rmtree(os.path.join(destination, str(second)))
        server.wait_for(lambda: answering() == str(first), 'the deletion of version 2 to be followed')
        shutil.rmtree(os.path.join(destination, str(first)))
        server.wait_for(lambda: call(url + ':predict', {'instances': [ROW]})[0] == 503, 'nothing to be served')
        status, body, _ = call(url + ':predict', {'instances': [ROW]})
        assert body == {'error': f'no model is being served: nothing is in production at {destination} (no complete '
                                 'version)'}
        assert call(server.url + '/v2/health/ready')[0] == 503


def test_sampled_requests_are_logged_as_tf_examples_per_version(penguin_run, tmp_path):
    import tensorflow as tf
    destination = _destination(penguin_run)
    newer = str(_versions(destination)[-1])
    log_dir = str(tmp_path / 'requests')
    rows = [{**ROW, 'body_mass_g': i / 100} for i in range(30)]
    with serving(destination, '--log-requests', '1', '--log-dir', log_dir) as server:
        for i in range(0, 30, 3):
            assert call(server.url + '/v1/models/penguin:predict', {'instances': rows[i:i + 3]})[0] == 200
    files = glob.glob(os.path.join(log_dir, newer, 'requests-*.tfrecord'))
    assert files and not glob.glob(os.path.join(log_dir, newer, '.*'))  # renamed into place when stopped
    spec = {name: tf.io.FixedLenFeature([], tf.float32) for name in FEATURES}
    logged = [tf.io.parse_single_example(r, spec) for r in tf.data.TFRecordDataset(files)]
    got = sorted(tuple(float(x[n].numpy()) for n in FEATURES) for x in logged)
    assert got == sorted(tuple(float(np.float32(r[n])) for n in FEATURES) for r in rows)


def test_the_server_loads_no_tensorflow(penguin_run):
    code = f'''
import sys
from starlette.testclient import TestClient
from sluice.serving.app import create_app
from sluice.serving.follower import Follower
from sluice.serving.metrics import Metrics
follower = Follower({_destination(penguin_run)!r})
follower.poll()
client = TestClient(create_app(follower, Metrics('penguin'), 'penguin'))
answer = client.post('/v1/models/penguin:predict', json={{'instances': [{ROW!r}]}})
assert answer.status_code == 200, answer.text
print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tensorflow_transform', 'tfx_bsl', 'keras', 'tf_keras')))
'''
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == '[]'


def test_both_sessions_of_a_served_model_answer_as_the_saved_model(penguin_run):
    """A served model has two onnxruntime sessions (every core for a request answered alone, one thread
    a run while others are answered): each gives the SavedModel's answers on the eval rows."""
    from sluice.components.onnx_export.loading import load
    from sluice.components.onnx_export.serving import IN_FLIGHT

    destination = _destination(penguin_run)
    newer = _versions(destination)[-1]
    records = _eval_examples(penguin_run)
    expected = _saved_model_answers(os.path.join(destination, str(newer)), records)
    model = load(os.path.join(destination, str(newer)), newer, '')
    if (os.cpu_count() or 1) < 2:
        pytest.skip('one core: a served model has one session')
    assert model.session_alone is not None and model.session_alone is not model.session
    alone = model.predict({'instances': _rows(records)})[0]['predictions']
    IN_FLIGHT.requests += 2  # as a server answering this request and another: the one-thread session
    try:
        busy = model.predict({'instances': _rows(records)})[0]['predictions']
    finally:
        IN_FLIGHT.requests -= 2
    assert model.session.get_session_options().intra_op_num_threads == 1
    assert np.abs(np.array(alone) - expected).max() <= 1e-5 and np.abs(np.array(busy) - expected).max() <= 1e-5


def test_a_request_answered_alone_runs_on_the_event_loop_and_one_beside_others_in_a_thread(penguin_run):
    """A model slower than the inline rule (timed at warm-up) answers on the event loop a request
    answered alone, by a client that sends one at a time (the hand-off to a thread and back is a
    seventh of a one-row taxi request), and in a worker thread once requests have overlapped."""
    import warnings
    with warnings.catch_warnings():  # starlette's: it would rather use httpx2 than the httpx installed
        warnings.simplefilter('ignore')
        from starlette.testclient import TestClient
    from sluice.components.onnx_export.serving import IN_FLIGHT
    from sluice.serving.app import create_app
    from sluice.serving.follower import Follower
    from sluice.serving.metrics import Metrics

    follower = Follower(_destination(penguin_run))
    follower.poll()
    model = follower.current
    # as the taxi model: over INLINE_SECONDS, under ALONE_INLINE_SECONDS (set, not timed: a loaded
    # machine's warm-up may leave the model untimed, as too slow for the event loop at all)
    model.call_seconds, model.row_seconds = 1e-3, 1e-6
    import asyncio

    def on_loop() -> bool:
        try:
            return asyncio.get_running_loop() is not None
        except RuntimeError:  # a worker thread
            return False

    where = []
    run = model.run
    model.run = lambda feed: (where.append(on_loop()), run(feed))[1]
    with TestClient(create_app(follower, Metrics('penguin'), 'penguin')) as client:
        def ask():
            answer = client.post('/v1/models/penguin:predict', json={'instances': [ROW]})
            assert answer.status_code == 200, answer.text

        IN_FLIGHT.overlapped = 0.0
        ask()
        ask()
        IN_FLIGHT.overlapped = time.monotonic()  # as when a request arrived while another was answered
        ask()
        model.call_seconds = 1.0  # too slow to hold the event loop even when alone
        IN_FLIGHT.overlapped = 0.0
        ask()
        assert where == [True, True, False, False]


# -- the InfraValidator ------------------------------------------------------------------------------
def _latest(pattern: str) -> str:
    return max(glob.glob(pattern), key=lambda p: int(os.path.basename(p)))


def test_a_model_that_loads_and_answers_is_infra_blessed_and_pushed(penguin_run):
    with open(os.path.join(penguin_run, 'second-run.txt')) as f:
        output = f.read()
    blessing = _latest(os.path.join(penguin_run, 'runs', 'penguin', 'InfraValidator', 'blessing', '*'))
    with open(os.path.join(blessing, 'infra_validation.json')) as f:
        report = json.load(f)
    assert report['blessed'] is True and report['reason'] == 'loaded and answered 10 requests within 60 s'
    assert report['examples'] == {'split': 'eval', 'rows': 20}  # the ExampleGen's examples, one request
    assert 0 < report['load_seconds'] < 60 and report['latency_seconds']['max'] < 60
    assert os.path.isfile(os.path.join(blessing, 'INFRA_BLESSED'))
    assert f"InfraValidator: INFRA_BLESSED model #{report['model_id']}: loaded and answered" in output
    assert 'Pusher: pushed to ' in output


def test_a_model_that_cannot_load_is_refused_and_nothing_is_pushed(penguin_run):
    destination = os.path.join(penguin_run, 'runs', 'penguin', 'serving')
    before = sorted(os.listdir(destination))
    onnx_model = _latest(os.path.join(penguin_run, 'runs', 'penguin', 'Trainer.onnx', 'onnx_model', '*'))
    onnx_file = os.path.join(onnx_model, 'model.onnx')
    with open(onnx_file, 'rb') as f:
        good = f.read()
    try:
        with open(onnx_file, 'wb') as f:  # broken on purpose after training: half the file
            f.write(good[:len(good) // 2])
        done = subprocess.run([sys.executable, '-m', 'sluice.ui.cli', 'run', INFRA_PENGUIN, '--from', 'InfraValidator',
                               '--no-cache', 'InfraValidator'], cwd=penguin_run, capture_output=True, text=True,
                              timeout=300)
    finally:
        with open(onnx_file, 'wb') as f:
            f.write(good)
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'InfraValidator: INFRA_NOT_BLESSED model #' in done.stdout
    assert 'the model failed to load: ' in done.stdout and 'does not load in ONNX Runtime' in done.stdout
    assert 'Pusher: not pushed: the model failed its infra check: the model failed to load: ' in done.stdout
    assert sorted(os.listdir(destination)) == before


def test_a_model_that_does_not_load_in_time_is_not_blessed(models, tmp_path):
    blessing = InfraBlessing(uri=str(tmp_path))
    model, onnx_model = Model(uri=models[-1][0]), OnnxModel(uri=models[-1][1], model_id=42)
    model.id = 42
    InfraValidatorExecutor(tmp_dir=str(tmp_path / 'tmp')).run(model=model, blessing=blessing, time_limit_seconds=0.2,
                                                               requests=3, num_examples=1, split_name='',
                                                               onnx_model=onnx_model)
    with open(tmp_path / 'infra_validation.json') as f:
        report = json.load(f)
    assert blessing.get('blessed') == 0 and report['blessed'] is False
    assert report['reason'].startswith('the model did not load within time_limit_seconds=0.2: ')
    assert os.path.isfile(tmp_path / 'INFRA_NOT_BLESSED') and blessing.get('current_model_id') == 42


def test_examples_that_do_not_fit_the_model_or_a_missing_split_are_not_blessed(models, penguin_run, tmp_path):
    """The InfraValidator's request of examples: a split the Examples lack, and examples without a
    feature the model needs, each make the check fail naming what is wrong (no server error, no bless)."""
    import tensorflow as tf

    [examples_dir] = glob.glob(os.path.join(penguin_run, 'runs', 'penguin', 'CsvExampleGen', 'examples', '*'))[:1]
    model, onnx_model = Model(uri=models[-1][0]), OnnxModel(uri=models[-1][1], model_id=7)
    model.id = 7
    broken = tmp_path / 'broken'
    (broken / 'Split-eval').mkdir(parents=True)
    with tf.io.TFRecordWriter(str(broken / 'Split-eval' / 'data.gz'), options='GZIP') as writer:
        writer.write(tf.train.Example(features=tf.train.Features(feature={
            'bill_length_mm': tf.train.Feature(float_list=tf.train.FloatList(value=[40.0]))})).SerializeToString())
    cases = [(Examples(uri=examples_dir, split_names='["train", "eval"]'), 'test',
              "has no split 'test' (its splits: train, eval); give split_name= one of them"),
             (Examples(uri=str(tmp_path / 'empty'), split_names='["eval"]'), 'eval',
              f"holds no 'eval' examples (no files under {tmp_path / 'empty' / 'Split-eval'})"),
             (Examples(uri=str(broken), split_names='["eval"]'), '',
              "the 'eval' examples of Examples"), ]
    for i, (examples, split, why) in enumerate(cases):
        out = tmp_path / f'blessing-{i}'
        out.mkdir()
        blessing = InfraBlessing(uri=str(out))
        InfraValidatorExecutor(tmp_dir=str(tmp_path / f'tmp-{i}')).run(
            model=model, blessing=blessing, time_limit_seconds=60, requests=1, onnx_model=onnx_model,
            examples=examples, split_name=split, num_examples=3)
        reason = json.loads((out / 'infra_validation.json').read_text())['reason']
        assert blessing.get('blessed') == 0 and why in reason, reason
    assert "do not fit the model's inputs: example has no value for the required feature" in reason, reason


def test_a_null_or_non_finite_prediction_is_not_a_finite_answer():
    """What the InfraValidator requires of the answers to the examples, on what the server sends: a NaN
    or an infinity arrives as null (JSON has neither)."""
    from sluice.components.infra_validator import finite_predictions
    from sluice.components.onnx_export.serving import _rows_of

    sent = json.loads(json.dumps(_rows_of({'p': np.array([[np.nan, 0.2], [0.1, 0.9]], dtype=np.float32)}, 2)))
    assert sent[0][0] is None and not finite_predictions(sent)
    assert finite_predictions(json.loads(json.dumps(_rows_of({'p': np.array([[0.8, 0.2]])}, 1))))
    assert not finite_predictions([{'a': 1.0, 'b': None}]) and not finite_predictions([float('inf')])


# -- drift of the served data ------------------------------------------------------------------------
def _send_csv(url: str, path: str, keep=lambda row: True) -> int:
    import csv
    with open(path) as f:
        rows = [{k: float(v) for k, v in r.items() if k != 'species'} for r in csv.DictReader(f) if keep(r)]
    for i in range(0, len(rows), 25):
        assert call(url + '/v1/models/penguin:predict', {'instances': rows[i:i + 25]})[0] == 200
    return len(rows)


def test_drift_of_the_served_data_is_caught_and_the_training_distribution_is_not(penguin_run, tmp_path):
    from serving_helpers import REPO
    destination = _destination(penguin_run)
    data = os.path.join(REPO, 'pipelines', 'examples', 'penguin')
    same, shifted = str(tmp_path / 'same'), str(tmp_path / 'shifted')
    with serving(destination, '--log-requests', '1', '--log-dir', same) as server:
        sent = _send_csv(server.url, os.path.join(data, 'data', 'penguins.csv'))
    with serving(destination, '--log-requests', '1', '--log-dir', shifted) as server:
        # A shift made from the skewed set: only its heaviest species (1, Gentoo), and its rows with bad values.
        heavy = _send_csv(server.url, os.path.join(data, 'skewed', 'penguins_skewed.csv'),
                          lambda r: r['species'] == '1' or any(float(v) < 0 for v in r.values()))

    def drift(*args):  # `sluice drift` through its main() here: a process of its own would import TFDV each time
        done = shared_runs.command_in_process('drift', destination, *args)(pathlib.Path(penguin_run))
        return subprocess.CompletedProcess(args, done['status'], done['stdout'], '')

    done = drift('--log-dir', same, '--json', str(tmp_path / 'same.json'))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f'{sent} served rows' in done.stdout and 'no feature drifted (4 compared)' in done.stdout
    with open(tmp_path / 'same.json') as f:
        report = json.load(f)
    assert report['judged'] and report['drifted'] == [] and report['anomalies'] == []
    assert all(s['value'] < 0.1 for s in report['skews'])

    done = drift('--log-dir', shifted, '--metrics-file', str(tmp_path / 'drift.prom'), '--min-rows', '50')
    assert done.returncode == 1, done.stdout + done.stderr
    assert f'{heavy} served rows' in done.stdout and 'DRIFT body_mass_g: jensen_shannon_divergence' in done.stdout
    assert "ANOMALY feature 'culmen_length_mm': Out-of-range values" in done.stdout
    metrics = (tmp_path / 'drift-drift.prom').read_text()  # -drift: never the run's own file
    version = _versions(destination)[-1]
    line = next(x for x in metrics.splitlines() if x.startswith('sluice_drift_skew{feature="body_mass_g"'))
    assert f'pipeline="penguin",version="{version}"' in line and float(line.split()[-1]) > 0.1

    done = drift('--log-dir', same, '--min-rows', '1000')
    assert done.returncode == 0 and 'not judged: fewer than 1000 served rows' in done.stdout

    # The history views: drift per feature at each judged check, node durations across the runs, the
    # models pushed; in the run report too.
    from sluice.metadata import MetadataStore
    from sluice.ui.visuals import history_view
    with open(os.path.join(same, 'drift-history.jsonl')) as f:
        checks = [json.loads(line) for line in f]
    assert [c['judged'] for c in checks] == [True, False] and checks[0]['version'] == version
    store = MetadataStore(f'sqlite:///{penguin_run}/runs/penguin/metadata.db')
    view = history_view(store, 'penguin', destination, log_dir=same)
    assert '"sluice":"drift","checks":1,"features":["body_mass_g","culmen_depth_mm","culmen_length_mm",' \
           '"flipper_length_mm"]' in view.html.replace(' ', '')
    assert '"sluice":"durations","runs":' in view.html.replace(' ', '') and '"sluice":"history"' in \
        view.html.replace(' ', '')
    assert 'Drift checks: 1; the latest' in str(view) and 'no feature drifted' in str(view)
    run_id = store.runs('penguin')[-1].run_id
    sluice('report', run_id, '-o', str(tmp_path / 'report.html'), cwd=penguin_run)
    page = (tmp_path / 'report.html').read_text()
    assert '<h2>History</h2>' in page and '"sluice":"durations"' in page.replace(' ', '')


def test_served_drift_as_a_component_runs_again_only_when_new_rows_were_served(penguin_run, tmp_path):
    from serving_helpers import REPO
    from sluice import LocalDagRunner, Pipeline
    from sluice.components import ServedDrift
    destination = _destination(penguin_run)
    logs = str(tmp_path / 'logs')
    csv_file = os.path.join(REPO, 'pipelines', 'examples', 'penguin', 'data', 'penguins.csv')

    def run():
        check = ServedDrift(push_destination=destination, log_dir=logs, min_rows=50)
        pipeline = Pipeline('penguin-drift', str(tmp_path / 'root'), [check],
                            metadata=f'sqlite:///{penguin_run}/runs/penguin/metadata.db')  # the model's store
        return LocalDagRunner(progress=False).run(pipeline)

    with serving(destination, '--log-requests', '1', '--log-dir', logs) as server:
        sent = _send_csv(server.url, csv_file)
    first = run()
    assert first.state == 'COMPLETE', first['ServedDrift'].error
    outputs = first['ServedDrift'].outputs
    with open(os.path.join(outputs['anomalies'].uri, 'drift.json')) as f:
        report = json.load(f)
    assert report['served_rows'] == sent and report['judged'] and report['drifted'] == []
    assert outputs['served_statistics'].split_names == ['served', 'train']
    assert run()['ServedDrift'].state == 'CACHED'  # no new served rows
    with serving(destination, '--log-requests', '1', '--log-dir', logs) as server:
        more = _send_csv(server.url, csv_file)
    third = run()
    assert third['ServedDrift'].state == 'COMPLETE'
    with open(os.path.join(third['ServedDrift'].outputs['anomalies'].uri, 'drift.json')) as f:
        assert json.load(f)['served_rows'] == sent + more


def test_the_rows_of_a_request_are_read_cheaply_for_the_inline_rule():
    """A quick model's small requests for production are answered on the event loop (sluice.serving.app
    ``_quick_model``): how many rows a TF Serving body holds, without checking it all; KServe v2 bodies are
    never counted (their shapes are checked only as the model is fed), so they run in a thread."""
    from sluice.serving.app import _rows

    assert _rows({'instances': [{}, {}]}) == 2
    assert _rows({'inputs': {'body_mass_g': [1.0, 2.0, 3.0], 'culmen_depth_mm': [1.0]}}) == 3  # the longest
    assert _rows({'inputs': {'body_mass_g': 1.0}}) == 1
    for unknown in ([], 'text', {}, {'instances': 'x'}, {'inputs': {}}, {'inputs': []},
                    {'inputs': [{'name': 'body_mass_g', 'shape': [1, 9], 'datatype': 'FP32', 'data': [0.0] * 9}]}):
        assert _rows(unknown) is None, unknown


def test_a_float32_overflow_names_its_row_and_a_missing_value_is_not_one():
    """In this process warnings are errors (pyproject's filterwarnings), as they may be in a user's:
    numpy's overflow warning is then an exception, and the row is still found and named."""
    from sluice.components.onnx_export.serving import Feature, LoadedModel, RequestError

    optional = Feature('body_mass_g', 'float32', False, float('nan'))
    with pytest.raises(RequestError, match=r'^feature "body_mass_g" of row 1: 1e\+39 is outside float32\'s range$'):
        LoadedModel._array(optional, [float('nan'), 1e39])
    with pytest.raises(RequestError, match=r'^feature "body_mass_g" of row 1: 1000000000000000000000000000000000000'
                                           r'\.\.\. is outside float32\'s range$'):
        LoadedModel._array(optional, [1.0, 10 ** 400])
    assert LoadedModel._array(optional, [1.0, float('nan')]).shape == (2, 1)
