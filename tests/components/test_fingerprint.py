"""Cache-key ingredients: canonical parameters and user-code fingerprints."""
from __future__ import annotations

import pytest

from components import fingerprint as fp


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
