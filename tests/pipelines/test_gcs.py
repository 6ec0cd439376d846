"""A pipeline root, input files and a push destination on Google Cloud Storage (gcp-storage-emulator on
loopback), as a user runs it: ``sluice run`` of a pipeline file whose root, data and destination are
gs:// URLs, a cached re-run, ``sluice serve`` following the destination through a promotion, a push
cut off before its record and a rollback. The errors of an unreachable emulator, missing credentials
or a missing bucket are pinned in tests/metadata/test_storage.py; that such an error fails its node
once, recorded and not retried, is tested on S3 (tests/pipelines/test_object_store.py). The emulator
ignores ``ifGenerationMatch``, so two pushers racing on one destination are tested on S3 only
(tests/pipelines/test_s3_destination.py). Figures come from the store and the bucket's listing."""
from __future__ import annotations

import shutil
import time

import pytest

from store_penguin import StorePenguin
from sluice.components.production.destination import PUSH_RECORD, history, production
from sluice.metadata import storage

ROW = {'culmen_length_mm': 0.25, 'culmen_depth_mm': 0.67, 'flipper_length_mm': 0.15, 'body_mass_g': 0.29}


@pytest.fixture(scope='module')
def penguin_gcs(gcs_server, tmp_path_factory):
    work = tmp_path_factory.mktemp('gcs-penguin')
    pipeline = StorePenguin(gcs_server, work, 'gs')
    first = pipeline.run()
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    return pipeline, first


def test_every_node_runs_on_a_gcs_root_and_a_rerun_is_all_cached(penguin_gcs, gcs):
    pipeline, first = penguin_gcs
    store = pipeline.store()
    run_id, keys = pipeline.first_run_stored()
    model = store.node_outputs(run_id, 'Trainer')['model'][0]
    assert f'{pipeline.key(model.uri)}/Format-Serving/saved_model.pb' in keys
    examples = store.node_outputs(run_id, 'CsvExampleGen')['examples'][0]
    assert examples.get('input_base') == f'gs://{pipeline.bucket}/incoming'
    # Beam read the CSV from the emulator without a credential search (about 25 s when it searches).
    [gen] = [r for r in store.executions(run_id) if r.node_id == 'CsvExampleGen']
    assert gen.update_time - gen.create_time < 20, (gen.create_time, gen.update_time)

    pushed = store.node_outputs(run_id, 'Pusher')['pushed_model'][0]
    version = pushed.get('pushed_version')
    assert pushed.get('pushed') == 1 and f'Pusher: pushed to {pipeline.dest}/{version}' in first.stdout
    assert pushed.get('pushed_destination') == f'{pipeline.dest}/{version}'
    assert {f'serving/penguin/{version}/{name}' for name in ('.sluice-claim', 'saved_model.pb', 'model.onnx',
                                                             PUSH_RECORD)} <= set(pipeline.server.keys(pipeline.bucket, 'serving/'))
    now = production(pipeline.dest).current
    assert str(now.number) == version and now.complete and now.record['model']['artifact_id'] == model.id
    assert now.record['model']['uri'] == model.uri, 'the record names the model in the bucket, not a local copy'

    again = pipeline.run()
    assert again.returncode == 0, again.stdout[-3000:]
    rerun = pipeline.newest_run()
    assert rerun != run_id
    assert set(pipeline.states(rerun).values()) == {'CACHED'}, pipeline.states(rerun)


def _serving_version(server) -> str | None:
    from serving_helpers import call
    status, body, _ = call(server.url + '/v1/models/penguin', timeout=5)
    states = {v['version']: v['state'] for v in (body or {}).get('model_version_status', [])}
    return next((v for v, state in states.items() if state == 'AVAILABLE'), None)


def test_sluice_serve_follows_a_gcs_destination_through_a_promotion_a_cut_push_and_a_rollback(
        penguin_gcs, gcs, tmp_path, monkeypatch):
    from serving_helpers import call, promote, serving

    pipeline, _ = penguin_gcs
    monkeypatch.setenv('SLUICE_CACHE_DIR', str(pipeline.work / 'cache'))
    store = pipeline.store()
    run_id = min(store.runs('penguin'), key=lambda r: (r.create_time, r.run_id)).run_id
    first = production(pipeline.dest).current
    model = store.node_outputs(run_id, 'Trainer')['model'][0]
    onnx = store.node_outputs(run_id, 'Trainer.onnx')['onnx_model'][0]
    other = tmp_path / 'other-model'  # the same weights with one more file: another content to promote
    shutil.copytree(storage.local_copy(model.uri), other)
    shutil.copytree(storage.local_copy(onnx.uri), tmp_path / 'other-onnx')
    (tmp_path / 'other-onnx' / 'NOTE.txt').write_text('same weights, other files')

    with serving(pipeline.dest) as server:
        assert _serving_version(server) == str(first.number)
        status, body, headers = call(server.url + '/v1/models/penguin:predict', {'instances': [ROW]})
        assert status == 200 and body['model_version'] == str(first.number), body
        assert len(body['predictions'][0]) == 3

        promoted = promote(pipeline.dest, (str(other), str(tmp_path / 'other-onnx')), 'a test')
        server.wait_for(lambda: _serving_version(server) == str(promoted), 'the promoted version')
        assert storage.read_bytes(f'{pipeline.dest}/{promoted}/NOTE.txt') == b'same weights, other files'

        # A push cut off before its record (claim and files, no record): never loaded.
        cut = promoted + 5
        client = gcs.client().bucket(pipeline.bucket)
        client.blob(f'serving/penguin/{cut}/.sluice-claim').upload_from_string(b'{}')
        for name in ('saved_model.pb', 'model.onnx'):
            source = client.blob(f'serving/penguin/{first.number}/{name}')
            client.copy_blob(source, client, f'serving/penguin/{cut}/{name}')
        time.sleep(1.5)  # several polls
        assert _serving_version(server) == str(promoted)
        assert [v.number for v in production(pipeline.dest).skipped] == [cut]

        rolled = pipeline.sluice('rollback', pipeline.dest, '--to', str(first.number), '--metadata', pipeline.url)
        assert rolled.returncode == 0, rolled.stdout[-3000:] + rolled.stderr[-3000:]
        back = production(pipeline.dest).current
        assert back.number > cut and back.record['target']['version'] == first.number
        assert back.fingerprint == first.fingerprint  # copied inside the store: the same MD5s
        server.wait_for(lambda: _serving_version(server) == str(back.number), 'the rolled-back version')
        status, body, _ = call(server.url + '/v1/models/penguin:predict', {'instances': [ROW]})
        assert status == 200 and body['model_version'] == str(back.number)
        assert f'Version {cut} ' not in server.log()
    logged = [(e['version'], e['kind']) for e in history(pipeline.dest)]
    assert logged == [(first.number, 'push'), (promoted, 'promote'), (cut, 'hand-pushed'), (back.number, 'rollback')]
    assert history(pipeline.dest)[2]['problem'].startswith('no push record (sluice_push.json): claimed by a push at ')
