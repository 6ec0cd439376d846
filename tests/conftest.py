from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # tests/dummies.py

from metadata import MetadataStore  # noqa: E402


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
