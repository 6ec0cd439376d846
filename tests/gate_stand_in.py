"""The gate on stand-in models, shared by the production tests (local and S3 destinations) and gc's:
a stand-in model is a SavedModel-shaped directory whose ``saved_model.pb`` says its accuracy;
``Score`` measures it with the real Evaluator driver (the baseline is the model in production at the
destination) and metrics.json format, and ``Judge`` blesses a strictly better one with the
ModelValidator's blessing format."""
from __future__ import annotations

import json
import os

from dummies import FakeModel, Source
from sluice import Pipeline
from sluice.components import (Component, Executor, Input, Model, ModelBlessing, ModelEvaluation, Output, Parameter,
                               Pusher)
from sluice.components.evaluator import EvaluatorDriver, baseline_identity, load_metrics_summary, set_baseline_identity
from sluice.components.model_validator.gate import blessing_identity, set_blessing_identity
from sluice.components.production.destination import serving_path


class ScoreExecutor(Executor):
    """Reads each model's accuracy from its saved_model.pb; writes metrics.json as the Evaluator does."""

    def run(self, *, model: Model, baseline_model: Model | None, evaluation: ModelEvaluation,
            push_destination: str | None) -> None:
        overall = {'candidate': {'accuracy': accuracy(model)}}
        if baseline_model is not None:
            overall['baseline'] = {'accuracy': accuracy(baseline_model)}
            overall['diff'] = {'accuracy': overall['candidate']['accuracy'] - overall['baseline']['accuracy']}
        summary = {**baseline_identity(model, baseline_model, push_destination), 'split': 'eval',
                   'slices': {'Overall': overall}}
        with open(os.path.join(evaluation.uri, 'metrics.json'), 'w') as f:
            json.dump(summary, f)
        set_baseline_identity(evaluation, summary)


class Score(Component):
    """The Evaluator's driver (baseline = production at push_destination) over a stand-in measurement."""
    model = Input(Model)
    baseline_model = Input(Model, optional=True)
    evaluation = Output(ModelEvaluation)
    push_destination = Parameter(str, default=None, path=True)
    executor = ScoreExecutor
    driver = EvaluatorDriver


class JudgeExecutor(Executor):
    """Blesses a model strictly more accurate than the baseline (or any model without one)."""

    def run(self, *, model: Model, evaluation: ModelEvaluation, blessing: ModelBlessing) -> None:
        summary = load_metrics_summary(evaluation)
        overall = summary['slices']['Overall']
        base = overall.get('baseline', {}).get('accuracy')
        blessed = base is None or overall['candidate']['accuracy'] > base
        identity = blessing_identity(model, summary)
        check = {'metric': 'accuracy', 'slice': 'Overall', 'passed': blessed, 'reason': f'baseline {base}'}
        with open(os.path.join(blessing.uri, 'reasons.json'), 'w') as f:
            json.dump({'blessed': blessed, **identity, 'policy': '', 'checks': [check]}, f)
        with open(os.path.join(blessing.uri, 'BLESSED' if blessed else 'NOT_BLESSED'), 'w') as f:
            f.write('')
        blessing.set('blessed', int(blessed))
        set_blessing_identity(blessing, identity)


class Judge(Component):
    model = Input(Model)
    evaluation = Input(ModelEvaluation)
    blessing = Output(ModelBlessing)
    executor = JudgeExecutor


def accuracy(model):
    with open(os.path.join(serving_path(model.uri), 'saved_model.pb')) as f:
        return float(f.readline().split('=')[1])


def gate(root, dest, acc, label='', name='gate', metadata=None):
    """Source -> FakeModel -> Score -> Judge -> Pusher; the model's accuracy is ``acc``."""
    spec = root / 'spec'
    spec.mkdir(parents=True, exist_ok=True)
    (spec / 'model.txt').write_text(f'accuracy={acc}\n{label}')
    src = Source(input_base=str(spec))
    model = FakeModel(text=src.outputs['text'])
    score = Score(model=model.outputs['model'])  # no push_destination: the Pipeline fills it in
    validator = Judge(model=model.outputs['model'], evaluation=score.outputs['evaluation'])
    pusher = Pusher(model=model.outputs['model'], blessing=validator.outputs['blessing'], push_destination=str(dest))
    return Pipeline(name, str(root), [src, model, score, validator, pusher],
                    metadata=metadata or f'sqlite:///{root}/metadata.db')
