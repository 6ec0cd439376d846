"""The sluice command line, tested through its output, on the demo pipeline (real Beam, SQLite)."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from sluice.metadata import MetadataStore
from sluice.ui.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO = os.path.join(REPO, 'pipelines', 'examples', 'demo', 'demo_pipeline.py')
HEAVY = ('tensorflow', 'apache_beam', 'tensorflow_data_validation', 'tensorflow_model_analysis',
         'tensorflow_transform')


def sluice(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def demo_runs(tmp_path, monkeypatch, capsys):
    """Two runs of the demo pipeline from a fresh working directory: executed, then cached."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv('SLUICE_METADATA', raising=False)
    first = sluice(capsys, 'run', DEMO)
    second = sluice(capsys, 'run', DEMO)
    return first, second


def run_id_of(output):
    return re.search(r'^Run (\S+) of pipeline', output, re.M).group(1)


def test_run_then_rerun_is_fully_cached(demo_runs, tmp_path):
    (code1, out1, _), (code2, out2, _) = demo_runs
    assert code1 == 0 and 'COMPLETE' in out1 and '4 executed, 0 cached, 0 failed' in out1
    assert code2 == 0 and '0 executed, 4 cached, 0 failed' in out2
    for node in ('ReadCsv', 'Summarize', 'CountLabels', 'WriteReport'):
        assert re.search(rf'\] {node}\s+CACHED', out2)
    [report] = list((tmp_path / 'runs' / 'demo' / 'WriteReport' / 'report').glob('*/report.md'))
    text = report.read_text()
    # The label counts of the penguins data, computed on Beam: 146 Adelie, 68 Gentoo, 120 Chinstrap.
    assert '| 0 | 146 |' in text and '| 1 | 68 |' in text and '| 2 | 120 |' in text
    assert re.search(r'\| body_mass_g \| 334 \| 0\.4192 \|', text)
    assert f'Details: sluice show {run_id_of(out2)}' in out2


def test_runs_show_and_lineage(demo_runs, capsys):
    (_, out1, _), (_, out2, _) = demo_runs
    first, second = run_id_of(out1), run_id_of(out2)
    code, out, _ = sluice(capsys, 'runs')
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].split() == ['RUN', 'PIPELINE', 'STARTED', 'STATE', 'NODES', 'DONE']
    assert [ln.split()[0] for ln in lines[1:]] == [first, second]
    assert all(ln.split()[-2:] == ['COMPLETE', '4/4'] for ln in lines[1:])

    code, out, _ = sluice(capsys, 'show', second)
    assert code == 0
    assert f"Run {second} of pipeline 'demo': COMPLETE, 4/4 nodes done" in out
    assert re.search(r'^WriteReport \[WriteReport\] CACHED .*cache hit', out, re.M)
    report_uri = re.search(r'report: Markdown #(\d+) (\S+)', out)
    assert report_uri and os.path.isdir(report_uri.group(2))

    code, out, _ = sluice(capsys, 'lineage', report_uri.group(1))
    assert code == 0
    assert out.splitlines()[0].startswith(f'Markdown #{report_uri.group(1)} ')
    assert re.search(rf'<- WriteReport \[WriteReport\] execution #\d+, run {first} title="Palmer penguins"', out)
    assert 'input_base="' + os.path.join(REPO, 'pipelines', 'examples', 'penguin', 'data') + '"' in out
    assert out.count('<- ReadCsv') == 2  # through Summarize and through CountLabels


def test_cli_errors_are_one_clear_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv('SLUICE_METADATA', raising=False)
    code, _, err = sluice(capsys, 'runs')
    assert code == 2 and err.startswith('sluice: error: Which metadata store? Pass --metadata URL')
    # A mistyped store path is an error, not a new empty store.
    code, _, err = sluice(capsys, 'show', 'nope', '--metadata', f'sqlite:///{tmp_path}/typo/m.db')
    assert code == 2 and err.startswith(f'sluice: error: No metadata store at {tmp_path}/typo/m.db ')
    assert not (tmp_path / 'typo').exists()
    (tmp_path / 'notes.db').write_text('not a database')
    code, _, err = sluice(capsys, 'runs', '--metadata', f'sqlite:///{tmp_path}/notes.db')
    assert code == 2 and err.startswith(f'sluice: error: Cannot open {tmp_path}/notes.db as an ML-Metadata SQLite '
                                        'store: file is not a database. Point --metadata at a Sluice metadata store')
    MetadataStore(f'sqlite:///{tmp_path}/m.db')  # an empty store
    code, _, err = sluice(capsys, 'show', 'nope', '--metadata', f'sqlite:///{tmp_path}/m.db')
    assert code == 2 and "No run 'nope' in the metadata store" in err and 'The store has no runs' in err
    code, _, err = sluice(capsys, 'run', str(tmp_path / 'missing.py'))
    assert code == 2 and 'missing.py does not exist' in err


def test_failed_run_exits_1_and_says_what_failed(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'empty').mkdir()
    pipe = tmp_path / 'pipe.py'
    pipe.write_text(f'import sys\nsys.path.insert(0, {os.path.dirname(DEMO)!r})\n'
                    'from demo_pipeline import create_pipeline as demo\n'
                    'def create_pipeline():\n    return demo(root="runs/x", data="empty")\n')
    code, out, _ = sluice(capsys, 'run', str(pipe))
    assert code == 1
    assert re.search(r'\] ReadCsv\s+FAILED .*FileNotFoundError: No CSV files in .*/empty; put one or more', out)
    assert re.search(r'\] Summarize\s+SKIPPED .*not run: upstream ReadCsv did not succeed', out)
    assert 'ReadCsv failed (execution 1):' in out


def test_cli_and_cached_run_never_import_tensorflow_or_beam(demo_runs, tmp_path):
    env = {**os.environ, 'PYTHONPATH': REPO}
    proc = subprocess.run([sys.executable, '-X', 'importtime', '-m', 'sluice.ui.cli', 'run', DEMO],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert '0 executed, 4 cached' in proc.stdout
    imported = {line.split('|')[-1].strip().split('.')[0] for line in proc.stderr.splitlines()
                if line.startswith('import time:')}
    assert 'ml_metadata' in imported  # the check sees real imports
    assert not imported & set(HEAVY)


def test_packages_set_legacy_keras_before_tensorflow(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != 'TF_USE_LEGACY_KERAS'}
    env['PYTHONPATH'] = REPO
    for package, expected in (('sluice.metadata', '1'), ('sluice.components', '1'), ('sluice', '1')):
        out = subprocess.run([sys.executable, '-c', f'import os, {package}; '
                              'print(os.environ.get("TF_USE_LEGACY_KERAS", "unset"))'],
                             env=env, capture_output=True, text=True, timeout=60)
        # Every sluice.* import runs sluice/__init__.py first, which sets it.
        assert out.stdout.strip() == expected, (package, out.stderr)
