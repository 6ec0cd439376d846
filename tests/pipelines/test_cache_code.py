"""The cache key covers the code that runs: a custom component's pipeline file and the local files
it imports, a standard component's Sluice source and library versions; `sluice show` says why each
node ran. Real pipeline files under tmp_path, real runs (LocalDagRunner, the CLI), real ML-Metadata."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time

import pytest

from components import fingerprint as fp
from dummies import read_text
from metadata import MetadataStore
from pipelines import LocalDagRunner, load_pipeline
from pipelines.cli import main
from pipelines.explain import explain

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TESTS = os.path.join(REPO, 'tests')

# A custom component (its executor calls a helper of the same file and one of helpers.py) feeding a
# downstream node defined elsewhere (tests/dummies.py).
PIPELINE = '''\
import sys
sys.path.insert(0, {tests!r})

from components import Component, Executor, Output, Parameter
from dummies import Text, Upper, write_text
from helpers import scale
from pipelines import Pipeline


def bump(x):
    return x + 1.0


class MakeNumbersExecutor(Executor):
    def run(self, *, numbers: Text, count: int) -> None:
        write_text(numbers, ' '.join(str(scale(bump(float(i)))) for i in range(count)))


class MakeNumbers(Component):
    numbers = Output(Text)
    count = Parameter(int, default=3)
    executor = MakeNumbersExecutor


def create_pipeline(root, suffix='!'):
    make = MakeNumbers()
    upper = Upper(text=make.outputs['numbers'], suffix=suffix)
    return Pipeline(name='code', pipeline_root=root, components=[make, upper])
'''
HELPERS = 'def scale(x):\n    return x * 1\n'


@pytest.fixture
def project(tmp_path):
    d = tmp_path / 'project'
    d.mkdir()
    (d / 'pipe.py').write_text(PIPELINE.format(tests=TESTS))
    (d / 'helpers.py').write_text(HELPERS)
    return d


def run(project, store, **kwargs):
    pipeline = load_pipeline(str(project / 'pipe.py'), root=str(project.parent / 'root'), **kwargs)
    return LocalDagRunner(progress=False).run(pipeline, store=store)


def edit(path, old, new):
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


def states(store, result):
    """Node states as recorded in the store (not only as the runner reports them)."""
    return {r.node_id: r.state for r in store.executions(result.run_id)}


def test_editing_a_helper_in_the_pipeline_file_reruns_the_node_and_its_downstream(project, store):
    first = run(project, store)
    assert states(store, first) == {'MakeNumbers': 'COMPLETE', 'Upper': 'COMPLETE'}
    assert read_text(first['Upper'].outputs['result']) == '1.0 2.0 3.0!'
    assert states(store, run(project, store)) == {'MakeNumbers': 'CACHED', 'Upper': 'CACHED'}

    edit(project / 'pipe.py', 'return x + 1.0', 'return x + 100.0')
    result = run(project, store)
    assert states(store, result) == {'MakeNumbers': 'COMPLETE', 'Upper': 'COMPLETE'}
    assert read_text(result['MakeNumbers'].outputs['numbers']) == '100.0 101.0 102.0'
    assert read_text(result['Upper'].outputs['result']) == '100.0 101.0 102.0!'


def test_comments_docstrings_and_formatting_keep_the_cache(project, store):
    run(project, store)
    edit(project / 'pipe.py', 'def bump(x):\n', '# Shifts a value.\ndef bump(x):  # by one\n\n')
    assert states(store, run(project, store)) == {'MakeNumbers': 'CACHED', 'Upper': 'CACHED'}
    edit(project / 'pipe.py', 'def bump(x):  # by one\n', 'def bump(x):  # by one\n    """Shift x by one."""\n')
    edit(project / 'pipe.py', 'class MakeNumbers(Component):\n',
         'class MakeNumbers(Component):\n    """Writes count numbers."""\n')
    edit(project / 'pipe.py', "' '.join(", "' '.join(  # space-separated\n            ")
    edit(project / 'helpers.py', 'def scale(x):', '"""Helpers."""\n\n\ndef scale(x):  # identity')
    assert states(store, run(project, store)) == {'MakeNumbers': 'CACHED', 'Upper': 'CACHED'}
    # A constant is code that runs.
    edit(project / 'pipe.py', "count = Parameter(int, default=3)", "count = Parameter(int, default=2)")
    result = run(project, store)
    assert states(store, result) == {'MakeNumbers': 'COMPLETE', 'Upper': 'COMPLETE'}
    assert read_text(result['Upper'].outputs['result']) == '1.0 2.0!'


def test_editing_a_local_module_the_pipeline_file_imports_reruns_the_node(project, store):
    run(project, store)
    edit(project / 'helpers.py', 'return x * 1', 'return x * 10')
    result = run(project, store)
    assert states(store, result) == {'MakeNumbers': 'COMPLETE', 'Upper': 'COMPLETE'}
    # The new code ran (not a stale import of helpers from the first load).
    assert read_text(result['Upper'].outputs['result']) == '10.0 20.0 30.0!'
    # An unrelated file beside it does not count.
    (project / 'unrelated.py').write_text('X = 1\n')
    assert states(store, run(project, store)) == {'MakeNumbers': 'CACHED', 'Upper': 'CACHED'}


def test_code_edited_after_it_was_loaded_is_refused_not_cached(project, store):
    """A notebook or a long-lived process loaded the pipeline, then a file it runs was edited without
    re-importing it: the code in memory is the old one, so it must not run under the new file's key."""
    pipeline = load_pipeline(str(project / 'pipe.py'), root=str(project.parent / 'root'))
    time.sleep(0.05)  # the file's (coarser) clock must pass the moment the classes were loaded
    edit(project / 'helpers.py', 'return x * 1', 'return x * 10')
    result = LocalDagRunner(progress=False).run(pipeline, store=store)
    assert states(store, result) == {'MakeNumbers': 'FAILED'}
    assert re.fullmatch(r'MakeNumbers: .*/helpers\.py changed after MakeNumbers was loaded into this process, so '
                        r'the code that would run is older than the file, and its results would be cached under '
                        r'the new code\. Re-import it \(importlib\.reload\(module\), or restart the notebook '
                        r'kernel\) and run again\.', result['MakeNumbers'].error), result['MakeNumbers'].error
    assert not store.mlmd.get_artifacts()
    # Loaded again, the new code runs.
    fresh = run(project, store)
    assert read_text(fresh['Upper'].outputs['result']) == '10.0 20.0 30.0!'


def show(capsys, run_id, url):
    assert main(['show', run_id, '--metadata', url]) == 0
    out = capsys.readouterr().out
    return dict(re.findall(r'^(\w+) \[\w+\] \w+ .*\n    why: (.*)$', out, re.M))


def test_show_says_why_each_node_ran_or_was_reused(project, tmp_path, capsys):
    url = f'sqlite:///{tmp_path}/metadata.db'
    store = MetadataStore(url)
    first = run(project, store)
    why = show(capsys, first.run_id, url)
    assert why == {'MakeNumbers': 'first execution of this node', 'Upper': 'first execution of this node'}
    make1, upper1 = first['MakeNumbers'].execution_id, first['Upper'].execution_id

    second = run(project, store, suffix='?')  # a parameter of Upper, the files unchanged
    why = show(capsys, second.run_id, url)
    assert why['MakeNumbers'] == f'reused: CACHED from execution #{make1} (run {first.run_id})'
    assert why['Upper'] == f'parameter suffix: "!" -> "?" (since execution #{upper1}, run {first.run_id})'
    assert explain(store, second['Upper'].execution_id) == why['Upper']

    edit(project / 'pipe.py', 'return x + 1.0', 'return x + 100.0')
    third = run(project, store, suffix='?')
    why = show(capsys, third.run_id, url)
    # Compared with the latest earlier execution of the node: the CACHED one of the second run.
    assert why['MakeNumbers'] == ('code changed (executor source: pipe.py) '
                                  f"(since execution #{second['MakeNumbers'].execution_id}, run {second.run_id})")
    # Upper's own code and parameters are as before: only its input changed.
    assert why['Upper'] == ("input 'text' changed (MakeNumbers re-executed) "
                            f"(since execution #{second['Upper'].execution_id}, run {second.run_id})")

    edit(project / 'helpers.py', 'return x * 1', 'return x * 10')
    fourth = run(project, store, suffix='?')
    why = show(capsys, fourth.run_id, url)
    assert why['MakeNumbers'].startswith('code changed (executor source: helpers.py) (since execution')

    # What was recorded: every part of the key, and the key is derived from them.
    record = store.execution(fourth['MakeNumbers'].execution_id)
    parts = json.loads(record.properties['cache_key_parts'])
    assert fp.key_of(parts) == record.cache_key
    assert sorted(parts['implementation']['files']) == ['helpers.py', 'pipe.py']
    assert parts['parameters'] == {'count': 3} and parts['inputs'] == {}
    upper = json.loads(store.execution(fourth['Upper'].execution_id).properties['cache_key_parts'])
    assert upper['producers'] == {'text': 'MakeNumbers'}
    assert upper['inputs']['text'] == fourth['MakeNumbers'].outputs['numbers'].fingerprint


SCHEMA = '''\
feature { name: "x" type: FLOAT }
'''

# A standard component (ImportSchemaGen: no TensorFlow) feeding a custom one.
SCHEMA_PIPELINE = '''\
import os, sys
sys.path.insert(0, {tests!r})

from components import Component, Executor, ImportSchemaGen, Input, Output
from dummies import Text, write_text
from metadata import Schema
from pipelines import Pipeline


class SchemaSizeExecutor(Executor):
    def run(self, *, schema: Schema, size: Text) -> None:
        write_text(size, str(os.path.getsize(os.path.join(schema.uri, 'schema.pbtxt'))))


class SchemaSize(Component):
    schema = Input(Schema)
    size = Output(Text)
    executor = SchemaSizeExecutor


def create_pipeline(root, schema_file):
    gen = ImportSchemaGen(schema_file=schema_file)
    return Pipeline(name='schema', pipeline_root=root,
                    components=[gen, SchemaSize(schema=gen.outputs['schema'])])
'''


def test_a_library_upgrade_reruns_the_standard_component_and_downstream(tmp_path, store, monkeypatch, capsys):
    (tmp_path / 'schema.pbtxt').write_text(SCHEMA)
    (tmp_path / 'pipe.py').write_text(SCHEMA_PIPELINE.format(tests=TESTS))

    def go():
        pipeline = load_pipeline(str(tmp_path / 'pipe.py'), root=str(tmp_path / 'root'),
                                 schema_file=str(tmp_path / 'schema.pbtxt'))
        return LocalDagRunner(progress=False).run(pipeline, store=store)

    first = go()
    assert states(store, first) == {'ImportSchemaGen': 'COMPLETE', 'SchemaSize': 'COMPLETE'}
    assert states(store, go()) == {'ImportSchemaGen': 'CACHED', 'SchemaSize': 'CACHED'}

    real = fp.library_version
    installed = real('protobuf')
    monkeypatch.setattr(fp, 'library_version', lambda name: '99.0' if name == 'protobuf' else real(name))
    upgraded = go()
    assert states(store, upgraded) == {'ImportSchemaGen': 'COMPLETE', 'SchemaSize': 'COMPLETE'}
    assert upgraded['ImportSchemaGen'].cache_key != first['ImportSchemaGen'].cache_key
    assert upgraded['SchemaSize'].cache_key != first['SchemaSize'].cache_key
    assert explain(store, upgraded['ImportSchemaGen'].execution_id).startswith(
        f'library versions changed (protobuf {installed} -> 99.0) (since execution')
    assert explain(store, upgraded['SchemaSize'].execution_id).startswith(
        "input 'schema' changed (ImportSchemaGen re-executed)")
    # The Sluice source of the component is in the recorded key parts.
    parts = json.loads(store.execution(upgraded['ImportSchemaGen'].execution_id).properties['cache_key_parts'])
    assert parts['implementation']['files'] == {
        'components/schema_gen.py': fp.source_digest(os.path.join(REPO, 'components', 'schema_gen.py')),
        'components/statistics_gen.py': fp.source_digest(os.path.join(REPO, 'components', 'statistics_gen.py'))}
    assert parts['implementation']['libraries'] == {'tensorflow-metadata': real('tensorflow-metadata'),
                                                    'protobuf': '99.0'}

    monkeypatch.setattr(fp, 'library_version', real)  # back to the installed versions: the first results
    again = go()
    assert states(store, again) == {'ImportSchemaGen': 'CACHED', 'SchemaSize': 'CACHED'}
    assert again['SchemaSize'].outputs['size'].id == first['SchemaSize'].outputs['size'].id


CSV_PIPELINE = '''\
import sys
sys.path.insert(0, {tests!r})

from components import CsvExampleGen
from pipelines import Pipeline


def create_pipeline():
    return Pipeline(name='light', pipeline_root={root!r}, components=[CsvExampleGen(input_base={data!r})])
'''

PROBE = '''\
import json, sys
from pipelines.cli import main
code = main(['run', sys.argv[1]])
print('HEAVY=' + json.dumps(sorted(m for m in ('tensorflow', 'apache_beam') if m in sys.modules)))
sys.exit(code)
'''


def test_a_cached_rerun_through_the_cli_imports_neither_tensorflow_nor_beam(tmp_path):
    data = tmp_path / 'data'
    data.mkdir()
    (data / 'rows.csv').write_text('x,y\n' + ''.join(f'{i},{i % 3}\n' for i in range(30)))
    (tmp_path / 'pipe.py').write_text(CSV_PIPELINE.format(tests=TESTS, root=str(tmp_path / 'root'), data=str(data)))
    (tmp_path / 'probe.py').write_text(PROBE)
    env = {**os.environ, 'PYTHONPATH': REPO}

    def sluice_run():
        proc = subprocess.run([sys.executable, str(tmp_path / 'probe.py'), str(tmp_path / 'pipe.py')],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        return proc.stdout, json.loads(re.search(r'^HEAVY=(.*)$', proc.stdout, re.M).group(1))

    out, heavy = sluice_run()
    assert '1 executed, 0 cached' in out
    assert heavy == ['apache_beam', 'tensorflow']  # the probe sees real imports
    out, heavy = sluice_run()
    assert '0 executed, 1 cached' in out
    assert heavy == []


def test_each_part_of_the_key_is_explained_in_words(store):
    from metadata.store import ExecutionRecord
    from pipelines.explain import Explainer

    old = {'component': 'Trainer', 'parameters': {'train_steps': 100, 'eval_split': 'eval'},
           'implementation': {'version': '1', 'files': {'components/trainer.py': 'a', 'components/x.py': 'b'},
                              'libraries': {'tensorflow': '2.16.2'}},
           'code': {'module_file': {'file': 'module.py', 'files': {'module.py': 'm', 'utils.py': 'u'}}},
           'inputs': {'examples': 'e1', 'base_model': ''}, 'producers': {'examples': 'Transform'},
           'external': {'input_files': 'f1'}}
    new = {'component': 'Trainer', 'parameters': {'train_steps': 200, 'eval_split': 'eval'},
           'implementation': {'version': '1', 'files': {'components/trainer.py': 'A', 'components/y.py': 'c'},
                              'libraries': {'tensorflow': '2.17.0'}},
           'code': {'module_file': {'file': 'module.py', 'files': {'module.py': 'm', 'utils.py': 'U'}}},
           'inputs': {'examples': 'e2', 'base_model': 'm1'}, 'producers': {'examples': 'Transform'},
           'external': {'input_files': 'f2'}}
    record = ExecutionRecord(id=9, component_type='Trainer', node_id='Trainer', run_id='r', state='COMPLETE',
                             cache_key='k', create_time=0, update_time=0, properties={})
    assert Explainer(store, 'p').differences(old, new, record) == [
        'code changed (executor source: components/trainer.py, components/x.py (gone), components/y.py (new))',
        'library versions changed (tensorflow 2.16.2 -> 2.17.0)',
        'code changed (module file module.py: utils.py)',
        'parameter train_steps: 100 -> 200',
        "input 'base_model' is now present (another artifact)",
        "input 'examples' changed (from Transform)",
        'input files changed',
    ]
