"""User module files: clear errors for the usual mistakes, fresh code on every load."""
from __future__ import annotations

import pytest

from components.module_file import ModuleFileError, load_module_file


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
