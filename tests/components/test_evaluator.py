"""Evaluator: TFMA runs on the executor's Beam options. (The Evaluator on real TFMA metrics, its
eval_config.pbtxt and metrics.json: tests/components/test_model_validator.py, pipelines/test_examples.py.)"""
from __future__ import annotations

import os

import pytest

from sluice.components.evaluator import EvaluatorExecutor
from sluice.metadata import Examples, Model, ModelEvaluation


class Stop(Exception):
    pass


def test_tfma_runs_with_the_executors_beam_options(tmp_path, monkeypatch):
    import tensorflow_model_analysis as tfma
    seen = {}

    def run_model_analysis(**kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(tfma, 'default_eval_shared_model', lambda **kwargs: kwargs)
    monkeypatch.setattr(tfma, 'run_model_analysis', run_model_analysis)
    examples = Examples(uri=str(tmp_path / 'examples'), split_names='["eval"]')
    evaluation = ModelEvaluation(uri=str(tmp_path / 'evaluation'))
    executor = EvaluatorExecutor(beam_pipeline_args=['--direct_num_workers=2'], tmp_dir=str(tmp_path / 'tmp'))
    with pytest.raises(Stop):
        executor.run(examples=examples, model=Model(uri=str(tmp_path / 'model')), baseline_model=None,
                     evaluation=evaluation, eval_config={'label_key': 'y', 'metrics': ['AUC']}, eval_split='eval',
                     push_destination=None)
    options = seen['pipeline_options'].get_all_options()
    assert options == executor.beam_options().get_all_options()
    # what beam_options() adds (PipelineOptions(beam_pipeline_args) alone had neither)
    assert options['pickle_library'] == 'cloudpickle' and options['direct_num_workers'] == 2
    assert options['temp_location'] == os.path.join(str(tmp_path / 'tmp'), 'beam')
    # without a baseline TFMA 'rubber stamps' (change thresholds in the eval config are not checkable)
    assert seen['eval_shared_model']['rubber_stamp'] is True

