from __future__ import annotations

import os

import sizes

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_no_module_or_function_too_long_to_read_without_a_reason():
    assert len(sizes.source_files(ROOT)) > 60
    assert sizes.oversized(ROOT) == []


def test_the_size_check_sees_a_long_function_and_accepts_a_reason(tmp_path):
    (tmp_path / 'components').mkdir()
    body = ''.join(f'    x{i} = {i}\n' for i in range(85))
    (tmp_path / 'components' / 'a.py').write_text(f'def f():\n{body}\n\ndef g():  # long: one table\n{body}')
    assert sizes.oversized(str(tmp_path)) == ['components/a.py:1: f() is 86 lines (at most 80, or a '
                                              '"# long: why" comment on its def line)']
