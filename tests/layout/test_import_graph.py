"""Floors without shortcuts: metadata < components < pipelines, and no import cycle anywhere."""
from __future__ import annotations

import os
import textwrap

import importgraph

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_no_module_imports_a_higher_floor():
    graph = importgraph.build(ROOT)
    assert len(graph.modules) > 60, sorted(graph.modules)  # the walk found the source
    assert importgraph.upward_imports(graph) == []


def test_no_import_cycle_even_through_a_function_level_import():
    graph = importgraph.build(ROOT)
    found = importgraph.cycles(graph)
    assert found == [], '\n'.join(importgraph.describe_cycle(graph, c) for c in found)


def _tree(tmp_path, files: dict[str, str]) -> str:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    for folder in importgraph.FLOORS:
        (tmp_path / folder).mkdir(exist_ok=True)
    return str(tmp_path)


def test_the_checker_finds_a_cycle_hidden_in_a_function(tmp_path):
    root = _tree(tmp_path, {
        'pipelines/__init__.py': '',
        'pipelines/ui/__init__.py': '',
        'pipelines/ui/cli.py': 'from sluice.integrations.export import write\n',
        'pipelines/integrations/__init__.py': '',
        'pipelines/integrations/export.py': 'def write():\n    from sluice.ui import cli\n',
    })
    graph = importgraph.build(root)
    assert importgraph.cycles(graph) == [['sluice.integrations.export', 'sluice.ui.cli']]
    text = importgraph.describe_cycle(graph, importgraph.cycles(graph)[0])
    assert 'sluice.integrations.export -> sluice.ui.cli' in text and 'export.py:2' in text


def test_the_checker_finds_an_upward_import_and_a_package_cycle(tmp_path):
    root = _tree(tmp_path, {
        'metadata/__init__.py': 'from sluice.metadata.store import Store\n',
        'metadata/store.py': 'from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from sluice.components.pusher import P\n',
        'components/__init__.py': 'from sluice.components.pusher import P\n',
        'components/pusher.py': 'from sluice.components import helper\nfrom . import other\n',
        'components/helper.py': '',
        'components/other.py': 'from sluice import Retry\n',
        'pipelines/__init__.py': '',
    })
    graph = importgraph.build(root)
    assert importgraph.upward_imports(graph) == [
        f'{root}/components/other.py:1: sluice.components.other imports sluice, a higher floor',
        f'{root}/metadata/store.py:3: sluice.metadata.store imports sluice.components.pusher, a higher floor']
    # `from sluice.components import helper` names the submodule, not the package: no cycle there
    assert importgraph.cycles(graph) == []
    (tmp_path / 'components/helper.py').write_text('from sluice.components import P\n')  # the package
    graph = importgraph.build(root)
    assert importgraph.cycles(graph) == [
        ['sluice.components', 'sluice.components.helper', 'sluice.components.pusher']]
