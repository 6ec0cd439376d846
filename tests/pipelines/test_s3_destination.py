"""Push destinations on an S3 object store (``s3://bucket/prefix``), on moto's S3 server on loopback
(the ``s3`` fixture): pushes, the claim and commit protocol, readers skipping a push cut off before
its record, two pushers racing over one baseline, rollback, promote and history, ``sluice
production``, ``sluice serve`` following the destination, and clear errors for a wrong endpoint or
missing credentials. The gate runs on stand-in models (tests/gate_stand_in.py) except for the
serving test, which pushes a real penguin model."""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import socket
import time

import pytest

from gate_stand_in import gate
from sluice import LocalDagRunner
from sluice.components import Model, ModelBlessing
from sluice.components.production import objectstore
from sluice.components.production.changes import ProductionError, promote, rollback
from sluice.components.production.destination import PUSH_RECORD, history, inspect_version, production, versions
from sluice.components.pusher import PusherExecutor
from sluice.metadata import PushedModel
from sluice.ui.cli import main


def run(root, dest: str, acc: float):
    result = LocalDagRunner(progress=False).run(gate(root, dest, acc))
    assert result.state == 'COMPLETE', {k: n.error for k, n in result.nodes.items() if n.error}
    return result['Pusher'].outputs['pushed_model']


def sluice(capsys, *args):
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def make_model(where, content: str) -> Model:
    (where / 'Format-Serving' / 'variables').mkdir(parents=True, exist_ok=True)
    (where / 'Format-Serving' / 'saved_model.pb').write_text(content)
    (where / 'Format-Serving' / 'variables' / 'variables.index').write_text(content + '-index')
    (where / 'Format-ONNX').mkdir(exist_ok=True)
    (where / 'Format-ONNX' / 'model.onnx').write_text(content + '-onnx')
    model = Model(uri=str(where))
    model.id = 1
    return model


# -- a push, what readers see, a push cut off ---------------------------------------------------------
def test_a_push_to_s3_is_a_version_with_its_record_and_sluice_production_shows_it(s3, tmp_path, capsys):
    bucket = s3.bucket()
    dest = f's3://{bucket}/serving/penguin'
    pushed = run(tmp_path / 'root', dest, 0.8)
    assert pushed.get('pushed') == 1
    number = int(pushed.get('pushed_version'))
    assert pushed.get('pushed_destination') == f'{dest}/{number}'
    keys = s3.keys(bucket, 'serving/penguin/')
    assert [k for k in keys if not k.startswith('serving/penguin/.sluice-history/')] == [
        'serving/penguin/.sluice-successors/none.0.json', f'serving/penguin/{number}/.sluice-claim',
        f'serving/penguin/{number}/saved_model.pb', f'serving/penguin/{number}/sluice_push.json']
    [entry] = [k for k in keys if k.startswith('serving/penguin/.sluice-history/')]
    assert entry.startswith(f'serving/penguin/.sluice-history/{number}-') and entry.endswith('.json')
    record = json.loads(s3.client().get_object(Bucket=bucket, Key=f'serving/penguin/{number}/{PUSH_RECORD}')['Body']
                        .read())
    now = production(dest).current
    assert (now.number, now.fingerprint, now.record) == (number, record['fingerprint'], record)
    assert record['fingerprint'].startswith('s3etag:') and record['destination'] == dest
    assert sorted(os.listdir(pushed.uri)) == ['saved_model.pb', 'sluice_push.json']  # what was pushed, not the claim

    code, out, _ = sluice(capsys, 'production', dest)
    assert code == 0
    assert out.splitlines()[0] == f'Production at {dest}: version {number}'
    assert f'  fingerprint: {record["fingerprint"]}' in out

    # A push cut off mid-upload (its claim and files, no record) is skipped by every reader.
    cut = number + 10
    s3.client().put_object(Bucket=bucket, Key=f'serving/penguin/{cut}/.sluice-claim', Body=b'{}')
    s3.client().put_object(Bucket=bucket, Key=f'serving/penguin/{cut}/saved_model.pb', Body=b'accuracy=0.99\n')
    found = production(dest)
    assert found.current.number == number and [v.number for v in found.skipped] == [cut]
    assert found.notes()[0].startswith(f'version {cut} at {dest} is incomplete (no push record (sluice_push.json): '
                                       'claimed by a push at ')
    assert 'that has not finished (still uploading, or cut off))' in found.notes()[0]
    # The next push measures against version `number`, and takes a higher number than the cut-off one.
    again = run(tmp_path / 'root', dest, 0.9)
    assert again.get('pushed') == 1 and int(again.get('pushed_version')) > cut
    assert production(dest).current.record['baseline']['version'] == number


def _hold(barrier):
    global _START
    _START = barrier


def _race(args):
    where, model_id, dest, base_number, env = args
    os.environ.update(env)
    from pathlib import Path
    model = make_model(Path(where) / f'model-{model_id}', f'accuracy=0.{model_id}')
    model.id = model_id
    base = production(dest).current
    assert base.number == base_number
    blessing_dir = Path(where) / f'blessing-{model_id}'
    blessing_dir.mkdir()
    (blessing_dir / 'reasons.json').write_text('{}')
    blessing = ModelBlessing(uri=str(blessing_dir), blessed=1, current_model_id=model_id, baseline_model_id=0,
                             push_destination=dest, baseline_version=str(base.number),
                             baseline_fingerprint=base.fingerprint)
    out = Path(where) / f'pushed-{model_id}'
    out.mkdir()
    pushed = PushedModel(uri=str(out))
    _START.wait()
    PusherExecutor().run(model=model, blessing=blessing, pushed_model=pushed, push_destination=dest)
    return model_id, pushed.get('pushed'), pushed.get('reason')


def test_three_pushers_racing_over_one_baseline_on_s3_exactly_one_wins(s3, tmp_path):
    dest = f's3://{s3.bucket()}/serving'
    first = tmp_path / 'first'
    PusherExecutor().run(model=make_model(first / 'model', 'accuracy=0.1'), blessing=None,
                         pushed_model=PushedModel(uri=str(tmp_path)), push_destination=dest)
    v1 = production(dest).current
    # The barrier is handed to the workers as they start, not made by a Manager: once Beam is imported
    # in this process (by another test of the same pytest worker), it replaces
    # multiprocessing.managers.AutoProxy and a spawned Manager can no longer be pickled.
    ctx = multiprocessing.get_context('spawn')
    with ctx.Pool(3, initializer=_hold, initargs=(ctx.Barrier(3),)) as pool:
        results = pool.map(_race, [(str(tmp_path), i, dest, v1.number, dict(s3.env)) for i in (2, 3, 4)],
                           chunksize=1)
    winners = [r for r in results if r[1] == 1]
    losers = [r for r in results if r[1] == 0]
    assert len(winners) == 1 and len(losers) == 2, results
    now = production(dest).current
    assert now.record['model']['artifact_id'] == winners[0][0]
    for _, _, reason in losers:  # (a note may say that the other loser's version was still being written)
        assert reason.startswith(f'the model in production changed since this model was evaluated (it was measured '
                                 f'against {v1.describe()}, production at {dest} is now {now.describe()}')
        assert reason.endswith(f'; run the pipeline again (a new run or sluice resume) to measure it against '
                               f'{now.describe()}')
    assert versions(dest) == [v1.number, now.number]  # the losers removed what they uploaded
    assert [e['version'] for e in history(dest)] == [v1.number, now.number]


# -- rollback, promote, history --------------------------------------------------------------------
def test_rollback_and_promote_on_s3_and_the_history_in_order(s3, tmp_path, capsys):
    bucket = s3.bucket()
    dest = f's3://{bucket}/models'
    first = run(tmp_path / 'root', dest, 0.5)
    second = run(tmp_path / 'root', dest, 0.7)
    v1, v2 = int(first.get('pushed_version')), int(second.get('pushed_version'))
    assert production(dest).current.number == v2

    metadata = f'sqlite:///{tmp_path}/root/metadata.db'
    code, out, err = sluice(capsys, 'rollback', dest, '--reason', 'v2 mislabels Gentoo', '--metadata', metadata)
    assert code == 0, err
    v3 = production(dest).current
    assert out.startswith(f'Rolled back {dest}: version {v3.number} is now in production, a copy of version {v1} ')
    assert v3.record['kind'] == 'rollback' and v3.record['target']['version'] == v1
    assert v3.fingerprint == inspect_version(dest, v1).fingerprint  # copied inside the store, same ETags
    keys = s3.keys(bucket, f'models/{v3.number}/')
    assert keys == [f'models/{v3.number}/.sluice-claim', f'models/{v3.number}/saved_model.pb',
                    f'models/{v3.number}/sluice_push.json']

    with pytest.raises(ProductionError, match=f'version {v1} is already in production at {dest} '
                                              rf'\(version {v3.number} holds the same model\); nothing to do.'):
        rollback(dest, to=v1)

    local_model = tmp_path / 'promoted'
    make_model(local_model, 'accuracy=0.6')
    new, replaced = promote(dest, str(local_model), {'artifact_id': 99}, 'incident 7')
    assert replaced.number == v3.number and production(dest).current.number == new.number
    assert new.record['reason'] == 'incident 7'
    with pytest.raises(ProductionError, match=f'this model is already in production at {dest} as version '
                                              f'{new.number}'):
        promote(dest, str(local_model), {'artifact_id': 99}, 'again')

    assert [(e['version'], e['kind']) for e in history(dest)] == [
        (v1, 'push'), (v2, 'push'), (v3.number, 'rollback'), (new.number, 'promote')]
    code, out, _ = sluice(capsys, 'production', dest)
    rows = [line.split()[1:3] for line in out.split('History (oldest first):')[1].splitlines()[2:] if line.strip()]
    assert rows == [[str(v1), 'push'], [str(v2), 'push'], [str(v3.number), 'rollback'], [str(new.number), 'promote']]


# -- errors: a wrong endpoint, missing credentials ------------------------------------------------------
def test_a_wrong_endpoint_or_missing_credentials_is_a_clear_error_without_the_key(s3, tmp_path, capsys,
                                                                                   monkeypatch):
    dest = f's3://{s3.bucket()}/serving'
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        closed = s.getsockname()[1]
    monkeypatch.setenv('AWS_ENDPOINT_URL', f'http://127.0.0.1:{closed}')
    code, out, err = sluice(capsys, 'production', dest)
    assert code == 2
    assert err.startswith(f'sluice: error: Cannot list {dest}: the endpoint http://127.0.0.1:{closed} cannot be '
                          'reached: check AWS_ENDPOINT_URL')
    model = make_model(tmp_path / 'model', 'accuracy=0.5')
    with pytest.raises(Exception, match=f'Cannot list {dest}: the endpoint http://127.0.0.1:{closed} cannot be '
                                        'reached: check AWS_ENDPOINT_URL') as failed:
        PusherExecutor().run(model=model, blessing=None, pushed_model=PushedModel(uri=str(tmp_path)),
                             push_destination=dest)
    assert failed.value.retryable is False

    monkeypatch.setenv('AWS_ENDPOINT_URL', s3.endpoint)
    for name in ('AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY'):
        monkeypatch.delenv(name)
    monkeypatch.setenv('AWS_EC2_METADATA_DISABLED', 'true')
    monkeypatch.setenv('AWS_SHARED_CREDENTIALS_FILE', str(tmp_path / 'none'))
    monkeypatch.setenv('AWS_CONFIG_FILE', str(tmp_path / 'none'))
    code, out2, err2 = sluice(capsys, 'production', dest)
    assert code == 2
    assert err2.startswith(f'sluice: error: Cannot list {dest}: no credentials were found: set AWS_ACCESS_KEY_ID and '
                           'AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the environment')
    for text in (out, err, out2, err2, str(failed.value)):
        assert s3.env['AWS_SECRET_ACCESS_KEY'] not in text and s3.env['AWS_ACCESS_KEY_ID'] not in text


# -- sluice serve following an S3 destination (a real penguin model) ----------------------------------
def _serving_version(server) -> str | None:
    from serving_helpers import call
    status, body, _ = call(server.url + '/v1/models/penguin', timeout=5)
    states = {v['version']: v['state'] for v in (body or {}).get('model_version_status', [])}
    return next((v for v, state in states.items() if state == 'AVAILABLE'), None)


def test_sluice_serve_follows_an_s3_destination_through_a_promotion_and_a_rollback(s3, tmp_path, capsys):
    from serving_helpers import call, serving

    from sluice.examples.penguin.penguin_pipeline import create_pipeline

    bucket = s3.bucket()
    dest = f's3://{bucket}/serving/penguin'
    metadata = f'sqlite:///{tmp_path}/metadata.db'
    result = LocalDagRunner(progress=False).run(create_pipeline(root=str(tmp_path / 'root'), push_destination=dest,
                                                                train_steps=5, metadata=metadata))
    assert result.state == 'COMPLETE', {k: n.error for k, n in result.nodes.items() if n.error}
    first = production(dest).current
    assert first.record['model']['pipeline'] == 'penguin'
    assert {f'serving/penguin/{first.number}/{name}' for name in ('saved_model.pb', 'model.onnx', PUSH_RECORD)} <= \
        set(s3.keys(bucket, f'serving/penguin/{first.number}/'))
    model_dir = result['Trainer'].outputs['model'].uri
    other = tmp_path / 'other-model'  # made by hand, in the layout of Models trained before Trainer.onnx
    shutil.copytree(model_dir, other)
    shutil.copytree(result['Trainer.onnx'].outputs['onnx_model'].uri, other / 'Format-ONNX')
    (other / 'Format-ONNX' / 'NOTE.txt').write_text('same weights, other files')
    row = {'culmen_length_mm': 0.25, 'culmen_depth_mm': 0.67, 'flipper_length_mm': 0.15, 'body_mass_g': 0.29}

    with serving(dest) as server:
        assert _serving_version(server) == str(first.number)
        status, body, headers = call(server.url + '/v1/models/penguin:predict', {'instances': [row]})
        assert status == 200 and body['model_version'] == str(first.number), body

        promoted, _ = promote(dest, str(other), {'pipeline': 'penguin'}, 'a test')
        server.wait_for(lambda: _serving_version(server) == str(promoted.number), 'the promoted version')

        # A push cut off before its record (claim and files, no record): never loaded.
        cut = promoted.number + 5
        client = s3.client()
        client.put_object(Bucket=bucket, Key=f'serving/penguin/{cut}/.sluice-claim', Body=b'{}')
        for rel, _ in objectstore.version_sources(first.path, lambda rel: rel == PUSH_RECORD or rel.startswith('.')):
            client.copy_object(Bucket=bucket, Key=f'serving/penguin/{cut}/{rel}',
                               CopySource={'Bucket': bucket, 'Key': f'serving/penguin/{first.number}/{rel}'})
        time.sleep(1.5)  # several polls
        assert _serving_version(server) == str(promoted.number)

        code, out, err = sluice(capsys, 'rollback', dest, '--to', first.number, '--metadata', metadata)
        assert code == 0, err
        back = production(dest).current
        assert back.number > cut and back.record['target']['version'] == first.number
        server.wait_for(lambda: _serving_version(server) == str(back.number), 'the rolled-back version')
        status, body, _ = call(server.url + '/v1/models/penguin:predict', {'instances': [row]})
        assert status == 200 and body['model_version'] == str(back.number)
        assert f'Version {cut} ' not in server.log()
