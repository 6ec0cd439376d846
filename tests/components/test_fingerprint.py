"""Cache-key ingredients: canonical parameters and user-code fingerprints."""
from __future__ import annotations

import os
import sys

import pytest

from sluice.components import fingerprint as fp
from sluice.components.fingerprint import imports, source


def test_canonical_parameters_ignore_dict_order_and_tuple_vs_list():
    assert fp.canonical_json({'b': 1, 'a': (1, 2)}) == fp.canonical_json({'a': [1, 2], 'b': 1})
    assert fp.canonical_json({'a': 1}) != fp.canonical_json({'a': 1.5})


def test_protobuf_parameters_are_canonicalized():
    from ml_metadata.proto import metadata_store_pb2 as pb
    a = fp.canonical(pb.Artifact(uri='x', id=3))
    assert a == {'@proto': 'ml_metadata.Artifact', 'value': {'id': '3', 'uri': 'x'}}


def test_non_json_parameters_are_rejected_with_a_reason():
    with pytest.raises(TypeError, match=r'object .* cannot be a parameter: use JSON-like values'):
        fp.canonical(object())


def test_module_fingerprint_follows_local_imports(tmp_path):
    (tmp_path / 'helpers').mkdir()
    (tmp_path / 'helpers' / '__init__.py').write_text('')
    (tmp_path / 'helpers' / 'text.py').write_text('def shout(t):\n    return t.upper()\n')
    (tmp_path / 'consts.py').write_text('SUFFIX = "!"\n')
    (tmp_path / 'unrelated.py').write_text('X = 1\n')
    module = tmp_path / 'module.py'
    module.write_text('import os\nimport consts\nfrom helpers.text import shout\n'
                      'def transform(t):\n    return shout(t) + consts.SUFFIX\n')
    files = fp.local_imports(str(module))
    names = sorted(p.replace(str(tmp_path) + '/', '') for p in files)
    assert names == ['consts.py', 'helpers/__init__.py', 'helpers/text.py', 'module.py']

    before = fp.code_fingerprint(str(module))
    (tmp_path / 'unrelated.py').write_text('X = 2\n')
    assert fp.code_fingerprint(str(module)) == before
    (tmp_path / 'helpers' / 'text.py').write_text('def shout(t):\n    return t.upper() + "?"\n')
    assert fp.code_fingerprint(str(module)) != before


def test_relative_imports_and_broken_files(tmp_path):
    pkg = tmp_path / 'pkg'
    pkg.mkdir()
    (pkg / '__init__.py').write_text('')
    (pkg / 'util.py').write_text('this is not python(\n')
    (pkg / 'mod.py').write_text('from . import util\nfrom .util import x\n')
    files = {p.replace(str(tmp_path) + '/', '') for p in fp.local_imports(str(pkg / 'mod.py'))}
    assert files == {'pkg/mod.py', 'pkg/util.py', 'pkg/__init__.py'}


def test_missing_module_file_fingerprint_does_not_raise(tmp_path):
    assert fp.code_fingerprint(str(tmp_path / 'nope.py')).startswith('missing:')


# -- normalised Python digests ---------------------------------------------------------------------
CODE = '''\
"""A module."""
import math

RATE = 0.5


def helper(x):
    """Scales x."""
    return x * RATE


class Thing:
    """A thing."""

    def run(self, values):
        return [helper(v) for v in values]


async def later():
    """Later."""
    return math.pi
'''


def test_source_digest_ignores_comments_docstrings_and_formatting(tmp_path):
    path = tmp_path / 'mod.py'
    path.write_text(CODE)
    base = fp.source_digest(str(path))
    neutral = [
        CODE.replace('def helper(x):\n', '# A helper.\ndef helper(x):  # one argument\n\n\n'),
        CODE.replace('"""Scales x."""', '"""Scales x by RATE (edited docstring)."""'),
        CODE.replace('    """A thing."""\n', '').replace('"""A module."""\n', '').replace('    """Later."""\n', ''),
        CODE.replace('return [helper(v) for v in values]',
                     'return [\n            helper(v)\n            for v in values\n        ]'),
        CODE.replace('RATE = 0.5', 'RATE = (0.5)'),
    ]
    for text in neutral:
        path.write_text(text)
        assert fp.source_digest(str(path)) == base, text
    code_edits = [
        CODE.replace('RATE = 0.5', 'RATE = 0.25'),
        CODE.replace('return x * RATE', 'return x * RATE + 1'),
        CODE.replace('return math.pi', 'return math.e'),
        CODE.replace('    return x * RATE\n', '    "not a docstring"\n    return x * RATE\n'),
        CODE + '\nEXTRA = 1\n',
    ]
    for text in code_edits:
        path.write_text(text)
        assert fp.source_digest(str(path)) != base, text


def test_files_that_do_not_parse_are_digested_byte_for_byte(tmp_path):
    path = tmp_path / 'broken.py'
    path.write_text('def f(:\n    pass\n')
    before = fp.source_digest(str(path))
    path.write_text('def f(:\n    pass\n# comment\n')
    assert fp.source_digest(str(path)) != before


def test_digests_are_memoised_by_mtime_and_size(tmp_path):
    path = tmp_path / 'mod.py'
    path.write_text('X = 1\n')
    os.utime(path, ns=(10**18, 10**18))  # long ago: safe to memoise
    first = fp.source_digest(str(path))
    assert source._analysed[str(path)][1] == first
    path.write_text('X = 22\n')
    os.utime(path, ns=(2 * 10**18, 2 * 10**18))
    assert fp.source_digest(str(path)) != first
    path.write_text('X = 3\n')  # just written: re-read every time until its mtime is safely past
    third = fp.source_digest(str(path))
    path.write_text('X = 4\n')
    assert fp.source_digest(str(path)) != third


def test_local_imports_follow_every_import_form(tmp_path):
    (tmp_path / 'helpers.py').write_text('def f():\n    return 1\n')
    (tmp_path / 'pkg').mkdir()
    (tmp_path / 'pkg' / '__init__.py').write_text('')
    (tmp_path / 'pkg' / 'mod.py').write_text('from .sibling import g\nfrom .. import top\n')
    (tmp_path / 'pkg' / 'sibling.py').write_text('def g():\n    return 2\n')
    (tmp_path / 'pkg' / 'sub.py').write_text('Y = 1\n')
    (tmp_path / 'top.py').write_text('Z = 1\n')
    (tmp_path / 'ns').mkdir()  # a namespace package (no __init__.py)
    (tmp_path / 'ns' / 'deep.py').write_text('W = 1\n')
    (tmp_path / 'lazy.py').write_text('V = 1\n')
    (tmp_path / 'unrelated.py').write_text('U = 1\n')
    main = tmp_path / 'main.py'
    main.write_text('import os, json\nfrom helpers import f\nimport pkg.mod\nfrom pkg import sub\nimport ns.deep\n'
                    'def later():\n    import lazy\n    return lazy.V\n')
    files = {os.path.relpath(p, tmp_path) for p in fp.local_imports(str(main))}
    assert files == {'main.py', 'helpers.py', 'pkg/__init__.py', 'pkg/mod.py', 'pkg/sibling.py', 'pkg/sub.py',
                     'top.py', 'ns/deep.py', 'lazy.py'}


# -- the implementation part -----------------------------------------------------------------------
def load(path, name):
    import importlib.util
    import sys
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, os.path.dirname(path))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(os.path.dirname(path))
    return module


EXECUTOR_FILE = '''\
from sluice.components import Executor
from lib.util import double


class DoubleExecutor(Executor):
    def run(self, *, value: float) -> None:
        self.result = double(value)
'''

COMPONENT_FILE = '''\
from sluice.components import Component, Parameter
from executors import DoubleExecutor


class Double(Component):
    value = Parameter(float)
    executor = DoubleExecutor
'''


def test_custom_component_fingerprint_covers_its_files_and_their_local_imports(tmp_path):
    (tmp_path / 'lib').mkdir()
    (tmp_path / 'lib' / '__init__.py').write_text('')
    (tmp_path / 'lib' / 'util.py').write_text('def double(x):\n    return 2 * x\n')
    (tmp_path / 'other').mkdir()
    (tmp_path / 'executors.py').write_text(EXECUTOR_FILE)
    (tmp_path / 'other' / 'declare.py').write_text(COMPONENT_FILE)
    load(str(tmp_path / 'executors.py'), 'executors')
    comp = load(str(tmp_path / 'other' / 'declare.py'), f'declare_{id(tmp_path)}').Double
    parts = fp.implementation_parts(comp)
    assert sorted(parts['files']) == ['executors.py', 'lib/__init__.py', 'lib/util.py', 'other/declare.py']
    assert parts['libraries'] == {} and parts['version'] == '1'
    before = fp.implementation_fingerprint(comp)

    (tmp_path / 'lib' / 'util.py').write_text('def double(x):\n    """Twice x."""\n    return 2 * x  # twice\n')
    assert fp.implementation_fingerprint(comp) == before
    (tmp_path / 'lib' / 'util.py').write_text('def double(x):\n    return 3 * x\n')
    assert fp.implementation_fingerprint(comp) != before
    (tmp_path / 'lib' / 'util.py').write_text('def double(x):\n    return 2 * x\n')
    assert fp.implementation_fingerprint(comp) == before
    declare = tmp_path / 'other' / 'declare.py'
    declare.write_text(COMPONENT_FILE.replace('Parameter(float)', 'Parameter(float, default=1.0)'))
    assert fp.implementation_fingerprint(comp) != before


def test_a_class_without_a_file_is_fingerprinted_by_its_source():
    namespace: dict = {}
    exec('class Made:\n    def run(self):\n        return 1\n', namespace)
    made = namespace['Made']
    made.__module__ = 'nowhere'
    assert fp.class_file(made) is None
    assert list(fp.implementation_parts(made, made)['files']) == ['<nowhere.Made>']


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def source_of(files, name):
    """The entries of ``files`` for the module components/<name>.py or the subpackage components/<name>/."""
    return {n: d for n, d in files.items() if n == f'components/{name}.py' or n.startswith(f'components/{name}/')}


def on_disk(names):
    return {n: fp.source_digest(os.path.join(REPO, n)) for n in names}


def test_standard_components_cover_their_sluice_source_and_library_versions():
    from importlib.metadata import version

    import sluice.components as c
    from sluice.components.onnx_exporter import OnnxExporter

    def files(cls):
        return fp.implementation_parts(cls)['files']

    validator = fp.implementation_parts(c.ModelValidator)
    for name in ('model_validator', 'evaluator'):  # evaluator: its metrics reader
        assert source_of(validator['files'], name) == on_disk(source_of(validator['files'], name)) != {}, name
    assert validator['libraries'] == {'tensorflow-model-analysis': version('tensorflow-model-analysis')}
    trainer = fp.implementation_parts(c.Trainer)
    assert source_of(trainer['files'], 'trainer') == on_disk(source_of(trainer['files'], 'trainer')) != {}
    # The ONNX copy is its own node's work: the Trainer's key has none of its code or libraries.
    assert not source_of(trainer['files'], 'onnx_export') and not source_of(trainer['files'], 'onnx_exporter')
    assert 'tensorflow' in trainer['libraries'] and not {'tf2onnx', 'onnx', 'onnxruntime'} & set(trainer['libraries'])
    exporter = fp.implementation_parts(OnnxExporter)
    for name in ('onnx_exporter', 'onnx_export'):
        assert source_of(exporter['files'], name) == on_disk(source_of(exporter['files'], name)) != {}, name
    assert {'tensorflow', 'tf2onnx', 'onnx', 'onnxruntime'} <= set(exporter['libraries'])
    assert source_of(files(c.Evaluator), 'production')  # the baseline and the model's layout come from there
    gen = files(c.CsvExampleGen)
    assert gen == on_disk(source_of(gen, 'example_gen')) != {}  # its own source, nothing else
    assert source_of(files(c.Transform), 'transform') and source_of(files(c.Transform), 'schema_gen')
    for cls in (c.CsvExampleGen, c.ImportExampleGen, c.StatisticsGen, c.SchemaGen, c.ImportSchemaGen,
                c.ExampleValidator, c.Transform, c.Trainer, c.Evaluator, c.ModelValidator, c.Pusher):
        parts = fp.implementation_parts(cls)
        assert parts['files'] and not [n for n in parts['files'] if fp.is_plumbing(os.path.join(REPO, n))], cls
        assert all(v != 'not installed' for v in parts['libraries'].values()), (cls, parts['libraries'])


def test_files_in_subpackages_of_components_are_standard_and_plumbing_is_named_from_components():
    """components/production/ is Sluice source like components/trainer.py, followed from a standard
    component's `from sluice.components.production.x import ...`; components/fingerprint/ is plumbing
    as a whole, like driver.py."""
    import sluice.components as c

    components = os.path.join(REPO, 'components')
    destination = os.path.join(components, 'production', 'destination.py')
    assert fp.is_standard(destination) and not fp.is_plumbing(destination)
    assert fp.is_plumbing(os.path.join(components, 'fingerprint', 'key.py'))
    assert fp.is_plumbing(os.path.join(components, 'driver.py'))
    assert not fp.is_plumbing(os.path.join(components, 'trainer.py'))
    assert not fp.is_standard(os.path.join(REPO, 'pipelines', 'dsl', 'pipeline.py'))
    files = fp.implementation_parts(c.Pusher)['files']
    assert files['components/production/destination.py'] == fp.source_digest(destination)
    assert not [n for n in files if n.startswith('components/fingerprint')]


COPY_SCRIPT = '''\
import json, os, sys
import sluice.components as components
from sluice.components import ModelValidator, Trainer
from sluice.components import fingerprint as fp
from sluice.components.onnx_exporter import OnnxExporter

here = os.path.dirname(components.__file__)
assert here == sys.argv[1], here
out = {'validator': fp.implementation_fingerprint(ModelValidator), 'trainer': fp.implementation_fingerprint(Trainer)}


def edit(name, text):  # a file named as in a key: components/...
    with open(os.path.join(os.path.dirname(here), name), 'a') as f:
        f.write(text)


def own(cls, name):  # the last file of components/<name>.py or components/<name>/ in the key of cls
    return sorted(n for n in fp.implementation_files(cls) if n.startswith(f'components/{name}'))[-1]


edit(own(ModelValidator, 'model_validator'), '\\n# A note on thresholds.\\n')
out['validator_comment'] = fp.implementation_fingerprint(ModelValidator)
edit(own(ModelValidator, 'model_validator'), '\\nSLACK = 0.01\\n')
out['validator_code'] = fp.implementation_fingerprint(ModelValidator)
out['exporter'] = fp.implementation_fingerprint(OnnxExporter)
edit(own(OnnxExporter, 'onnx_export'), '\\nOPSET = 99\\n')
out['trainer_onnx'] = fp.implementation_fingerprint(Trainer)
out['exporter_onnx'] = fp.implementation_fingerprint(OnnxExporter)
out['heavy'] = sorted(m for m in ('tensorflow', 'apache_beam', 'tensorflow_model_analysis', 'tf2onnx', 'onnx')
                      if m in sys.modules)
print(json.dumps(out))
'''


def test_editing_sluice_component_source_changes_its_fingerprint(tmp_path):
    """On a copy of Sluice's components package (the repository is never edited by tests)."""
    import json
    import shutil
    import subprocess
    import sys

    import sluice.components as c

    copy = tmp_path / 'sluice' / 'components'
    shutil.copytree(os.path.join(REPO, 'components'), copy, ignore=shutil.ignore_patterns('__pycache__'))
    env = {**os.environ, 'PYTHONPATH': f'{tmp_path / "sluice"}{os.pathsep}{REPO}'}
    proc = subprocess.run([sys.executable, '-c', COPY_SCRIPT, str(copy)], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    # Same content elsewhere: the same fingerprint as the repository's (names are relative).
    assert out['validator'] == fp.implementation_fingerprint(c.ModelValidator)
    assert out['trainer'] == fp.implementation_fingerprint(c.Trainer)
    assert out['validator_comment'] == out['validator']
    assert out['validator_code'] != out['validator']
    assert out['trainer_onnx'] == out['trainer']  # the export is not the Trainer's code
    assert out['exporter_onnx'] != out['exporter']
    assert out['heavy'] == []  # versions are read from metadata, nothing imported


# -- where project code is found -------------------------------------------------------------------
def write(root, files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_absolute_imports_resolve_as_python_finds_project_code(tmp_path, monkeypatch):
    """Against the file's directory, then the directory holding the top of its package, then the
    sys.path entries outside the Python installation, in order; the first match wins."""
    write(tmp_path, {
        'a/shared.py': '', 'b/shared.py': '', 'b/only_b.py': '',
        'a/ns/x.py': '', 'b/ns/y.py': '',                              # a namespace package in two entries
        'a/regular/__init__.py': '', 'b/regular/extra.py': '',          # a regular package hides b's
        'proj/beside.py': '', 'a/beside.py': '',
        'proj/mycomps/__init__.py': '', 'proj/mycomps/tool.py': 'import beside\nimport mycomps.more\n',
        'proj/mycomps/more.py': '',
        'proj/main.py': 'import shared, only_b, ns.x, ns.y, regular.extra, beside, pytest, json\n'
                        'from mycomps import tool\n',
    })
    monkeypatch.syspath_prepend(str(tmp_path / 'b'))
    monkeypatch.syspath_prepend(str(tmp_path / 'a'))
    files = {os.path.relpath(p, tmp_path) for p in fp.local_imports(str(tmp_path / 'proj' / 'main.py'))}
    assert files == {'proj/main.py', 'a/shared.py', 'b/only_b.py', 'a/ns/x.py', 'b/ns/y.py', 'a/regular/__init__.py',
                     'proj/beside.py', 'proj/mycomps/__init__.py', 'proj/mycomps/tool.py', 'proj/mycomps/more.py'}
    # A file of a package: its own directory, then the directory holding the package, then sys.path.
    roots = fp.import_roots(str(tmp_path / 'proj' / 'mycomps' / 'tool.py'))
    assert roots[:4] == [str(tmp_path / 'proj' / 'mycomps'), str(tmp_path / 'proj'), str(tmp_path / 'a'),
                         str(tmp_path / 'b')]
    assert not any(r.startswith((sys.prefix, sys.base_prefix)) for r in roots)  # no stdlib, no site-packages
    # Names: relative to the directory holding the package, else to the innermost root holding the file.
    assert fp.display_name(str(tmp_path / 'a' / 'ns' / 'x.py'), str(tmp_path / 'proj'),
                           [str(tmp_path), str(tmp_path / 'a')]) == os.path.join('ns', 'x.py')


def test_resolution_follows_files_added_to_a_directory_it_remembered(tmp_path, monkeypatch):
    write(tmp_path, {'lib/shared.py': '', 'proj/main.py': 'import shared\n'})
    monkeypatch.syspath_prepend(str(tmp_path / 'lib'))
    long_ago = (10**18, 10**18)
    for d in (tmp_path / 'lib', tmp_path / 'proj'):
        os.utime(d, ns=long_ago)  # old enough for its listing to be memoised
    main = str(tmp_path / 'proj' / 'main.py')
    assert fp.local_imports(main) == [str(tmp_path / 'lib' / 'shared.py'), main]
    assert str(tmp_path / 'proj') in imports._listings
    (tmp_path / 'proj' / 'shared.py').write_text('')  # now shadows lib's, as for Python
    assert fp.local_imports(main) == [main, str(tmp_path / 'proj' / 'shared.py')]


def test_sluice_own_packages_are_never_part_of_user_code(tmp_path, monkeypatch):
    """With Sluice's root on sys.path (an editable install, the repository as working directory), a
    user file importing Sluice must not pull Sluice's source into its key."""
    monkeypatch.syspath_prepend(REPO)
    write(tmp_path, {'helpers.py': 'from sluice.components.trainer import FnArgs\n',
                     'module.py': 'from sluice.components import FnArgs\nimport sluice\nfrom sluice.metadata import artifact\n'
                                  'import helpers\n'})
    module = str(tmp_path / 'module.py')
    assert fp.local_imports(module) == [str(tmp_path / 'helpers.py'), module]
    assert sorted(fp.code_parts(module)['files']) == ['helpers.py', 'module.py']


def test_a_class_without_a_file_is_keyed_by_what_it_uses_of_its_module():
    """Functions, classes and constants of its module that its methods use by name, transitively;
    without the source (exec of a string), their compiled code, wherever their lines are."""
    import types

    cells = types.ModuleType('cells')

    def cell(source):
        exec(compile(source, '<cell>', 'exec'), cells.__dict__)

    cell('RATE = 2\n\ndef helper(x):\n    return inner(x) * RATE\n\ndef inner(x):\n    return x + 1\n')
    cell('class Made:\n    def run(self, x):\n        return helper(x)\n\ndef unrelated():\n    return 0\n')
    base = fp.implementation_fingerprint(cells.Made, cells.Made)
    cell('\n\n\ndef unrelated():\n    return 1\n')
    cell('\n\n\n\ndef helper(x):  # moved down, same code\n    return inner(x) * RATE\n')
    assert fp.implementation_fingerprint(cells.Made, cells.Made) == base
    edits = ('def inner(x):\n    return x + 2\n', 'RATE = 3\n', 'def helper(x, k=1):\n    return inner(x) * RATE\n')
    for edit in edits:
        before = fp.implementation_fingerprint(cells.Made, cells.Made)
        cell(edit)
        assert fp.implementation_fingerprint(cells.Made, cells.Made) != before, edit
    before = fp.implementation_fingerprint(cells.Made, cells.Made)
    cell('def helper(x, k=2):\n    return inner(x) * RATE\n')  # a default is code that runs
    assert fp.implementation_fingerprint(cells.Made, cells.Made) != before
    # Constants of containers of literals too, whatever the order of a dict or set.
    cell('TABLE = {"b": [1, 2], "a": {3}}\n\ndef inner(x):\n    return x + TABLE["a"].pop()\n')
    before = fp.implementation_fingerprint(cells.Made, cells.Made)
    cell('TABLE = {"a": {3}, "b": [1, 2]}\n')
    assert fp.implementation_fingerprint(cells.Made, cells.Made) == before
    cell('TABLE = {"a": {3}, "b": [1, 2, 3]}\n')
    assert fp.implementation_fingerprint(cells.Made, cells.Made) != before


def test_the_process_start_is_known_to_a_clock_tick_so_a_file_saved_just_before_a_run_is_not_refused():
    """Files changed after the process started may be newer than the modules in memory; the start must be
    precise, else a file saved a second before `sluice run` is taken for one edited during the run."""
    import subprocess
    import sys
    code = ('import time; t = time.time_ns(); from sluice.components.fingerprint import stale; '
            'print(t - stale._process_start_ns())')
    out = subprocess.run([sys.executable, '-c', code], env={**os.environ, 'PYTHONPATH': REPO}, capture_output=True,
                         text=True, timeout=60, check=True)
    before_first_line = int(out.stdout)
    assert 0 < before_first_line < 500_000_000, before_first_line  # interpreter start-up plus a clock tick or two


def test_the_modules_in_memory_are_read_while_other_code_imports():
    """The stale-code check reads sys.modules while other threads import (nodes run at once). Reading it
    item by item let other Python code run in between (a garbage collection's finalizers, and a
    thread switch after them), and a run failed with "RuntimeError: dictionary changed size during
    iteration" (seen in the suite). Here a finalizer that adds a module and leaves new garbage behind
    runs at every collection, and a collection at every allocation."""
    import gc
    import types

    from sluice.components.fingerprint.stale import _modules_of

    added = []

    class Importer:
        def __init__(self):
            self.cycle = self

        def __del__(self):
            name = f'sluice_test_finalizer_import_{len(added)}'
            sys.modules[name] = types.ModuleType(name)
            added.append(name)
            if len(added) < 5000:
                Importer()  # garbage for the next collection

    threshold = gc.get_threshold()
    gc.collect()
    gc.disable()
    try:
        Importer()
        gc.set_threshold(1)
        gc.enable()
        assert _modules_of({os.path.abspath(fp.__file__)}, set()) is not None
    finally:
        gc.set_threshold(*threshold)
        gc.enable()
        for name in added:
            sys.modules.pop(name, None)
    assert added, 'no finalizer ran during the check: the test did not test anything'
