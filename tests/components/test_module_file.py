"""User module files: clear errors for the usual mistakes, fresh code on every load."""
from __future__ import annotations

import os

import pytest

from sluice.components.module_file import ModuleFileError, load_module_file

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize('content, message', [
    (None, r'^Module file .*/m\.py does not exist; check the module_file parameter\.$'),
    ('def run_fn(x:\n', r'^Module file .*/m\.py line 1: syntax error: .*\. Fix the file and run again\.$'),
    ('import no_such_module_here\n',
     r"^Module file .*/m\.py failed to import: ModuleNotFoundError: No module named 'no_such_module_here'$"),
    ('def preprocessing_fn(inputs):\n    return inputs\n',
     r'^Module file .*/m\.py has no function run_fn\(\); define it there\. Functions it defines: preprocessing_fn\.$'),
    ('run_fn = 3\n', r'has no function run_fn\(\); define it there\. Functions it defines: none\.$'),
])
def test_module_file_errors(tmp_path, content, message):
    path = tmp_path / 'm.py'
    if content is not None:
        path.write_text(content)
    with pytest.raises(ModuleFileError, match=message):
        load_module_file(str(path), required=['run_fn'])


def test_each_load_sees_the_current_code_of_the_file_and_its_local_imports(tmp_path):
    (tmp_path / 'util.py').write_text('VALUE = 1\n')
    path = tmp_path / 'm.py'
    path.write_text('import util\n\ndef run_fn():\n    return util.VALUE\n')
    assert load_module_file(str(path), ['run_fn']).run_fn() == 1
    (tmp_path / 'util.py').write_text('VALUE = 22\n')
    assert load_module_file(str(path), ['run_fn']).run_fn() == 22


def test_a_load_drops_the_modules_older_than_their_file_and_those_importing_them(tmp_path, monkeypatch):
    """Modules found elsewhere on sys.path are dropped when their file changed (and so are those
    importing them); the others stay, so that objects made from their classes stay valid."""
    import sys

    lib = tmp_path / 'lib'
    (lib / 'pkg_mf').mkdir(parents=True)
    (lib / 'pkg_mf' / '__init__.py').write_text('')
    (lib / 'pkg_mf' / 'sub.py').write_text('V = 1\n')
    (lib / 'helper_mf.py').write_text('V = 10\n')
    (lib / 'uses_mf.py').write_text('from helper_mf import V as HV\n')  # holds the value: must go too
    (lib / 'stable_mf.py').write_text('class Thing:\n    pass\n')
    monkeypatch.syspath_prepend(str(lib))
    (tmp_path / 'proj').mkdir()
    path = tmp_path / 'proj' / 'm.py'
    path.write_text('import stable_mf, uses_mf\nfrom pkg_mf import sub\n\n\n'
                    'def run_fn():\n    return uses_mf.HV + sub.V\n')
    assert load_module_file(str(path), ['run_fn']).run_fn() == 11
    stable, thing = sys.modules['stable_mf'], sys.modules['stable_mf'].Thing()

    (lib / 'helper_mf.py').write_text('V = 20\n')
    assert load_module_file(str(path), ['run_fn']).run_fn() == 21
    (lib / 'pkg_mf' / 'sub.py').write_text('V = 2\n')  # `from pkg_mf import sub` must not find the old one
    assert load_module_file(str(path), ['run_fn']).run_fn() == 22
    assert sys.modules['stable_mf'] is stable and isinstance(thing, sys.modules['stable_mf'].Thing)


def test_sluice_packages_and_the_standard_library_are_never_dropped(tmp_path, monkeypatch):
    """Even when the module file imports them, Sluice's root is on sys.path, and a project file has
    the name of a standard module."""
    import json
    import sys

    import sluice.components
    import sluice

    monkeypatch.syspath_prepend(REPO)
    (tmp_path / 'json.py').write_text('X = 1\n')
    path = tmp_path / 'm.py'
    path.write_text('import json\nimport sluice\nfrom sluice.components import FnArgs\n\n\n'
                    'def run_fn():\n    return FnArgs\n')
    assert load_module_file(str(path), ['run_fn']).run_fn() is sluice.components.FnArgs
    assert sys.modules['json'] is json and sys.modules['sluice.components'] is sluice.components
    assert sys.modules['sluice'] is sluice
