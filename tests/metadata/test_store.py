"""MetadataStore on real ML-Metadata: URLs, types, contexts, the execution life cycle, queries."""
from __future__ import annotations

import json
import socket

import pytest
from ml_metadata.proto import metadata_store_pb2 as pb

from sluice.metadata import Examples, MetadataStore, MetadataStoreError, Model, STANDARD_TYPES
from sluice.metadata.connection import _connection_config


@pytest.mark.parametrize('url, kind, detail', [
    (None, 'fake_database', None),
    (':memory:', 'fake_database', None),
    ('sqlite:///rel/dir/m.db', 'sqlite', 'rel/dir/m.db'),
    ('sqlite:////abs/dir/m.db', 'sqlite', '/abs/dir/m.db'),
    ('postgresql://alice:s3cret@db.example:6543/mlmd', 'postgresql', ('db.example', '6543', 'mlmd', 'alice', 's3cret')),
    ('mysql://bob@mysql.example/meta', 'mysql', ('mysql.example', 3306, 'meta', 'bob', '')),
])
def test_connection_config_from_url(url, kind, detail, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv('SLUICE_METADATA_PASSWORD', raising=False)  # a URL without a password would take it
    if kind == 'sqlite' and detail.startswith('/abs'):
        url, detail = f'sqlite:///{tmp_path}/abs/m.db', f'{tmp_path}/abs/m.db'
    config, _ = _connection_config(url)
    assert config.WhichOneof('config') == kind
    if kind == 'sqlite':
        assert config.sqlite.filename_uri == str(tmp_path / detail) if not detail.startswith('/') else detail
    if kind == 'postgresql':
        c = config.postgresql
        assert (c.host, c.port, c.dbname, c.user, c.password) == detail
    if kind == 'mysql':
        c = config.mysql
        assert (c.host, c.port, c.database, c.user, c.password) == detail


def test_bad_urls_and_unreachable_servers_get_clear_errors(tmp_path):
    with pytest.raises(MetadataStoreError, match=r"Unsupported metadata URL 'redis://x'.*sqlite:///path"):
        MetadataStore('redis://x')
    with pytest.raises(MetadataStoreError, match='names no file'):
        MetadataStore('sqlite://')
    blocker = tmp_path / 'file'
    blocker.write_text('')
    with pytest.raises(MetadataStoreError, match=r'Cannot create the directory .*file/sub.* Choose a writable'):
        MetadataStore(f'sqlite:///{blocker}/sub/m.db')
    with socket.socket() as s:  # a port with nothing listening on it
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    with pytest.raises(MetadataStoreError, match=rf'Cannot connect to the metadata store at '
                                                 rf'postgresql://u:\*\*\*@127.0.0.1:{port}/db.*server is running'):
        MetadataStore(f'postgresql://u:pw@127.0.0.1:{port}/db')


def test_registers_standard_types_and_context_types(store):
    names = {t.name: t for t in store.mlmd.get_artifact_types()}
    for cls in STANDARD_TYPES:
        assert cls.__name__ in names
    assert names['Examples'].properties['split_names'] == pb.STRING
    assert names['Examples'].properties['span'] == pb.INT
    assert names['ModelBlessing'].properties['blessed'] == pb.INT
    assert names['Model'].properties['onnx_max_abs_diff'] == pb.DOUBLE
    assert names['PushedModel'].properties['pushed_destination'] == pb.STRING
    assert {t.name for t in store.mlmd.get_context_types()} >= {'pipeline', 'pipeline_run', 'node', 'sluice_lease',
                                                                 'sluice_settlement'}


def test_sqlite_store_persists_between_connections(tmp_path):
    url = f'sqlite:///{tmp_path}/m.db'
    MetadataStore(url).register_run('p', 'run-1', {'node_ids': '["A"]'})
    assert [r.run_id for r in MetadataStore(url).runs()] == ['run-1']


def _examples(uri='/tmp/x'):
    e = Examples(uri=uri, split_names=['train', 'eval'])
    e.set('fingerprint', 'fp-1')
    return e


def test_execution_life_cycle_and_contexts(store, tmp_path):
    store.register_run('p', 'r1', {'node_ids': json.dumps(['Gen', 'Train'])})
    gen_id = store.register_execution('ExampleGen', 'p', 'r1', 'Gen', {}, {'cache_key': 'k1'})
    [running] = store.mlmd.get_executions_by_id([gen_id])
    assert running.last_known_state == pb.Execution.RUNNING
    assert store.mlmd.get_artifacts() == []  # nothing before publishing

    examples = _examples(str(tmp_path))
    store.publish_execution(gen_id, 'p', 'r1', 'Gen', {'examples': [examples]})
    assert examples.id is not None and examples.state == 'LIVE'
    [done] = store.mlmd.get_executions_by_id([gen_id])
    assert done.last_known_state == pb.Execution.COMPLETE
    [artifact] = store.mlmd.get_artifacts()
    assert artifact.state == pb.Artifact.LIVE and artifact.uri == str(tmp_path)
    assert json.loads(artifact.properties['split_names'].string_value) == ['train', 'eval']

    # Every execution and artifact is linked to its pipeline, run and node contexts, and the publish
    # settled the execution (the context that lets only one ending through, see the fencing tests).
    settled = store.mlmd.get_context_type('sluice_settlement').id
    ctx = store.mlmd.get_contexts_by_execution(gen_id)
    assert sorted(c.name for c in ctx if c.type_id != settled) == ['p', 'p.Gen', 'r1']
    assert [c.name for c in ctx if c.type_id == settled] == [str(gen_id)]
    assert sorted(c.name for c in store.mlmd.get_contexts_by_artifact(examples.id)
                  if c.type_id != settled) == ['p', 'p.Gen', 'r1']
    run_ctx = store.mlmd.get_context_by_type_and_name('pipeline_run', 'r1')
    [parent] = store.mlmd.get_parent_contexts_by_context(run_ctx.id)
    assert parent.name == 'p'

    # A failed execution with an INPUT event: the error is recorded, no output artifact appears.
    train_id = store.register_execution('Trainer', 'p', 'r1', 'Train', {'examples': [examples]}, {'cache_key': 'k2'})
    [event] = [e for e in store.mlmd.get_events_by_execution_ids([train_id])]
    assert event.type == pb.Event.INPUT and event.artifact_id == examples.id
    assert [s.key for s in event.path.steps if s.HasField('key')] == ['examples']
    store.fail_execution(train_id, 'ValueError', 'ValueError: bad data', 'Traceback ...')
    record = store.execution(train_id)
    assert record.state == 'FAILED' and record.error == 'ValueError: bad data'
    assert record.properties['error_type'] == 'ValueError'
    assert len(store.mlmd.get_artifacts()) == 1

    run = store.run('r1')
    assert run.state == 'FAILED' and run.nodes_done == 1 and run.node_ids == ['Gen', 'Train']
    assert store.node_outputs('r1', 'Gen')['examples'][0].id == examples.id
    assert store.node_outputs('r1', 'Train') is None


def test_cached_execution_points_at_reused_artifacts_and_lineage_prefers_the_producer(store, tmp_path):
    store.register_run('p', 'r1', {'node_ids': '["Gen", "Train"]'})
    gen_id = store.register_execution('ExampleGen', 'p', 'r1', 'Gen', {}, {'cache_key': 'k1'})
    examples = _examples(str(tmp_path))
    store.publish_execution(gen_id, 'p', 'r1', 'Gen', {'examples': [examples]})
    train_id = store.register_execution('Trainer', 'p', 'r1', 'Train', {'examples': [examples]}, {'cache_key': 'k2'})
    model = Model(uri=str(tmp_path / 'm'))
    store.publish_execution(train_id, 'p', 'r1', 'Train', {'model': [model]})

    [candidate] = store.cache_candidates('p', 'Gen', 'k1')
    assert candidate.id == gen_id and candidate.outputs['examples'][0].id == examples.id
    assert store.cache_candidates('p', 'Gen', 'other') == []
    assert store.cache_candidates('p', 'Nope', 'k1') == []

    store.register_run('p', 'r2', {'node_ids': '["Gen", "Train"]'})
    cached_id = store.record_cached_execution('ExampleGen', 'p', 'r2', 'Gen', {}, {'examples': [examples]},
                                              {'cache_key': 'k1'})
    assert store.execution(cached_id).state == 'CACHED'
    assert store.node_outputs('r2', 'Gen')['examples'][0].id == examples.id
    assert [r.run_id for r in store.runs('p')] == ['r1', 'r2']
    assert store.runs('other') == []
    # Only COMPLETE executions are cache candidates, never the CACHED records that point at them.
    assert [c.id for c in store.cache_candidates('p', 'Gen', 'k1')] == [gen_id]

    tree = store.lineage(model.id)
    assert tree.execution.id == train_id
    [child] = tree.inputs['examples']
    assert child.artifact.id == examples.id and child.execution.id == gen_id  # not the CACHED one
    assert [n.artifact.id for n in tree.walk()] == [model.id, examples.id]


def test_unknown_run_and_artifact_are_clear_errors(store):
    store.register_run('p', 'known', {})
    with pytest.raises(MetadataStoreError, match=r"No run 'nope' in the metadata store memory://\. Known runs: known"):
        store.run('nope')
    with pytest.raises(MetadataStoreError, match='No artifact 99'):
        store.lineage(99)
    with pytest.raises(MetadataStoreError, match="Run id 'known' already exists"):
        store.register_run('p', 'known', {})


@pytest.mark.parametrize('version, message', [
    (100, r'has ML-Metadata schema version 100, newer than the version 10 that ml-metadata 1\.16\.0 uses\. Sluice '
          r'never migrates a store silently: use the newer ml-metadata'),
    (7, r'has ML-Metadata schema version 7, older than the version 10 .* back it up, then migrate it'),
])
def test_schema_version_is_checked_on_connect_never_migrated(tmp_path, version, message):
    import sqlite3
    from contextlib import closing
    path = tmp_path / 'm.db'
    MetadataStore(f'sqlite:///{path}')
    with closing(sqlite3.connect(path)) as db, db:
        db.execute('UPDATE MLMDEnv SET schema_version = ?', (version,))
    with pytest.raises(MetadataStoreError, match=message):
        MetadataStore(f'sqlite:///{path}')
    with closing(sqlite3.connect(path)) as db:  # untouched
        assert db.execute('SELECT schema_version FROM MLMDEnv').fetchall() == [(version,)]


def new_store_url(kind, tmp_path, request, name):
    """The URL of a store nobody has opened yet: a SQLite file, or a new database on the test server."""
    if kind == 'sqlite':
        return f'sqlite:///{tmp_path}/{name}.db'
    import subprocess
    import uuid

    from conftest import _pg_bin
    base = request.getfixturevalue('postgres_url')
    db = f'{name}_{uuid.uuid4().hex[:8]}'
    port = base.rsplit(':', 1)[1].split('/')[0]
    subprocess.run([f'{_pg_bin()}/createdb', '-h', '127.0.0.1', '-p', port, '-U', 'sluice', db], check=True)
    return base.rsplit('/', 1)[0] + '/' + db


OPEN_AT = '''
import sys, time
from sluice.metadata import MetadataStore, base
at = float(sys.argv[2])

def at_once(register, later):  # its first call, by every process at one instant (at + later)
    waited = []
    def call(self, *args, **kwargs):
        if not waited:
            waited.append(time.sleep(max(0.0, at + later - time.time())))
        return register(self, *args, **kwargs)
    return call

base.StoreBase._put_missing_types = at_once(base.StoreBase._put_missing_types, 2)  # a new store's types
base.StoreBase.execution_type_id = at_once(base.StoreBase.execution_type_id, 4)  # a new node's first execution
time.sleep(max(0.0, at - time.time()))  # every process connects at the same moment
store = MetadataStore(sys.argv[1])
store.register_run('p', sys.argv[3], {})
store.register_execution('Gen', 'p', sys.argv[3], 'Gen', {}, {})
print('opened')
'''


@pytest.mark.parametrize('kind', ['sqlite', 'postgresql'])
def test_processes_opening_a_new_store_at_once_all_succeed(kind, tmp_path, request):
    """The first processes of a team (or of an orchestrator's first tasks) may all find the store
    empty and create its schema and types at the same moment: every one of them must get a store, and
    one of each type (ML-Metadata's type table has no unique name: on PostgreSQL each process inserted
    its own copy and the runs it recorded went missing from the others' view)."""
    import collections
    import subprocess
    import sys
    import time

    for round_ in range(2):
        url = new_store_url(kind, tmp_path, request, f'fresh{round_}')
        at = str(time.time() + 3)
        procs = [subprocess.Popen([sys.executable, '-c', OPEN_AT, url, at, f'r{i}'], text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for i in range(4)]
        outs = [p.communicate(timeout=120)[0] for p in procs]
        assert [p.returncode for p in procs] == [0] * 4, '\n'.join(outs)
        store = MetadataStore(url)
        assert sorted(r.run_id for r in store.runs()) == ['r0', 'r1', 'r2', 'r3']
        [node] = store.mlmd.get_contexts_by_type('node')  # one, though each execution's write could create it
        assert len(store.mlmd.get_executions_by_context(node.id)) == 4
        for kind in ('artifact', 'execution', 'context'):
            names = collections.Counter(t.name for t in getattr(store.mlmd, f'get_{kind}_types')())
            assert not [name for name, n in names.items() if n > 1], (kind, names)


@pytest.mark.parametrize('kind', ['sqlite', 'postgresql'])
def test_long_values_are_recorded_on_every_backend(kind, tmp_path, request):
    """A stored pipeline, a traceback, a long push reason: PostgreSQL refuses to index a string
    property over 2,704 bytes, so such values must still be recorded and read back whole."""
    store = MetadataStore(new_store_url(kind, tmp_path, request, 'long'))
    pickle = 'QUJD' * 20_000  # 80 kB, as a pipeline pickled with its module's functions can be
    store.register_run('p', 'r1', {'pipeline_pickle': pickle, 'note': 'short', 'list': list(range(2000))})
    props = store.run('r1').properties
    assert props['pipeline_pickle'] == pickle and props['note'] == 'short'
    assert json.loads(props['list']) == list(range(2000))
    store.update_run('r1', {'pipeline_pickle': pickle + '=='})
    assert store.run('r1').properties['pipeline_pickle'] == pickle + '=='

    ex = store.register_execution('Trainer', 'p', 'r1', 'Train', {}, {'cache_key_parts': 'é' * 3000})
    details = ''.join(f'  File "module_{i}.py", line {i}, in step\n' for i in range(400))
    store.fail_execution(ex, 'ValueError', 'ValueError: ' + 'bad ' * 800, details)
    record = store.execution(ex)
    assert record.state == 'FAILED' and record.error.startswith('ValueError: bad bad')
    assert record.properties['error_details'] == details[-8000:] and record.properties['cache_key_parts'] == 'é' * 3000

    gen = store.register_execution('ExampleGen', 'p', 'r1', 'Gen', {}, {})
    examples = _examples(str(tmp_path))
    examples.set('row_counts', {f'split_{i}': i for i in range(300)})
    store.publish_execution(gen, 'p', 'r1', 'Gen', {'examples': [examples]})
    [back] = store.node_outputs('r1', 'Gen')['examples']
    assert json.loads(back.get('row_counts')) == {f'split_{i}': i for i in range(300)}


def test_a_new_sqlite_store_writes_ahead_and_gets_its_types_in_one_write(tmp_path, monkeypatch):
    """A new store's file is in write-ahead-log mode and its types come in one transaction; a second
    connection writes nothing; a store made before, by ML-Metadata alone (rollback journal, a type
    lacking a property Sluice declares), keeps its mode and has the type completed, same id."""
    import sqlite3
    from contextlib import closing

    from ml_metadata.metadata_store import metadata_store as mlmd

    calls = []
    real = mlmd.MetadataStore._pywrap_cc_call

    def counted(self, method, request, response):
        calls.append(method.__name__)
        return real(self, method, request, response)

    monkeypatch.setattr(mlmd.MetadataStore, '_pywrap_cc_call', counted)

    def journal(path):
        with closing(sqlite3.connect(path)) as db:
            return db.execute('PRAGMA journal_mode').fetchone()[0]

    MetadataStore(f'sqlite:///{tmp_path}/new.db')
    assert [c for c in calls if c.startswith('Put')] == ['PutTypes']
    calls.clear()
    MetadataStore(f'sqlite:///{tmp_path}/new.db').register_run('p', 'r1', {})
    assert [c for c in calls if c.startswith('Put') and c != 'PutParentContexts'] == ['PutContexts'] * 2  # p, r1
    assert journal(tmp_path / 'new.db') == 'wal'

    config = pb.ConnectionConfig()
    config.sqlite.filename_uri = str(tmp_path / 'old.db')
    old = mlmd.MetadataStore(config)
    examples = old.put_artifact_type(pb.ArtifactType(name='Examples', properties={'split_names': pb.STRING}))
    del old
    store = MetadataStore(f'sqlite:///{tmp_path}/old.db')
    store.register_run('p', 'r1', {})
    stored = store.mlmd.get_artifact_type('Examples')
    assert stored.id == examples and stored.properties['span'] == pb.INT
    del store  # Python's SQLite must not open a file ML-Metadata's has open in this process
    assert journal(tmp_path / 'old.db') == 'delete'

    # A store deleted by hand after a kill, its write-ahead log left beside it: a new store, empty.
    import shutil
    killed = MetadataStore(f'sqlite:///{tmp_path}/killed.db')
    killed.register_run('p', 'r2', {})
    shutil.copy(tmp_path / 'killed.db-wal', tmp_path / 'left-wal')  # every page of it, as a kill leaves it
    del killed
    (tmp_path / 'killed.db').unlink()
    shutil.move(tmp_path / 'left-wal', tmp_path / 'killed.db-wal')
    assert MetadataStore(f'sqlite:///{tmp_path}/killed.db').runs() == []  # not r2 again
