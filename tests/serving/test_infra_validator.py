"""The InfraValidator: the candidate must load in ``sluice serve`` and answer in time, or the Pusher
pushes nothing."""
from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

from serving_helpers import INFRA_PENGUIN

from sluice.components.infra_validator import InfraValidatorExecutor
from sluice.metadata.artifact import InfraBlessing, Model


def _latest(pattern: str) -> str:
    return max(glob.glob(pattern), key=lambda p: int(os.path.basename(p)))


def test_a_model_that_loads_and_answers_is_infra_blessed_and_pushed(penguin_run):
    with open(os.path.join(penguin_run, 'second-run.txt')) as f:
        output = f.read()
    blessing = _latest(os.path.join(penguin_run, 'runs', 'penguin', 'InfraValidator', 'blessing', '*'))
    with open(os.path.join(blessing, 'infra_validation.json')) as f:
        report = json.load(f)
    assert report['blessed'] is True and report['reason'] == 'loaded and answered 10 requests within 60 s'
    assert 0 < report['load_seconds'] < 60 and report['latency_seconds']['max'] < 60
    assert os.path.isfile(os.path.join(blessing, 'INFRA_BLESSED'))
    assert f"InfraValidator: INFRA_BLESSED model #{report['model_id']}: loaded and answered" in output
    assert 'Pusher: pushed to ' in output


def test_a_model_that_cannot_load_is_refused_and_nothing_is_pushed(penguin_run):
    destination = os.path.join(penguin_run, 'runs', 'penguin', 'serving')
    before = sorted(os.listdir(destination))
    model = _latest(os.path.join(penguin_run, 'runs', 'penguin', 'Trainer', 'model', '*'))
    onnx_file = os.path.join(model, 'Format-ONNX', 'model.onnx')
    with open(onnx_file, 'rb') as f:
        good = f.read()
    try:
        with open(onnx_file, 'wb') as f:  # broken on purpose after training: half the file
            f.write(good[:len(good) // 2])
        done = subprocess.run([sys.executable, '-m', 'sluice.ui.cli', 'run', INFRA_PENGUIN, '--from', 'InfraValidator',
                               '--no-cache', 'InfraValidator'], cwd=penguin_run, capture_output=True, text=True,
                              timeout=300)
    finally:
        with open(onnx_file, 'wb') as f:
            f.write(good)
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'InfraValidator: INFRA_NOT_BLESSED model #' in done.stdout
    assert 'the model failed to load: ' in done.stdout and 'does not load in ONNX Runtime' in done.stdout
    assert 'Pusher: not pushed: the model failed its infra check: the model failed to load: ' in done.stdout
    assert sorted(os.listdir(destination)) == before


def test_a_model_that_does_not_load_in_time_is_not_blessed(models, tmp_path):
    blessing = InfraBlessing(uri=str(tmp_path))
    model = Model(uri=models[-1])
    model.id = 42
    InfraValidatorExecutor().run(model=model, blessing=blessing, time_limit_seconds=0.2, requests=3)
    with open(tmp_path / 'infra_validation.json') as f:
        report = json.load(f)
    assert blessing.get('blessed') == 0 and report['blessed'] is False
    assert report['reason'].startswith('the model did not load within time_limit_seconds=0.2: ')
    assert os.path.isfile(tmp_path / 'INFRA_NOT_BLESSED') and blessing.get('current_model_id') == 42
