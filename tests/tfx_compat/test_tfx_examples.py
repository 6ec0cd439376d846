"""TFX's own example pipelines, read from TFX's released wheel, run on Sluice with only their ``tfx``
imports re-pointed (``tfx`` -> ``sluice.tfx``) and their module files unchanged otherwise.

The wheel is downloaded once per machine (``pip download --no-deps``; it is not installed) into the
user's cache directory, as the Airflow tests build their environment. Each pipeline file runs as its
author runs it, ``python FILE.py`` with ``HOME`` set to a directory laid out as the file expects
(``~/taxi/data/simple``, ``~/taxi/<module file>``), on the project's own data."""
from __future__ import annotations

import fcntl
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

from sluice.metadata import MetadataStore

REPO = pathlib.Path(__file__).resolve().parents[2]
TFX_VERSION = '1.16.0'
# The one change made to TFX's files: its imports, at the start of a line, re-pointed to Sluice's tree;
# a module file's import of its sibling from TFX's examples package becomes a plain import of the
# sibling, which sits beside it (as a user's copy of both files would).
TFX_IMPORT = re.compile(r'^(\s*)(from|import) tfx\b', re.MULTILINE)
SIBLING = re.compile(r'^(\s*)from tfx\.examples\.\w+ import (\w+)', re.MULTILINE)


def repoint(source: str) -> str:
    return TFX_IMPORT.sub(r'\1\2 sluice.tfx', SIBLING.sub(r'\1import \2', source))


@pytest.fixture(scope='module')
def tfx_examples() -> pathlib.Path:
    """``tfx/examples`` (and ``tfx/proto``) of TFX's wheel, extracted into the user's cache directory (kept
    between runs)."""
    cache = pathlib.Path(os.environ.get('XDG_CACHE_HOME', pathlib.Path.home() / '.cache')) / 'sluice'
    where = cache / f'tfx-{TFX_VERSION}'
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f'tfx-{TFX_VERSION}.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (where / 'tfx' / 'examples').is_dir() or not (where / 'tfx' / 'proto').is_dir():
            download = where.with_suffix('.download')
            proc = subprocess.run([sys.executable, '-m', 'pip', 'download', '--no-deps', '--python-version', '3.10',
                                   '--only-binary=:all:', f'tfx=={TFX_VERSION}', '-d', str(download), '-q'],
                                  capture_output=True, text=True, timeout=600)
            assert proc.returncode == 0, f'downloading TFX {TFX_VERSION} from the package index failed:\n{proc.stderr}'
            [wheel] = download.glob('tfx-*.whl')
            with zipfile.ZipFile(wheel) as z:
                z.extractall(where, [n for n in z.namelist() if n.startswith(('tfx/examples/', 'tfx/proto/'))])
    return where / 'tfx' / 'examples'


def copy_repointed(source: pathlib.Path, target: pathlib.Path) -> str:
    original = source.read_text()
    changed = repoint(original)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(changed)
    # Only import lines differ, and every TFX import was re-pointed.
    diff = [(a, b) for a, b in zip(original.splitlines(), changed.splitlines()) if a != b]
    assert diff and all(re.match(r'\s*(from sluice\.tfx\b|import \w+)', b) for _, b in diff)
    assert not TFX_IMPORT.search(changed)
    return changed


def run_file(path: pathlib.Path, home: pathlib.Path, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, 'HOME': str(home), **env}
    return subprocess.run([sys.executable, path.name], cwd=path.parent, env=environ, capture_output=True, text=True,
                          timeout=1200)


def sluice_resume(run_id: str, db: pathlib.Path, home: pathlib.Path) -> subprocess.CompletedProcess:
    """``sluice resume RUN_ID --metadata sqlite:///DB``, as the user would type it after the kill."""
    return subprocess.run([str(pathlib.Path(sys.executable).with_name('sluice')), 'resume', run_id, '--metadata',
                           f'sqlite:///{db}'], env={**os.environ, 'HOME': str(home)}, capture_output=True, text=True,
                          timeout=1200)


def node_states(db: pathlib.Path, pipeline: str = 'chicago_taxi_native_keras') -> list[dict[str, list[str]]]:
    """Per run, oldest first: node id -> the states of its executions, from the store."""
    store = MetadataStore(f'sqlite:///{db}')
    out = []
    for run in reversed(list(store.runs_newest_first(pipeline))):
        states: dict[str, list[str]] = {}
        for record in run.executions:
            states.setdefault(record.node_id, []).append((record.id, record.state))
        states = {node: [s for _, s in sorted(pairs)] for node, pairs in states.items()}
        out.append(states)
    return out


def test_taxi_pipeline_native_keras_runs_resumes_and_caches(tfx_examples, tmp_path):
    """TFX's ``taxi_pipeline_native_keras.py`` (BeamDagRunner, the non-v1 import paths, a blessed-model
    resolver and a gated Pusher) and its ``taxi_utils_native_keras.py``: killed in the Pusher between
    putting the model in place and recording the push, resumed with ``sluice resume`` (the Pusher finds
    its model already in production), then run again: every node cached."""
    home = tmp_path / 'home'
    source = tfx_examples / 'chicago_taxi_pipeline'
    pipeline_file = home / 'taxi_pipeline_native_keras.py'
    copy_repointed(source / 'taxi_pipeline_native_keras.py', pipeline_file)
    copy_repointed(source / 'taxi_utils_native_keras.py', home / 'taxi' / 'taxi_utils_native_keras.py')
    data = home / 'taxi' / 'data' / 'simple' / 'data.csv'
    data.parent.mkdir(parents=True)
    shutil.copy(REPO / 'pipelines' / 'examples' / 'taxi' / 'data' / 'taxi.csv', data)  # all of it: one row has
    # a pickup_census_tract, which the module file's preprocessing_fn needs in the schema
    db = home / 'tfx' / 'metadata' / 'chicago_taxi_native_keras' / 'metadata.db'

    killed = run_file(pipeline_file, home, SLUICE_KILL_AT='Pusher:publish')
    assert killed.returncode == -9, killed.stdout[-3000:] + killed.stderr[-3000:]
    [first] = node_states(db)
    before = ['CsvExampleGen', 'StatisticsGen', 'SchemaGen', 'ExampleValidator', 'Transform', 'Trainer',
              'Evaluator']
    assert {node: first[node] for node in before} == {node: ['COMPLETE'] for node in before}
    run_id = re.search(r'Run (\S+) ', killed.stdout).group(1)

    resumed = sluice_resume(run_id, db, home)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    [after] = node_states(db)
    assert {node: after[node] for node in before} == {node: ['COMPLETE'] for node in before}  # not redone
    assert after['Pusher'] == ['FAILED', 'COMPLETE'], after
    serving = home / 'taxi' / 'serving_model' / 'chicago_taxi_native_keras'
    [version] = [p for p in serving.iterdir() if p.name.isdigit()]
    assert (version / 'saved_model.pb').is_file()
    assert f'Pusher: pushed to {version} (already in production: pushed earlier, nothing copied)' in resumed.stdout, \
        resumed.stdout[-3000:]

    again = run_file(pipeline_file, home)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    *_, last = node_states(db)
    assert set(last) == set(after) and all(states == ['CACHED'] for states in last.values()), last


def test_penguin_pipeline_local_runs_resumes_and_caches(tfx_examples, tmp_path):
    """TFX's ``penguin_pipeline_local.py`` as its ``__main__`` runs it (Keras: Tuner, Transform with the
    analyzer cache resolver, Trainer with the tuned hyperparameters, the blessed-model resolver, an
    Evaluator, a Pusher inside ``Cond`` and a BulkInferrer on unlabelled data) with its module files
    ``penguin_utils_keras.py`` and ``penguin_utils_base.py``: killed in the Trainer, resumed, run again."""
    home = tmp_path / 'home'
    source = tfx_examples / 'penguin'
    pipeline_file = home / 'penguin_pipeline_local.py'
    copy_repointed(source / 'penguin_pipeline_local.py', pipeline_file)
    for name in ('penguin_utils_keras.py', 'penguin_utils_base.py'):
        copy_repointed(source / name, home / 'penguin' / name)
    for part, name in (('data', 'penguins.csv'), ('unlabelled', 'penguins_unlabelled.csv')):
        target = home / 'penguin' / 'data' / ('labelled' if part == 'data' else part) / name
        target.parent.mkdir(parents=True)
        shutil.copy(REPO / 'pipelines' / 'examples' / 'penguin' / part / name, target)
    name = 'penguin_local_keras'
    db = home / 'tfx' / 'metadata' / name / 'metadata.db'

    killed = run_file(pipeline_file, home, SLUICE_KILL_AT='Trainer:executor:2')
    assert killed.returncode == -9, killed.stdout[-3000:] + killed.stderr[-3000:]
    run_id = re.search(r'Run (\S+) ', killed.stdout).group(1)
    resumed = sluice_resume(run_id, db, home)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    [after] = node_states(db, name)
    assert after['Trainer'] == ['FAILED', 'COMPLETE'] and after['Tuner'] == ['COMPLETE'], after
    assert all(states[-1] == 'COMPLETE' for states in after.values()), after
    serving = home / 'penguin' / 'serving_model' / name
    [version] = [p for p in serving.iterdir() if p.name.isdigit()]
    assert (version / 'saved_model.pb').is_file()

    again = run_file(pipeline_file, home)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    *_, last = node_states(db, name)
    assert set(last) == set(after) and all(states == ['CACHED'] for states in last.values()), last

    # What the Tuner found reached the Trainer, and the BulkInferrer predicted every unlabelled row.
    store = MetadataStore(f'sqlite:///{db}')
    done = {r.node_id: r for r in store.executions(run_id) if r.state == 'COMPLETE'}
    [tuned] = done['Tuner'].outputs['best_hyperparameters']
    assert done['Trainer'].inputs['best_hyperparameters'][0].id == tuned.id
    [inferred] = done['BulkInferrer'].outputs['inference_result']
    unlabelled = REPO / 'pipelines' / 'examples' / 'penguin' / 'unlabelled' / 'penguins_unlabelled.csv'
    assert inferred.get('example_count') == len(unlabelled.read_text().splitlines()) - 1


def test_penguin_pipeline_local_infraval_runs_resumes_and_caches(tfx_examples, tmp_path):
    """TFX's ``penguin_pipeline_local_infraval.py`` as its ``__main__`` runs it: an InfraValidator with a
    TF Serving ``ServingSpec`` and ``make_warmup=True``, and a Pusher given only the two blessings (it
    pushes the model the InfraValidator checked). Its module file is TFX's ``penguin_utils_keras.py``
    under the name the pipeline file expects, ``penguin_utils.py`` (as TFX's own test of this file
    uses it), and its user-provided schema the project's penguin schema (TFX keeps its copy in its
    repository, not in the wheel). Killed in the InfraValidator, resumed, run again."""
    home = tmp_path / 'home'
    source = tfx_examples / 'penguin'
    pipeline_file = home / 'penguin_pipeline_local_infraval.py'
    copy_repointed(source / 'penguin_pipeline_local_infraval.py', pipeline_file)
    copy_repointed(source / 'penguin_utils_keras.py', home / 'penguin' / 'penguin_utils.py')
    copy_repointed(source / 'penguin_utils_base.py', home / 'penguin' / 'penguin_utils_base.py')
    schema = home / 'penguin' / 'schema' / 'user_provided' / 'schema.pbtxt'
    schema.parent.mkdir(parents=True)
    shutil.copy(REPO / 'pipelines' / 'examples' / 'penguin' / 'schema' / 'schema.pbtxt', schema)
    data = home / 'penguin' / 'data' / 'labelled' / 'penguins.csv'
    data.parent.mkdir(parents=True)
    shutil.copy(REPO / 'pipelines' / 'examples' / 'penguin' / 'data' / 'penguins.csv', data)
    name = 'penguin_local_infraval'
    db = home / 'tfx' / 'metadata' / name / 'metadata.db'

    killed = run_file(pipeline_file, home, SLUICE_KILL_AT='InfraValidator:executor:1')
    assert killed.returncode == -9, killed.stdout[-3000:] + killed.stderr[-3000:]
    run_id = re.search(r'Run (\S+) ', killed.stdout).group(1)
    [first] = node_states(db, name)
    assert 'InfraValidator' in first and 'Pusher' not in first and first['Trainer'] == ['COMPLETE'], first
    resumed = sluice_resume(run_id, db, home)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    [after] = node_states(db, name)
    assert after['InfraValidator'] == ['FAILED', 'COMPLETE'] and after['Trainer'] == ['COMPLETE'], after
    assert all(states[-1] == 'COMPLETE' for states in after.values()), after

    # The InfraValidator checked the Trainer's model in sluice serve and blessed it; the Pusher pushed
    # that model (its only inputs were the two blessings), in the layout TF Serving loads.
    store = MetadataStore(f'sqlite:///{db}')
    done = {r.node_id: r for r in store.executions(run_id) if r.state == 'COMPLETE'}
    [model] = done['Trainer'].outputs['model']
    [infra] = done['InfraValidator'].outputs['blessing']
    assert done['InfraValidator'].inputs['model'][0].id == model.id
    assert infra.get('blessed') == 1 and os.path.isfile(os.path.join(infra.uri, 'INFRA_BLESSED')), infra.get('reason')
    with open(os.path.join(infra.uri, 'infra_validation.json')) as f:  # TFX's request: 1 example of the first split
        assert json.load(f)['examples'] == {'split': 'train', 'rows': 1}
    assert done['Pusher'].inputs['model'][0].id == model.id
    assert done['Pusher'].inputs['infra_blessing'][0].id == infra.id
    [pushed] = done['Pusher'].outputs['pushed_model']
    assert pushed.get('pushed') == 1, pushed.get('reason')
    version = pathlib.Path(pushed.get('pushed_destination'))
    assert version.parent == home / 'penguin' / 'serving_model' / name and version.name.isdigit()
    assert (version / 'saved_model.pb').is_file()

    again = run_file(pipeline_file, home)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    *_, last = node_states(db, name)
    assert set(last) == set(after) and all(states == ['CACHED'] for states in last.values()), last


def _tfx_messages(proto_dir: pathlib.Path) -> dict[str, object]:
    """TFX's own message classes, by their short names, from the wheel's generated ``*_pb2.py`` modules
    (loaded by path: TFX itself is not installed; its package names never clash with Sluice's)."""
    import importlib.util

    classes: dict[str, object] = {}
    for path in sorted(proto_dir.glob('*_pb2.py')):
        spec = importlib.util.spec_from_file_location(f'tfx_wheel_{path.stem}', path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for name in module.DESCRIPTOR.message_types_by_name:
            classes[name] = getattr(module, name)
    return classes


def _fields(descriptor) -> dict[str, tuple]:
    """Each field's number, wire type, label, oneof and (for messages and enums) the type's short name."""
    def named(t):
        return t.name if t is not None else None
    return {f.name: (f.number, f.type, f.label, named(f.containing_oneof), named(f.message_type), named(f.enum_type))
            for f in descriptor.fields}


def test_tfx_proto_messages_have_tfx_shapes_and_read_tfxs_own_bytes_and_text(tfx_examples):
    """Every ``sluice.tfx.proto`` message has the fields of TFX's message of the same name (numbers,
    types, labels, oneofs; nested messages too), so bytes and text written by TFX's own classes read
    back into Sluice's as the same message, and the other way round."""
    from google.protobuf import text_format

    from sluice.tfx.v1 import proto

    theirs = _tfx_messages(tfx_examples.parent / 'proto')
    missing_in_sluice = {}
    for name in proto.__all__:
        ours = getattr(proto, name)
        if not hasattr(ours, 'FromString') or name == 'Filesystem':  # the enum; a nested message's alias
            continue
        assert name in theirs, f'{name}: no message of that name in TFX {TFX_VERSION}'
        pairs = [(ours.DESCRIPTOR, theirs[name].DESCRIPTOR)]
        while pairs:
            mine, tfx = pairs.pop()
            mine_fields, tfx_fields = _fields(mine), _fields(tfx)
            for field, shape in mine_fields.items():
                assert tfx_fields.get(field) == shape, (mine.full_name, field, shape, tfx_fields.get(field))
            missing_in_sluice.update({f'{tfx.name}.{f}': shape for f, shape in tfx_fields.items()
                                      if f not in mine_fields})
            pairs += [(n, tfx.nested_types_by_name[n.name]) for n in mine.nested_types]
    # The one field left out: Kubernetes pod settings, which Sluice refuses (it serves on loopback).
    assert set(missing_in_sluice) == {'KubernetesConfig.serving_pod_overrides'}, missing_in_sluice
    assert [v.name for v in proto.Versioning.DESCRIPTOR.values] == ['AUTO', 'UNIX_TIMESTAMP']

    examples = [
        theirs['PushDestination'](filesystem=theirs['PushDestination'].Filesystem(base_directory='/serving',
                                                                                  versioning=1)),
        theirs['Output'](split_config=theirs['SplitConfig'](splits=[
            theirs['SplitConfig'].Split(name='train', hash_buckets=3),
            theirs['SplitConfig'].Split(name='eval', hash_buckets=1)])),
        theirs['RangeConfig'](rolling_range=theirs['RollingRange'](num_spans=3)),
        theirs['ServingSpec'](tensorflow_serving=theirs['TensorFlowServing'](tags=['2.8.2']),
                              local_docker=theirs['LocalDockerConfig'](), model_name='m'),
        theirs['ExampleDiffConfig'](paired_example_skew=theirs['PairedExampleSkew'](
            identifier_features=['trip_id'], confusion_config=[{'feature_name': 'company'}])),
    ]
    for message in examples:
        name = type(message).DESCRIPTOR.name
        ours = getattr(proto, name).FromString(message.SerializeToString())
        assert text_format.MessageToString(ours) == text_format.MessageToString(message) != ''
        assert text_format.Parse(text_format.MessageToString(message), getattr(proto, name)()) == ours
        assert ours.SerializeToString() == message.SerializeToString()
