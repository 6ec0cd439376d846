"""sluice.metadata.storage against a real S3 server on loopback (moto): the calls every component goes
through for s3:// URLs, and the local copies that executors read."""
from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys

import pytest

from sluice.metadata import storage


def test_urls_are_kept_and_local_paths_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert storage.normalize('s3://bucket/runs/penguin/') == 's3://bucket/runs/penguin'
    assert storage.normalize('runs/penguin') == str(tmp_path / 'runs' / 'penguin')
    assert storage.join('s3://bucket/runs', 'Trainer', 'model', '7') == 's3://bucket/runs/Trainer/model/7'
    with pytest.raises(storage.StorageError, match=r'hdfs://nn/runs: the hdfs:// scheme is not supported; use a '
                                                   r'local path, s3:// or gs://'):
        storage.normalize('hdfs://nn/runs')


@pytest.fixture(params=['s3', 'gs'])
def bucket_of(request):
    """(the server, its URL scheme): moto's S3, then the Cloud Storage emulator."""
    return request.getfixturevalue('s3' if request.param == 's3' else 'gcs'), request.param


def test_a_tree_goes_up_and_comes_back_with_sizes_and_etags(bucket_of, tmp_path):
    server, scheme = bucket_of
    bucket = server.bucket()
    local = tmp_path / 'model'
    (local / 'variables').mkdir(parents=True)
    (local / 'saved_model.pb').write_bytes(b'graph')
    (local / 'variables' / 'variables.index').write_bytes(b'index!')
    url = f'{scheme}://{bucket}/Trainer/model/3'
    assert storage.upload_tree(url, str(local)) == 2
    assert server.keys(bucket) == ['Trainer/model/3/saved_model.pb', 'Trainer/model/3/variables/variables.index']
    assert storage.isdir(url) and storage.exists(url) and not storage.isfile(url)
    assert storage.isfile(f'{url}/saved_model.pb') and not storage.exists(f'{url}/nothing')
    assert storage.listdir(url) == ['saved_model.pb', 'variables']
    assert storage.listdir(f'{scheme}://{bucket}/nothing/here') == []
    assert storage.glob_files(f'{scheme}://{bucket}/Trainer/*/3/*.pb') == [f'{url}/saved_model.pb']
    state = storage.tree_state(url)  # the ETag of a single-part upload is the MD5 of its bytes (GCS: its MD5)
    assert state[f'{url}/saved_model.pb'] == (5, hashlib.md5(b'graph').hexdigest())
    assert storage.stat(f'{url}/saved_model.pb') == {'size': 5, 'version': hashlib.md5(b'graph').hexdigest()}
    assert storage.read_bytes(f'{url}/variables/variables.index') == b'index!'
    with storage.open_file(f'{url}/variables/variables.index') as f:
        assert f.read(5) == b'index'
    assert storage.size(f'{scheme}://{bucket}/Trainer') == 11
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(f'{url}/nothing')
    with storage.open_file(f'{scheme}://{bucket}/notes/a.json', 'wb') as f:
        f.write(b'{"a": 1}')
    assert storage.read_bytes(f'{scheme}://{bucket}/notes/a.json') == b'{"a": 1}'

    copy = storage.local_copy(url)
    assert copy == os.path.join(str(tmp_path / 'sluice-cache'), scheme, bucket, 'Trainer', 'model', '3')
    assert sorted(os.path.relpath(os.path.join(d, f), copy) for d, _, fs in os.walk(copy) for f in fs) == \
        ['saved_model.pb', 'variables/variables.index']
    storage.remove_tree(url)
    assert server.keys(bucket) == ['notes/a.json'] and not os.path.exists(copy), \
        "the objects and this machine's copy are gone"


def test_an_artifact_without_files_still_exists_in_the_store(s3, tmp_path):
    bucket = s3.bucket()
    (tmp_path / 'empty').mkdir()
    storage.upload_tree(f's3://{bucket}/Gate/blessing/4', str(tmp_path / 'empty'))
    assert storage.exists(f's3://{bucket}/Gate/blessing/4')
    assert s3.keys(bucket) == ['Gate/blessing/4/.sluice-empty']


COPIER = '''
import sys
from sluice.metadata import storage
print(storage.local_copy(sys.argv[1]))
'''


def test_processes_copying_one_artifact_at_once_all_get_it_whole(s3, tmp_path):
    bucket = s3.bucket()
    client = s3.client()
    files = {f'Split-{s}/data-{i:05d}.gz': os.urandom(2000 + i) for s in ('train', 'eval') for i in range(40)}
    for key, body in files.items():
        client.put_object(Bucket=bucket, Key=f'CsvExampleGen/examples/1/{key}', Body=body)
    url = f's3://{bucket}/CsvExampleGen/examples/1'
    env = {**os.environ, 'PYTHONWARNINGS': 'ignore'}
    copiers = [subprocess.Popen([sys.executable, '-c', COPIER, url], env=env, stdout=subprocess.PIPE, text=True)
               for _ in range(4)]
    paths = {c.communicate(timeout=120)[0].strip() for c in copiers}
    assert [c.returncode for c in copiers] == [0, 0, 0, 0]
    [copy] = paths
    for key, body in files.items():
        with open(os.path.join(copy, key), 'rb') as f:
            assert f.read() == body, key
    parent = os.path.dirname(copy)
    assert os.listdir(parent) == ['1'], 'no partial download is left beside the copy'


def test_a_missing_bucket_names_itself_and_what_to_do(s3):
    with pytest.raises(storage.StorageError) as caught:
        storage.listdir('s3://no-such-bucket-here/runs')
    text = str(caught.value)
    assert text.startswith('Cannot list s3://no-such-bucket-here/runs: it does not exist at ' + s3.endpoint)
    assert 'create the bucket, or fix the URL or AWS_ENDPOINT_URL' in text


# -- gs:// on a Cloud Storage emulator (sluice.metadata.gcs) ------------------------------------------
def test_gcs_single_objects_for_push_destinations(gcs):
    bucket = gcs.bucket()
    dest = f'gs://{bucket}/serving'
    assert storage.create_exclusive(f'{dest}/1/.sluice-claim', b'{}') is True
    assert storage.put_object(f'{dest}/1/saved_model.pb', b'graph') == hashlib.md5(b'graph').hexdigest()
    storage.copy_object(f'{dest}/2/saved_model.pb', f'{dest}/1/saved_model.pb')
    listed = storage.list_objects(dest)
    assert sorted(listed) == ['1/.sluice-claim', '1/saved_model.pb', '2/saved_model.pb']
    assert listed['2/saved_model.pb']['etag'] == listed['1/saved_model.pb']['etag'] == hashlib.md5(b'graph').hexdigest()
    assert listed['1/saved_model.pb']['size'] == 5 and listed['1/saved_model.pb']['modified'] > 0
    assert storage.list_prefixes(dest) == ['1', '2']
    assert storage.list_objects(f'gs://{bucket}/none') == {}


def test_gcs_errors_name_the_url_and_the_setting(gcs, tmp_path, monkeypatch):
    with pytest.raises(storage.StorageError) as caught:
        storage.listdir('gs://no-such-bucket-here/runs')
    assert str(caught.value).startswith('Cannot list gs://no-such-bucket-here/runs: it does not exist at the '
                                        f'emulator at {gcs.endpoint} (')
    assert str(caught.value).endswith('create the bucket, or fix the URL or STORAGE_EMULATOR_HOST.')

    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        closed = s.getsockname()[1]
    monkeypatch.setenv('STORAGE_EMULATOR_HOST', f'http://127.0.0.1:{closed}')
    with pytest.raises(storage.StorageError, match='cannot be reached'):  # not "it does not exist"
        storage.exists('gs://b/runs/x')
    with pytest.raises(storage.StorageError, match=rf'^Cannot list gs://b/runs: the emulator at '
                                                   rf'http://127.0.0.1:{closed} cannot be reached: check '
                                                   r'STORAGE_EMULATOR_HOST \(an emulator\) or unset it for Google '
                                                   r'Cloud Storage itself\.$'):
        storage.listdir('gs://b/runs')

    monkeypatch.delenv('STORAGE_EMULATOR_HOST')
    monkeypatch.setenv('GOOGLE_APPLICATION_CREDENTIALS', str(tmp_path / 'no-key.json'))
    with pytest.raises(storage.StorageError, match=r'^Cannot read gs://b/runs/x: no Google credentials were found: '
                                                   r'set GOOGLE_APPLICATION_CREDENTIALS to a service account key '
                                                   r'file, or run `gcloud auth application-default login`'):
        storage.read_bytes('gs://b/runs/x')
