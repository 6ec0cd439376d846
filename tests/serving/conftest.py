"""The serving tests' models: two real penguin models pushed by the example pipeline (trained twice, so
their files differ; the second time through an InfraValidator)."""
from __future__ import annotations

import os

import pytest

from serving_helpers import INFRA_PENGUIN, PENGUIN, sluice


@pytest.fixture(scope='session')
def penguin_run(tmp_path_factory) -> str:
    """A directory where the example penguin pipeline ran twice, the second time retraining, with an
    InfraValidator before the Pusher: its ``runs/penguin/serving`` holds two versions, two models whose
    files differ, each pushed by the Pusher. The second run's output is in ``second-run.txt``."""
    where = str(tmp_path_factory.mktemp('penguin-serving'))
    sluice('run', PENGUIN, '-q', cwd=where)
    second = sluice('run', INFRA_PENGUIN, '--no-cache', 'Trainer', cwd=where)
    with open(os.path.join(where, 'second-run.txt'), 'w') as f:
        f.write(second.stdout)
    versions = sorted(os.listdir(os.path.join(where, 'runs', 'penguin', 'serving')))
    assert len([v for v in versions if v.isdigit()]) == 2, versions
    return where


@pytest.fixture
def models(penguin_run) -> list[str]:
    """The two Model artifacts' directories, oldest first."""
    root = os.path.join(penguin_run, 'runs', 'penguin', 'Trainer', 'model')
    return [os.path.join(root, d) for d in sorted(os.listdir(root), key=int)]
