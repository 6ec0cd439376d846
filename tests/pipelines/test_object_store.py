"""A pipeline root, input files and a push destination on S3 (moto's server on loopback), as a user
runs it: ``sluice run`` of a pipeline file whose root, data and destination are s3:// URLs, then a cached re-run, a changed input object,
a kill in the middle of an upload and a resume, gc, and the errors of a wrong endpoint and of missing
credentials. Every figure asserted on comes from the store or from the bucket's listing."""
from __future__ import annotations

import json
import logging
import time

import pytest

from store_penguin import DATA, StorePenguin


@pytest.fixture(scope='module')
def penguin_s3(s3_server, tmp_path_factory):
    logging.getLogger('werkzeug').setLevel(logging.WARNING)  # moto's server logs every request
    work = tmp_path_factory.mktemp('s3-penguin')
    pipeline = StorePenguin(s3_server, work, 's3')
    first = pipeline.run()
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    return pipeline, first


def test_every_node_runs_on_an_s3_root_and_a_rerun_is_all_cached(penguin_s3):
    pipeline, first = penguin_s3
    store = pipeline.store()
    run_id, keys = pipeline.first_run_stored()
    model = store.node_outputs(run_id, 'Trainer')['model'][0]
    assert f"{model.uri[len(f's3://{pipeline.bucket}/'):]}/Format-Serving/saved_model.pb" in keys
    onnx = store.node_outputs(run_id, 'Trainer.onnx')['onnx_model'][0]
    assert f"{onnx.uri[len(f's3://{pipeline.bucket}/'):]}/model.onnx" in keys and onnx.get('model_id') == model.id
    examples = store.node_outputs(run_id, 'CsvExampleGen')['examples'][0]
    assert examples.get('input_base') == f's3://{pipeline.bucket}/incoming'
    pushed = store.node_outputs(run_id, 'Pusher')['pushed_model'][0]
    version = pushed.get('pushed_version')
    assert pushed.get('pushed') == 1 and f'Pusher: pushed to s3://{pipeline.bucket}/serving/penguin/{version}' in first.stdout
    assert {f'serving/penguin/{version}/saved_model.pb', f'serving/penguin/{version}/model.onnx',
            f'serving/penguin/{version}/sluice_push.json'} <= set(pipeline.s3.keys(pipeline.bucket, 'serving/'))

    # The report reads statistics, evaluation and blessing from the bucket; lineage goes back to the CSV.
    report = pipeline.sluice('report', run_id, '-o', str(pipeline.work / 'report.html'), '--metadata', pipeline.url)
    assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-3000:]
    html = (pipeline.work / 'report.html').read_text()
    assert 'flipper_length_mm' in html and 'sparse_categorical_accuracy' in html
    lineage = pipeline.sluice('lineage', str(model.id), '--metadata', pipeline.url)
    assert lineage.returncode == 0 and examples.uri in lineage.stdout, lineage.stdout[-3000:]

    again = pipeline.run()
    assert again.returncode == 0, again.stdout[-3000:]
    rerun = pipeline.newest_run()
    assert rerun != run_id
    assert set(pipeline.states(rerun).values()) == {'CACHED'}, pipeline.states(rerun)

    # No credential reaches the output, the run's log or the store.
    secret = pipeline.s3.env['AWS_SECRET_ACCESS_KEY']
    logs = list((pipeline.work / 'cache').rglob('*.log'))
    assert logs, 'the run log of an s3:// root is kept in its local stand-in'
    for text in (first.stdout, first.stderr, again.stdout, *(p.read_text() for p in logs)):
        assert secret not in text and pipeline.s3.env['AWS_ACCESS_KEY_ID'] not in text
    db = (pipeline.work / 'metadata.db').read_bytes()
    assert secret.encode() not in db and pipeline.s3.env['AWS_ACCESS_KEY_ID'].encode() not in db


def test_an_input_object_is_fingerprinted_by_its_content(penguin_s3):
    pipeline, _ = penguin_s3
    client = pipeline.s3.client()
    with open(DATA, 'rb') as f:
        original = f.read()
    client.put_object(Bucket=pipeline.bucket, Key=pipeline.data_key, Body=original)  # the same bytes again
    same = pipeline.run('--only', 'CsvExampleGen')
    assert same.returncode == 0, same.stdout[-3000:]
    assert pipeline.states(pipeline.newest_run()) == {'CsvExampleGen': 'CACHED'}
    try:
        client.put_object(Bucket=pipeline.bucket, Key=pipeline.data_key, Body=original.rstrip(b'\n').rsplit(b'\n', 1)[0])
        changed = pipeline.run('--only', 'CsvExampleGen')
        assert changed.returncode == 0, changed.stdout[-3000:]
        run_id = pipeline.newest_run()
        assert pipeline.states(run_id) == {'CsvExampleGen': 'COMPLETE'}
        examples = pipeline.store().node_outputs(run_id, 'CsvExampleGen')['examples'][0]
        assert sum(json.loads(examples.get('row_counts')).values()) == 333  # one row fewer than the 334 penguins
    finally:
        client.put_object(Bucket=pipeline.bucket, Key=pipeline.data_key, Body=original)


def test_watch_sees_a_changed_input_object_and_not_the_same_bytes_again(penguin_s3, s3):
    from sluice.examples.penguin.penguin_pipeline import create_pipeline
    from sluice.ops.watch import input_state
    pipeline, _ = penguin_s3
    definition = create_pipeline(root=pipeline.root, data=f's3://{pipeline.bucket}/incoming',
                                 push_destination=f'{pipeline.root}/serving', metadata='sqlite://')
    before = input_state(definition)
    data_url = f's3://{pipeline.bucket}/{pipeline.data_key}'
    assert data_url in before
    assert not [p for p in before if p.startswith(f'{pipeline.root}/')], 'where the pipeline writes is not watched'
    with open(DATA, 'rb') as f:
        original = f.read()
    client = s3.client()
    client.put_object(Bucket=pipeline.bucket, Key=pipeline.data_key, Body=original)
    assert input_state(definition) == before
    try:
        client.put_object(Bucket=pipeline.bucket, Key=pipeline.data_key, Body=original + b'\n')
        assert input_state(definition)[data_url] != before[data_url]
    finally:
        client.put_object(Bucket=pipeline.bucket, Key=pipeline.data_key, Body=original)


def test_a_run_killed_mid_upload_publishes_nothing_and_resumes(penguin_s3):
    pipeline, _ = penguin_s3
    killed = pipeline.run('--only', 'Trainer', kill_at='Trainer:upload', STEPS='11')  # upstream reused
    assert killed.returncode == -9, killed.stdout[-3000:] + killed.stderr[-3000:]
    run_id = pipeline.newest_run()
    store = pipeline.store()
    [trainer] = [r for r in store.executions(run_id) if r.node_id == 'Trainer']
    assert trainer.state == 'RUNNING'
    partial = pipeline.s3.keys(pipeline.bucket, f'runs/penguin/Trainer/model/{trainer.id}/')
    assert partial, 'the kill came after the first output was uploaded'
    assert not store.node_outputs(run_id, 'Trainer'), 'nothing of the killed Trainer is published'

    # Resumed as from another machine: none of the first process's local copies or scratch space.
    other_host = pipeline.work / 'cache-of-another-host'
    resumed = pipeline.sluice('resume', run_id, '--metadata', pipeline.url, STEPS='11',
                              SLUICE_CACHE_DIR=str(other_host))
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    records = store.executions(run_id)
    assert [r.properties.get('error_type') for r in records if r.id == trainer.id] == ['Abandoned']
    assert not pipeline.s3.keys(pipeline.bucket, f'runs/penguin/Trainer/model/{trainer.id}/'), \
        'the abandoned upload is deleted'
    model = store.node_outputs(run_id, 'Trainer')['model'][0]
    assert model.uri != f'{pipeline.root}/Trainer/model/{trainer.id}'
    assert pipeline.s3.keys(pipeline.bucket, model.uri[len(f's3://{pipeline.bucket}/'):] + '/Format-Serving/')
    assert [r.state for r in store.executions(run_id) if r.node_id == 'Trainer'] == ['FAILED', 'COMPLETE']
    assert store.run(run_id).state == 'INCOMPLETE'  # finished: only the Trainer was selected
    assert (other_host / 's3' / pipeline.bucket / 'runs' / 'penguin' / 'Transform').is_dir(), \
        "the resumed Trainer read Transform's outputs from the bucket, into the other host's copies"


def test_gc_deletes_the_objects_of_old_runs_and_keeps_what_is_live(penguin_s3):
    pipeline, _ = penguin_s3
    for _ in range(2):  # an old run whose statistics nothing needs, copied locally for ExampleValidator
        again = pipeline.run('--only', 'StatisticsGen', '--only', 'ExampleValidator', '--no-cache')
        assert again.returncode == 0, again.stdout[-3000:]
    copies = {str(p) for p in (pipeline.work / 'cache').rglob('*') if p.is_dir()}
    collected = pipeline.sluice('gc', '--keep-runs', '1', '--root', pipeline.root, '--metadata', pipeline.url)
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-3000:]
    store = pipeline.store()
    artifacts = store.mlmd.get_artifacts()
    deleted = [a for a in artifacts if a.state == 4 and a.uri.startswith('s3://')]  # DELETED
    assert deleted, collected.stdout
    assert f'Deleted {len(deleted)} artifacts' in collected.stdout
    keys = pipeline.s3.keys(pipeline.bucket, 'runs/penguin/')
    copied = 0
    for artifact in artifacts:
        prefix = artifact.uri[len(f's3://{pipeline.bucket}/'):] + '/'
        if not artifact.uri.startswith(pipeline.root + '/'):  # inputs, and the push destination's versions
            continue
        if artifact.state == 4:
            assert not [k for k in keys if k.startswith(prefix)], artifact.uri
            local = pipeline.work / 'cache' / 's3' / pipeline.bucket / prefix.rstrip('/')
            assert not local.exists(), f'the local copy of {artifact.uri} is deleted with it'
            copied += str(local) in copies
        elif artifact.state == 2:  # LIVE
            assert [k for k in keys if k.startswith(prefix)], artifact.uri
    assert copied, 'some deleted artifact had a local copy (an input of a later node) before gc'


def test_a_wrong_endpoint_or_no_credentials_fail_clearly_and_are_not_retried(penguin_s3, tmp_path):
    pipeline, _ = penguin_s3
    local_root = str(tmp_path / 'runs' / 'penguin')  # the store and root reachable, the input on S3 not
    with socket_closed() as port:
        start = time.monotonic()
        wrong = pipeline.run('--only', 'CsvExampleGen', AWS_ENDPOINT_URL=f'http://127.0.0.1:{port}', ROOT=local_root)
        took = time.monotonic() - start
        assert wrong.returncode == 1, wrong.stdout[-3000:] + wrong.stderr[-3000:]
        [record] = pipeline.store().executions(pipeline.newest_run())
        assert record.state == 'FAILED' and record.properties.get('attempt') == 1
        message = (f'Cannot read s3://{pipeline.bucket}/incoming: the endpoint http://127.0.0.1:{port} cannot be '
                   'reached: check AWS_ENDPOINT_URL')
        assert message in record.error
        assert message in wrong.stdout
        assert 'Traceback' not in wrong.stdout + wrong.stderr
        assert took < 120, f'{took:.0f}s to give up on an unreachable endpoint'

        # The root itself unreachable: the run cannot start, and says why.
        runs_before = len(pipeline.store().runs('penguin'))
        no_root = pipeline.run(AWS_ENDPOINT_URL=f'http://127.0.0.1:{port}')
        assert no_root.returncode == 2  # as for any pipeline that cannot start
        assert f'Cannot list {pipeline.root}: the endpoint http://127.0.0.1:{port} cannot be reached' in \
            no_root.stdout + no_root.stderr
        assert 'Traceback' not in no_root.stdout + no_root.stderr
        assert len(pipeline.store().runs('penguin')) == runs_before

    bare = pipeline.run('--only', 'CsvExampleGen', ROOT=local_root, AWS_ACCESS_KEY_ID=None,
                        AWS_SECRET_ACCESS_KEY=None, AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / 'none'),
                        AWS_CONFIG_FILE=str(tmp_path / 'none'))
    assert bare.returncode == 1, bare.stdout[-3000:] + bare.stderr[-3000:]
    [record] = pipeline.store().executions(pipeline.newest_run())
    assert record.state == 'FAILED'
    assert (f'Cannot read s3://{pipeline.bucket}/incoming: no credentials were found: set AWS_ACCESS_KEY_ID and '
            'AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the environment') in record.error


class socket_closed:
    """A loopback port nothing listens on."""

    def __enter__(self):
        import socket
        s = socket.socket()
        s.bind(('127.0.0.1', 0))
        self.port = s.getsockname()[1]
        s.close()
        return self.port

    def __exit__(self, *exc):
        return False
