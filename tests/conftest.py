from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # tests/dummies.py

import shared_runs  # noqa: E402
from sluice.metadata import MetadataStore  # noqa: E402

# The test files that take longest (seconds of one full run, `--durations=0`, summed per file, with
# the shared runs they make), in that order. With pytest-xdist (`make test`, TEST_WORKERS=3: --dist
# loadfile, and --no-loadscope-reorder so that xdist keeps this order) each file runs whole in one
# worker, taken in collection order: starting the long ones first lets the short ones fill the gaps at
# the end. Among the first are the makers of the session's shared runs (test_examples.py taxi_cli and
# skewed_penguin_run, test_export.py penguin_run, test_kill_matrix.py penguin_cli_run), before most
# of the later files that read them need them, so that no worker waits idle on another's. A file not
# listed keeps its place after these. A run in one process keeps pytest's own order.
LONGEST_FIRST = [
    'tfx_compat/test_tfx_examples.py', 'pipelines/test_examples.py', 'pipelines/test_object_store.py',
    'pipelines/test_export.py', 'components/test_beam_external_workers.py', 'pipelines/test_kill_matrix.py',
    'serving/test_serve.py', 'pipelines/test_leases.py', 'notebooks/test_notebooks.py', 'pipelines/test_tfx_v1.py',
    'pipelines/test_hosts.py', 'pipelines/test_resume_examples.py', 'pipelines/test_watch.py',
    'components/test_data_validation.py', 'pipelines/test_parallel.py', 'pipelines/test_s3_destination.py',
    'pipelines/test_gcs.py', 'components/test_spans.py', 'components/test_beam_runners.py',
    'components/test_beam_pool.py',
    'components/test_transform_cache.py', 'pipelines/test_production.py', 'components/test_transform_paths.py',
    'components/test_tuner.py', 'pipelines/test_cache_code.py', 'pipelines/test_bad_inputs.py',
    'pipelines/test_resume.py', 'pipelines/test_concurrency.py', 'pipelines/test_quiet.py',
    'pipelines/test_partial_runs.py', 'metadata/test_store.py', 'metadata/test_secrets.py',
    'pipelines/test_report_browser.py', 'components/test_example_gen.py', 'pipelines/test_run_node.py',
]


def pytest_collection_modifyitems(config, items):
    if not hasattr(config, 'workerinput'):  # not an xdist worker
        return
    tests = os.path.dirname(os.path.abspath(__file__))
    rank = {os.path.join(tests, name): i for i, name in enumerate(LONGEST_FIRST)}
    order = {id(item): n for n, item in enumerate(items)}
    items.sort(key=lambda item: (rank.get(str(item.path), len(rank)), order[id(item)]))


@pytest.fixture
def store() -> MetadataStore:
    """A real ML-Metadata store, in memory."""
    return MetadataStore(None)


@pytest.fixture
def text_dir(tmp_path):
    """A directory with two small .txt files, the input of the dummy Source component."""
    d = tmp_path / 'input'
    d.mkdir()
    (d / 'a.txt').write_text('hello ')
    (d / 'b.txt').write_text('world')
    return d


def _pg_bin() -> str | None:
    import glob
    found = sorted(glob.glob('/usr/lib/postgresql/*/bin/initdb'))
    return os.path.dirname(found[-1]) if found else None


@contextlib.contextmanager
def postgres_server(prefix: str, max_connections: int = 50, password: str | None = None):
    """A real PostgreSQL server on loopback in a temporary directory (from the system's PostgreSQL
    packages; .ci/run installs them when missing), its superuser ``sluice``: trusted, or with
    ``password`` SCRAM authentication only. Yields (port, bin directory, run-as-postgres prefix)."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.fail('PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin); install the '
                    "system package 'postgresql' (.ci/run does).")
    data = pathlib.Path(tempfile.mkdtemp(prefix=prefix))  # outside pytest's 0700 tree
    auth = ['-A', 'trust']
    if password is not None:
        (data / 'pw').write_text(password + '\n')
        auth = ['-A', 'scram-sha-256', f'--pwfile={data / "pw"}']
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        for path in data.iterdir():
            shutil.chown(path, 'postgres', 'postgres')
        shutil.chown(data, 'postgres', 'postgres')
        as_user = ['runuser', '-u', 'postgres', '--']
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]

    def pg(*args: str) -> None:
        subprocess.run([*as_user, *args], check=True, capture_output=True, timeout=120)

    pg(f'{bindir}/initdb', '-D', str(data / 'db'), *auth, '-U', 'sluice')
    if password is not None:
        (data / 'pw').unlink()
    pg(f'{bindir}/pg_ctl', '-D', str(data / 'db'), '-w', '-l', str(data / 'server.log'), '-o',
       f'-p {port} -k {data} -c listen_addresses=127.0.0.1 -c max_connections={max_connections}', 'start')
    try:
        yield port, bindir
    finally:
        pg(f'{bindir}/pg_ctl', '-D', str(data / 'db'), '-m', 'immediate', 'stop')
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope='session')
def postgres_url():
    """A trusted PostgreSQL server for the duration of the tests, with an empty database ``mlmd``."""
    with postgres_server('sluice-pg-') as (port, bindir):
        subprocess.run([f'{bindir}/createdb', '-h', '127.0.0.1', '-p', str(port), '-U', 'sluice', 'mlmd'],
                       check=True, capture_output=True, timeout=120)
        yield f'postgresql://sluice@127.0.0.1:{port}/mlmd'


@pytest.fixture(params=['sqlite', 'postgresql'])
def store_url(request, tmp_path):
    """A new store on each backend: SQLite in tmp_path, and a database of its own on the session's
    PostgreSQL server; created before the test starts its processes, as a team sharing one does."""
    if request.param == 'sqlite':
        url = f'sqlite:///{tmp_path}/metadata.db'
    else:  # one database per test on the shared server
        import uuid
        base = request.getfixturevalue('postgres_url')
        name = 'mlmd_' + uuid.uuid4().hex[:8]
        port = base.rsplit(':', 1)[1].split('/')[0]
        subprocess.run([f'{_pg_bin()}/createdb', '-h', '127.0.0.1', '-p', port, '-U', 'sluice', name], check=True)
        url = base.rsplit('/', 1)[0] + '/' + name
    MetadataStore(url)  # create the store first, as a team sharing one does
    return url


# -- runs of the example pipelines that several test files read (see tests/shared_runs.py) ----------
class S3:
    """An S3 server on loopback (moto's server mode) and the environment that points at it."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.env = {'AWS_ENDPOINT_URL': endpoint, 'AWS_ACCESS_KEY_ID': 'sluice-test-id',
                    'AWS_SECRET_ACCESS_KEY': 'sluice-test-secret-9f3k', 'AWS_DEFAULT_REGION': 'us-east-1'}
        self._count = 0

    def client(self):
        import boto3
        return boto3.client('s3', endpoint_url=self.endpoint, aws_access_key_id=self.env['AWS_ACCESS_KEY_ID'],
                            aws_secret_access_key=self.env['AWS_SECRET_ACCESS_KEY'], region_name='us-east-1')

    def bucket(self, prefix: str = 'sluice') -> str:
        """A new, empty bucket; its name."""
        self._count += 1
        name = f'{prefix}-{os.getpid()}-{self._count}'
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = '') -> list[str]:
        pages = self.client().get_paginator('list_objects_v2').paginate(Bucket=bucket, Prefix=prefix)
        return sorted(o['Key'] for page in pages for o in page.get('Contents', []))

    def upload(self, path: str, bucket: str, key: str) -> None:
        self.client().upload_file(path, bucket, key)


@pytest.fixture(scope='session')
def s3_server():
    """moto's S3 server on a free loopback port for the session."""
    from moto.server import ThreadedMotoServer
    server = ThreadedMotoServer(ip_address='127.0.0.1', port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield S3(f'http://{host}:{port}')
    server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch, tmp_path):
    """The session's S3 server, with this process's environment pointing at it (children inherit it)
    and a fresh local cache (SLUICE_CACHE_DIR) for the copies of remote artifacts."""
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv('SLUICE_CACHE_DIR', str(tmp_path / 'sluice-cache'))
    yield s3_server


class GCS:
    """A Cloud Storage emulator on loopback (gcp-storage-emulator, in memory) and the environment that
    points at it. The emulator ignores preconditions (``ifGenerationMatch``): the exclusive create a
    push destination's claim relies on is not enforced there, so races are tested on S3 only."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.env = {'STORAGE_EMULATOR_HOST': endpoint}
        self._count = 0

    def client(self):
        from sluice.metadata.gcs import client_module
        storage = client_module()
        from google.auth.credentials import AnonymousCredentials
        return storage.Client(project='sluice-test', credentials=AnonymousCredentials(),
                              client_options={'api_endpoint': self.endpoint})

    def bucket(self, prefix: str = 'sluice') -> str:
        self._count += 1
        name = f'{prefix}-{os.getpid()}-{self._count}'
        self.client().create_bucket(name)
        return name

    def keys(self, bucket: str, prefix: str = '') -> list[str]:
        return sorted(b.name for b in self.client().list_blobs(bucket, prefix=prefix))

    def read(self, bucket: str, key: str) -> bytes:
        return self.client().bucket(bucket).blob(key).download_as_bytes()

    def upload(self, path: str, bucket: str, key: str) -> None:
        self.client().bucket(bucket).blob(key).upload_from_filename(path)


@pytest.fixture(scope='session')
def gcs_server():
    """gcp-storage-emulator on a free loopback port for the session."""
    import logging

    from gcp_storage_emulator.server import create_server
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    server = create_server('127.0.0.1', port, in_memory=True)
    server.start()
    logging.getLogger('gcp_storage_emulator').setLevel(logging.WARNING)
    yield GCS(f'http://127.0.0.1:{port}')
    server.stop()


@pytest.fixture
def gcs(gcs_server, monkeypatch, tmp_path):
    """The session's GCS emulator, with this process's environment pointing at it (children inherit
    it) and a fresh local cache for the copies of remote artifacts."""
    for key, value in gcs_server.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv('SLUICE_CACHE_DIR', str(tmp_path / 'sluice-cache'))
    yield gcs_server


@pytest.fixture(scope='session')
def taxi_cli(tmp_path_factory):
    """``sluice run`` of the taxi example from a fresh directory, made once in the session: (that
    directory, the finished process). Its root is runs/taxi there. Run the pipeline again there only
    within ``shared_runs.changing(directory.parent)``."""
    where, info = shared_runs.once(tmp_path_factory, 'taxi-cli', shared_runs.command_line(shared_runs.TAXI))
    return where / 'work', shared_runs.completed(info)


@pytest.fixture(scope='session')
def penguin_run(tmp_path_factory):
    """The penguin example (train_steps=20) run once in the session: (its root, what the run's
    outcome was: run_id, metadata, state, node_states, errors). Only tests/pipelines/test_bad_inputs.py
    runs anything more on it (it pushes nothing); the others read its first run."""
    where, info = shared_runs.once(tmp_path_factory, 'penguin',
                                   shared_runs.in_process(shared_runs.PENGUIN, train_steps=20))
    return where / 'root', info


@pytest.fixture(scope='session')
def skewed_penguin_run(tmp_path_factory):
    """The penguin example on its skewed data (stopped by ExampleValidator), run once in the session:
    (its root, what the run's outcome was). Read only."""
    data = os.path.join(shared_runs.EXAMPLES, 'penguin', 'skewed')
    where, info = shared_runs.once(tmp_path_factory, 'penguin-skewed', shared_runs.in_process(shared_runs.PENGUIN,
                                                                                               data=data))
    return where / 'root', info


@pytest.fixture(scope='session')
def penguin_cli_run(tmp_path_factory):
    """``sluice run`` of the penguin example as it is (``main([...])`` in the test process, the store
    m.db beside its root), once in the session: (its directory, exit status, output, store URL). Only
    tests/pipelines/test_partial_runs.py runs anything more on it; the others read its first run."""
    return shared_runs.once(tmp_path_factory, 'penguin-cli', shared_runs.command_in_process(
        'run', shared_runs.PENGUIN, '--metadata', '{store}'))
