"""The notebooks run top to bottom on the real stack; the notebook and `sluice run` share one cache."""
from __future__ import annotations

import os
import re

import pytest

from sluice.metadata import MetadataStore
from sluice.ui.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOTEBOOKS = os.path.join(REPO, 'notebooks')
PENGUIN = os.path.join(REPO, 'pipelines', 'examples', 'penguin', 'penguin_pipeline.py')


def execute(name, work_dir, monkeypatch):
    import nbformat  # here, not at the top: nbformat's schema checks take ~4 s to import, in every
    from nbclient import NotebookClient  # test process that collects this file

    monkeypatch.setenv('SLUICE_NOTEBOOK_ROOT', str(work_dir))
    nb = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
    NotebookClient(nb, timeout=900, kernel_name='python3', resources={'metadata': {'path': NOTEBOOKS}}).execute()
    return nb  # execute() raises CellExecutionError if any cell errors


def outputs(nb):
    text = []
    for cell in nb.cells:
        for out in cell.get('outputs', []):
            text.append(out.get('text', '') + ''.join(str(v) for v in out.get('data', {}).values()))
    return '\n'.join(text)


def test_quickstart_runs_and_sluice_run_reuses_everything_it_did(tmp_path, monkeypatch, capsys):
    nb = execute('quickstart.ipynb', tmp_path, monkeypatch)
    shown = outputs(nb)
    assert 'No anomalies.' in shown and 'BLESSED' in shown and 'Pushed as version' in shown
    assert '<svg' in shown and 'sparse_categorical_accuracy' in shown
    # The views draw plots; Plotly's JavaScript is inline, in the first view with a plot only.
    for kind in ('statistics', 'evaluation', 'history', 'timeline', 'durations'):  # durations: context.history()
        assert f'"meta":{{"sluice":"{kind}"' in shown, kind
    assert shown.count('var __sluice_define') == 1 and '<script src' not in shown
    # The production cell: the destination's current version, pushed by the pipeline, with its blessing.
    assert re.search(r'Production at .*/serving: version \d+\n  kind: +push', shown), shown[-3000:]
    assert re.search(r'  blessing: +BLESSED \(blessing #\d+\)', shown)
    # The pipeline file run from the same directory: same name, root and store -> all cache hits.
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(['run', PENGUIN]) == 0
    out = capsys.readouterr().out
    assert '0 executed, 10 cached, 0 failed' in out
    assert len(re.findall(r'\] [\w.]+\s+CACHED', out)) == 10


def test_resume_and_gate_notebook(tmp_path, monkeypatch):
    nb = execute('resume_and_gate.ipynb', tmp_path, monkeypatch)
    shown = outputs(nb)
    assert 'Resume plan for run' in shown and 'NOT_BLESSED' in shown and 'Not pushed' in shown
    # The worse model's evaluation, drawn with the bound it failed and against the production model.
    assert '"failing":[["sparse_categorical_accuracy","Overall"]]' in shown
    assert '"name":"baseline (production)"' in shown and 'lower bound 0.6' in shown
    store = MetadataStore(f'sqlite:///{tmp_path}/gate/metadata.db')
    runs = store.runs('penguin')
    assert [r.state for r in runs] == ['COMPLETE', 'COMPLETE']  # the failed run was resumed to COMPLETE


@pytest.fixture(scope='module')
def notebooks_have_no_outputs():
    import nbformat

    for name in os.listdir(NOTEBOOKS):
        nb = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
        assert not any(c.get('outputs') for c in nb.cells), f'{name} is committed with outputs'


def test_notebooks_are_committed_clean(notebooks_have_no_outputs):
    assert sorted(os.listdir(NOTEBOOKS)) == ['quickstart.ipynb', 'resume_and_gate.ipynb']
