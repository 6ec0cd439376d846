"""The cache key covers the code that runs: a custom component's pipeline file and the local files
it imports, a standard component's Sluice source and library versions; `sluice show` says why each
node ran. Real pipeline files under tmp_path, real runs (LocalDagRunner, the CLI), real ML-Metadata."""
from __future__ import annotations

import importlib
import json
import linecache
import os
import re
import subprocess
import sys
import time
import types

import pytest

from sluice.components import fingerprint as fp
from sluice.components.fingerprint import implementation, stale
from dummies import read_text
from sluice.metadata import MetadataStore
from sluice import LocalDagRunner, load_pipeline
from sluice.ui.cli import main
from sluice.orchestration.explain import explain

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TESTS = os.path.join(REPO, 'tests')

# A custom component (its executor calls a helper of the same file and one of helpers.py) feeding a
# downstream node defined elsewhere (tests/dummies.py).
PIPELINE = '''\
import sys
sys.path.insert(0, {tests!r})

from sluice.components import Component, Executor, Output, Parameter
from dummies import Text, Upper, write_text
from helpers import scale
from sluice import Pipeline


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
    assert re.fullmatch(r'MakeNumbers: the code in memory is older than the files it would be cached under: '
                        r'/.*/helpers\.py changed after MakeNumbersExecutor was loaded into this process\. Running '
                        r"it would cache the old code's results under the new code's key\. Restart the kernel \(or "
                        r'the process\) and run again: that always works\. Loading the pipeline file again '
                        r'\(load_pipeline\) also does: it imports afresh the project modules the file uses\.',
                        result['MakeNumbers'].error), result['MakeNumbers'].error
    assert not store.mlmd.get_artifacts()
    # Loaded again, the new code runs.
    fresh = run(project, store)
    assert read_text(fresh['Upper'].outputs['result']) == '10.0 20.0 30.0!'


# -- the code in memory: partial reloads in a long-lived process ----------------------------------
# What is and is not detected (see components/fingerprint/stale.py): a module whose file changed
# after the module was imported is refused, whichever module was reloaded since; so is
# a module imported before Sluice could stamp it whose file changed after the process started (even
# when the module happens to be current: restarting settles it); a comment-only edit is not a change.
# Not detected: an edit that keeps a file's size and mtime, or one made while the file is imported.
def import_project(project, monkeypatch, *names):
    """Import the project's modules by name, as a notebook does (no load_pipeline), afresh."""
    monkeypatch.syspath_prepend(str(project))
    for name in ('pipe', 'helpers'):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return [importlib.import_module(name) for name in names]


def run_module(pipe, project, store):
    pipeline = pipe.create_pipeline(str(project.parent / 'root'))
    return LocalDagRunner(progress=False).run(pipeline, store=store)


def test_reloading_the_pipeline_module_but_not_an_edited_helper_is_refused(project, store, monkeypatch):
    """The reviewer's case: edit helpers.py, importlib.reload(pipe) but not helpers. The new classes
    would run the old helpers module under the key of the new file."""
    pipe, helpers = import_project(project, monkeypatch, 'pipe', 'helpers')
    assert read_text(run_module(pipe, project, store)['Upper'].outputs['result']) == '1.0 2.0 3.0!'

    # Reloading the edited helper alone is not enough: pipe's classes hold the old scale().
    edit(project / 'helpers.py', 'return x * 1', 'return x * 10')
    helpers = importlib.reload(helpers)
    result = run_module(pipe, project, store)
    assert states(store, result) == {'MakeNumbers': 'FAILED'}
    assert re.search(r'/helpers\.py changed after MakeNumbersExecutor was loaded into this process\.',
                     result['MakeNumbers'].error), result['MakeNumbers'].error

    # Nor is reloading pipe but not the edited helper: the new classes would run the old helpers.
    edit(project / 'helpers.py', 'return x * 10', 'return x * 100')
    pipe = importlib.reload(pipe)
    result = run_module(pipe, project, store)
    assert states(store, result) == {'MakeNumbers': 'FAILED'}
    assert re.fullmatch(
        r'MakeNumbers: the code in memory is older than the files it would be cached under: /.*/helpers\.py '
        r'changed after module helpers was imported \(the module in memory is older than the file\)\. Running it '
        r"would cache the old code's results under the new code's key\. Restart the kernel \(or the process\) and "
        r'run again: that always works\. To reload instead, reload each edited module before the modules that '
        r'import it \(importlib\.reload\(helpers\), then importlib\.reload\(pipe\)\), and build the pipeline again\.',
        result['MakeNumbers'].error), result['MakeNumbers'].error
    assert len(store.mlmd.get_artifacts()) == 2  # only the first run's outputs

    # In dependency order, the new code runs.
    helpers = importlib.reload(helpers)
    pipe = importlib.reload(pipe)
    result = run_module(pipe, project, store)
    assert states(store, result) == {'MakeNumbers': 'COMPLETE', 'Upper': 'COMPLETE'}
    assert read_text(result['Upper'].outputs['result']) == '100.0 200.0 300.0!'

    # A comment is not a code change: no reload needed, the cache holds.
    edit(project / 'helpers.py', 'def scale(x):', '# Scales.\ndef scale(x):  # by a hundred')
    assert states(store, run_module(pipe, project, store)) == {'MakeNumbers': 'CACHED', 'Upper': 'CACHED'}


def test_a_project_written_after_the_process_started_runs_on_its_first_import(tmp_path, store, monkeypatch):
    """No false refusal: files created or edited after the process started, imported for the first
    time, before Sluice's import stamping is installed (the first custom component installs it)."""
    monkeypatch.setattr(sys, 'meta_path', [f for f in sys.meta_path if f is not stale._StampingFinder])
    project = tmp_path / 'fresh'
    project.mkdir()
    (project / 'pipe.py').write_text(PIPELINE.format(tests=TESTS))
    (project / 'helpers.py').write_text(HELPERS)
    pipe, = import_project(project, monkeypatch, 'pipe')
    result = run_module(pipe, project, store)
    assert states(store, result) == {'MakeNumbers': 'COMPLETE', 'Upper': 'COMPLETE'}


SCRIPT = '''\
import json, sys
sys.path.insert(0, {tests!r})
from sluice.components import Component, Executor, Output
from dummies import Text, write_text
from sluice.metadata import MetadataStore
from sluice import LocalDagRunner, Pipeline


class HiExecutor(Executor):
    def run(self, *, text: Text) -> None:
        write_text(text, 'hi')


class Hi(Component):
    text = Output(Text)
    executor = HiExecutor


result = LocalDagRunner(progress=False).run(Pipeline(name='s', pipeline_root={root!r}, components=[Hi()]),
                                            store=MetadataStore(None))
print('RESULT=' + json.dumps({{n: [r.state, r.error] for n, r in result.nodes.items()}}))
'''


def test_a_script_saved_just_before_it_runs_is_not_refused(tmp_path):
    """`python pipe.py` right after saving it: the file is newer than the process start's slack, and
    its module (__main__) has no spec to stamp."""
    (tmp_path / 'pipe.py').write_text(SCRIPT.format(tests=TESTS, root=str(tmp_path / 'root')))
    proc = subprocess.run([sys.executable, str(tmp_path / 'pipe.py')], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env={**os.environ, 'PYTHONPATH': REPO})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(re.search(r'^RESULT=(.*)$', proc.stdout, re.M).group(1)) == {'Hi': ['COMPLETE', '']}


NOTEBOOK = '''\
import json, sys
sys.path[:0] = [{project!r}, {tests!r}]
import helpers                                   # cell 1: before any Sluice component exists
with open({helpers!r}, 'w') as f:                # the user edits helpers.py in the editor ...
    f.write('def scale(x):\\n    return x * 10\\n')
import pipe                                      # cell 2: ... and imports the pipeline module
from sluice.metadata import MetadataStore
from sluice import LocalDagRunner
result = LocalDagRunner(progress=False).run(pipe.create_pipeline({root!r}), store=MetadataStore(None))
print('RESULT=' + json.dumps({{n: [r.state, r.error] for n, r in result.nodes.items()}}))
'''


def test_a_module_imported_before_sluice_could_stamp_it_and_edited_since_is_refused(project, tmp_path):
    """A kernel imported helpers, then helpers.py changed, then the pipeline module (and Sluice) was
    imported: the helpers module in memory is the old one, and nothing recorded when it was loaded."""
    script = NOTEBOOK.format(project=str(project), tests=TESTS, helpers=str(project / 'helpers.py'),
                             root=str(tmp_path / 'root'))
    for path in project.iterdir():  # written well before the process starts
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    proc = subprocess.run([sys.executable, '-c', script], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env={**os.environ, 'PYTHONPATH': REPO})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(re.search(r'^RESULT=(.*)$', proc.stdout, re.M).group(1))
    state, error = result['MakeNumbers']
    assert state == 'FAILED', result
    assert re.search(r'/helpers\.py changed since this process started, and module helpers was imported before '
                     r'Sluice could tell which version of it the module holds\. .* Restart the kernel', error), error
    # A restart runs the file as it is.
    proc = subprocess.run([sys.executable, '-c', script.replace('import helpers ', 'pass ')], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, env={**os.environ, 'PYTHONPATH': REPO})
    result = json.loads(re.search(r'^RESULT=(.*)$', proc.stdout, re.M).group(1))
    assert result['MakeNumbers'][0] == 'COMPLETE' and result['Upper'][0] == 'COMPLETE', result


# -- project code found as Python finds it -----------------------------------------------------------
PACKAGE_FILES = {
    'mycomps/__init__.py': '',
    'mycomps/util.py': 'def shout(text):\n    return text.upper()\n',
    'mycomps/deco.py': 'from dummies import Text\nfrom pkg import mod\n\nTxt = Text\n\n\n'
                       'def decorate(text):\n    return mod.wrap(text)\n',
    'mycomps/tagger.py': '''\
from sluice.components import Component, Executor, Output, Parameter
from dummies import write_text
from mycomps import util
from mycomps.deco import Txt, decorate


class TagExecutor(Executor):
    def run(self, *, tagged: Txt, word: str) -> None:
        write_text(tagged, decorate(util.shout(word)))


class Tag(Component):
    tagged = Output(Txt)
    word = Parameter(str, default='hi')
    executor = TagExecutor
''',
    'pkg/__init__.py': '',
    'pkg/mod.py': 'from . import sub\n\n\ndef wrap(text):\n    return sub.LEFT + text + sub.RIGHT\n',
    'pkg/sub.py': "LEFT = '<'\nRIGHT = '>'\n",
    'pipe.py': '''\
import sys
sys.path.insert(0, {tests!r})

from dummies import Source, Upper
from mycomps.tagger import Tag
from sluice import Pipeline


def create_pipeline(root, data):
    tag = Tag()
    return Pipeline(name='package', pipeline_root=root,
                    components=[tag, Upper(text=tag.outputs['tagged'], suffix='.'), Source(input_base=data)])
''',
}


def test_components_in_a_package_cover_what_they_import_from_the_project_root(tmp_path, store, text_dir):
    """proj/pipe.py uses a component of the package proj/mycomps, which imports mycomps.deco,
    mycomps.util and (from deco) pkg.mod, which imports pkg.sub relatively."""
    project = tmp_path / 'proj'
    for name, text in PACKAGE_FILES.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text.format(tests=TESTS) if name == 'pipe.py' else text)

    def go():
        pipeline = load_pipeline(str(project / 'pipe.py'), root=str(tmp_path / 'root'), data=str(text_dir))
        return LocalDagRunner(progress=False).run(pipeline, store=store)

    first = go()
    assert states(store, first) == {'Tag': 'COMPLETE', 'Upper': 'COMPLETE', 'Source': 'COMPLETE'}
    assert read_text(first['Upper'].outputs['result']) == '<HI>.'
    from mycomps.tagger import Tag
    assert sorted(fp.implementation_files(Tag)) == [
        'dummies.py', 'mycomps/__init__.py', 'mycomps/deco.py', 'mycomps/tagger.py', 'mycomps/util.py',
        'pkg/__init__.py', 'pkg/mod.py', 'pkg/sub.py']  # and nothing of Sluice's own packages

    edit(project / 'pkg' / 'sub.py', "LEFT = '<'", "LEFT = '['")
    second = go()
    assert states(store, second) == {'Tag': 'COMPLETE', 'Upper': 'COMPLETE', 'Source': 'CACHED'}
    assert read_text(second['Upper'].outputs['result']) == '[HI>.'
    assert explain(store, second['Tag'].execution_id).startswith('code changed (executor source: pkg/sub.py)')

    edit(project / 'mycomps' / 'util.py', 'text.upper()', 'text.upper() * 2')
    third = go()
    assert states(store, third) == {'Tag': 'COMPLETE', 'Upper': 'COMPLETE', 'Source': 'CACHED'}
    assert read_text(third['Upper'].outputs['result']) == '[HIHI>.'
    assert states(store, go()) == {'Tag': 'CACHED', 'Upper': 'CACHED', 'Source': 'CACHED'}


MODULE_PIPELINE = '''\
import sys
sys.path.insert(0, {tests!r})

from dummies import ApplyModule, Source
from sluice import Pipeline


def create_pipeline(root, data):
    source = Source(input_base=data)
    apply = ApplyModule(text=source.outputs['text'], module_file={module!r})
    return Pipeline(name='modules', pipeline_root=root, components=[source, apply])
'''


def test_a_module_file_covers_project_modules_it_imports_from_the_pipeline_directory(tmp_path, store, text_dir):
    """proj/user/module2.py does `from common import pre`, common.py being beside the pipeline file
    (on sys.path because load_pipeline puts the pipeline file's directory there)."""
    project = tmp_path / 'proj'
    (project / 'user').mkdir(parents=True)
    (project / 'common.py').write_text('def pre(text):\n    return text.strip() + "!"\n')
    module = project / 'user' / 'module2.py'
    module.write_text('from common import pre\n\n\ndef transform(text):\n    return pre(text).title()\n')
    (project / 'pipe.py').write_text(MODULE_PIPELINE.format(tests=TESTS, module=str(module)))

    def go():
        pipeline = load_pipeline(str(project / 'pipe.py'), root=str(tmp_path / 'root'), data=str(text_dir))
        return LocalDagRunner(progress=False).run(pipeline, store=store)

    first = go()
    assert read_text(first['ApplyModule'].outputs['result']) == 'Hello World!'
    parts = json.loads(store.execution(first['ApplyModule'].execution_id).properties['cache_key_parts'])
    assert sorted(parts['code']['module_file']['files']) == ['common.py', 'module2.py']

    edit(project / 'common.py', '+ "!"', '+ "?"')
    second = go()
    assert states(store, second) == {'Source': 'CACHED', 'ApplyModule': 'COMPLETE'}
    assert read_text(second['ApplyModule'].outputs['result']) == 'Hello World?'  # the new common.py ran
    assert explain(store, second['ApplyModule'].execution_id).startswith(
        'code changed (module file module2.py: common.py)')
    assert states(store, go()) == {'Source': 'CACHED', 'ApplyModule': 'CACHED'}


# -- components typed into a notebook ------------------------------------------------------------------
HELPER_CELL = 'MARK = "!"\n\n\ndef finish(text):\n    return text.upper() + MARK\n'
COMPONENT_CELL = '''\
from sluice.components import Component, Executor, Input, Output
from dummies import Text, read_text, write_text


class FinishExecutor(Executor):
    def run(self, *, text: Text, result: Text) -> None:
        write_text(result, finish(read_text(text)))


class Finish(Component):
    text = Input(Text)
    result = Output(Text)
    executor = FinishExecutor
'''


@pytest.mark.parametrize('sources_kept', [True, False], ids=['cells-in-linecache', 'no-source'])
def test_a_component_typed_into_a_notebook_covers_the_helpers_it_calls(tmp_path, store, text_dir, sources_kept,
                                                                        monkeypatch):
    """Classes without a file (notebook cells, python -c): redefining a helper of another cell that
    the executor calls, or a constant that helper uses, reruns the node; an unrelated cell does not."""
    from dummies import Source
    from sluice import Pipeline

    cells = types.ModuleType('sluice_test_notebook')  # a kernel's namespace: no file
    count = iter(range(100))

    def cell(source):
        name = f'<cell-{tmp_path.name}-{next(count)}>'
        if sources_kept:  # as IPython does, so that inspect.getsource works
            monkeypatch.setitem(linecache.cache, name, (len(source), None, source.splitlines(True), name))
        exec(compile(source, name, 'exec'), cells.__dict__)

    def go():
        source = Source(input_base=str(text_dir))
        finish = cells.Finish(text=source.outputs['text'])
        return LocalDagRunner(progress=False).run(
            Pipeline(name='notebook', pipeline_root=str(tmp_path / 'root'), components=[source, finish]), store=store)

    cell(HELPER_CELL)
    cell(COMPONENT_CELL)
    assert fp.class_file(cells.FinishExecutor) is None
    assert read_text(go()['Finish'].outputs['result']) == 'HELLO WORLD!'
    assert states(store, go()) == {'Source': 'CACHED', 'Finish': 'CACHED'}

    cell('def unrelated():\n    return 1\n')
    assert states(store, go()) == {'Source': 'CACHED', 'Finish': 'CACHED'}

    cell('def finish(text):\n    return text.lower() + MARK\n')
    result = go()
    assert states(store, result) == {'Source': 'CACHED', 'Finish': 'COMPLETE'}
    assert read_text(result['Finish'].outputs['result']) == 'hello world!'

    cell('MARK = "?"\n')
    result = go()
    assert states(store, result) == {'Source': 'CACHED', 'Finish': 'COMPLETE'}
    assert read_text(result['Finish'].outputs['result']) == 'hello world?'
    assert states(store, go()) == {'Source': 'CACHED', 'Finish': 'CACHED'}


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
    # dummies.py is found on sys.path (tests/, outside the Python installation): project code too.
    assert sorted(parts['implementation']['files']) == ['dummies.py', 'helpers.py', 'pipe.py']
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

from sluice.components import Component, Executor, ImportSchemaGen, Input, Output
from dummies import Text, write_text
from sluice.metadata import Schema
from sluice import Pipeline


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
    monkeypatch.setattr(implementation, 'library_version', lambda name: '99.0' if name == 'protobuf' else real(name))
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

    monkeypatch.setattr(implementation, 'library_version', real)  # back to the installed versions: the first results
    again = go()
    assert states(store, again) == {'ImportSchemaGen': 'CACHED', 'SchemaSize': 'CACHED'}
    assert again['SchemaSize'].outputs['size'].id == first['SchemaSize'].outputs['size'].id


CSV_PIPELINE = '''\
import sys
sys.path.insert(0, {tests!r})

from sluice.components import CsvExampleGen
from sluice import Pipeline


def create_pipeline():
    return Pipeline(name='light', pipeline_root={root!r}, components=[CsvExampleGen(input_base={data!r})])
'''

PROBE = '''\
import json, sys
from sluice.ui.cli import main
code = main(['run', sys.argv[1]])
heavy = ('tensorflow', 'apache_beam', 'grpc._cython.cygrpc', 'google.cloud.bigquery.client')  # the last two:
print('HEAVY=' + json.dumps(sorted(m for m in heavy if m in sys.modules)))  # deferred by sluice/deferred.py
sys.exit(code)
'''


def test_a_cached_rerun_through_the_cli_imports_neither_tensorflow_nor_beam_nor_grpc(tmp_path):
    """A fully cached re-run imports none of the heavy libraries; a run that executes a Beam node
    imports Beam and the gRPC Beam uses, never the BigQuery client Beam's import brings (and, the node
    being CsvExampleGen, which writes its examples without it, not TensorFlow either)."""
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
    assert heavy == ['apache_beam', 'grpc._cython.cygrpc']  # the probe sees real imports
    out, heavy = sluice_run()
    assert '0 executed, 1 cached' in out
    assert heavy == []


def test_each_part_of_the_key_is_explained_in_words(store):
    from sluice.metadata.records import ExecutionRecord
    from sluice.orchestration.explain import Explainer

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
