"""Evaluator: TFMA metrics of the candidate model and of the model in production, on the same data.

    >>> evaluator = Evaluator(examples=gen.outputs['examples'], model=trainer.outputs['model'],
    ...                       eval_config={'label_key': 'species',
    ...                                    'metrics': ['SparseCategoricalAccuracy'],
    ...                                    'slices': [[], ['island']]})

The baseline is the model in production: the Model behind this pipeline's latest successful push
(from any earlier run), resolved by the Evaluator's driver; not merely the latest blessed model,
which may have lost a push race. Both models are measured in one TFMA run over the eval split with
the same slices. Besides TFMA's output, ``metrics.json`` holds every metric of both models per slice
(and their difference), readable without TFMA.

``eval_config`` is a dict as above (``metrics`` are TFMA metric class names, or
``{'class_name': ..., 'config': {...}}``; ``slices`` are lists of feature names, ``[]`` = overall;
optional ``prediction_key``) or a ``tfma.EvalConfig``.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any

from google.protobuf.message import Message

from components.component import Component, Input, Output, Parameter
from components.driver import Driver, InputError
from components.executor import Executor
from components.trainer import SERVING_DIR
from metadata.artifact import Artifact, Examples, Model, ModelEvaluation

METRICS_FILE = 'metrics.json'
OVERALL = 'Overall'
CANDIDATE, BASELINE = 'candidate', 'baseline'


def _check_eval_config(config: Any) -> None:
    if isinstance(config, Message):
        return
    unknown = set(config) - {'label_key', 'metrics', 'slices', 'prediction_key'}
    if unknown:
        raise ValueError(f'unknown key(s) {", ".join(sorted(unknown))}; use label_key, metrics, slices, '
                         'prediction_key, or pass a tfma.EvalConfig')
    if not config.get('label_key'):
        raise ValueError("give the label column, e.g. {'label_key': 'species', ...}")
    if not config.get('metrics'):
        raise ValueError("give at least one metric, e.g. 'metrics': ['SparseCategoricalAccuracy']")
    for slice_ in config.get('slices', [[]]):
        if not isinstance(slice_, (list, tuple)) or not all(isinstance(c, str) for c in slice_):
            raise ValueError(f'each slice is a list of feature names ([] = overall); got {slice_!r}')


def to_eval_config(config: Any, with_baseline: bool) -> Any:
    """A tfma.EvalConfig with a 'candidate' (and a 'baseline') model spec."""
    import tensorflow_model_analysis as tfma

    if isinstance(config, Message):
        cfg = tfma.EvalConfig()
        cfg.CopyFrom(config)
        spec = cfg.model_specs[0] if cfg.model_specs else tfma.ModelSpec(signature_name='serving_default')
    else:
        cfg = tfma.EvalConfig(
            metrics_specs=[tfma.MetricsSpec(metrics=[
                tfma.MetricConfig(class_name=m) if isinstance(m, str)
                else tfma.MetricConfig(class_name=m['class_name'], config=json.dumps(m.get('config', {})))
                for m in config['metrics']])],
            slicing_specs=[tfma.SlicingSpec(feature_keys=list(s)) for s in config.get('slices', [[]])])
        spec = tfma.ModelSpec(signature_name='serving_default', label_key=config['label_key'])
        if config.get('prediction_key'):
            spec.prediction_key = config['prediction_key']
    del cfg.model_specs[:]
    candidate = cfg.model_specs.add()
    candidate.CopyFrom(spec)
    candidate.name, candidate.is_baseline = CANDIDATE, False
    if with_baseline:
        baseline = cfg.model_specs.add()
        baseline.CopyFrom(spec)
        baseline.name, baseline.is_baseline = BASELINE, True
    return cfg


def slice_name(slice_key: Any) -> str:
    parts = []
    for single in slice_key.single_slice_keys:
        kind = single.WhichOneof('kind')
        value = getattr(single, kind) if kind else ''
        if isinstance(value, bytes):
            value = value.decode('utf-8', 'replace')
        parts.append(f'{single.column}={value}')
    return ', '.join(parts) or OVERALL


def load_metrics_summary(evaluation: Artifact) -> dict:
    with open(os.path.join(evaluation.uri, METRICS_FILE)) as f:
        return json.load(f)


class EvaluatorDriver(Driver):
    """Resolves the baseline: the model behind this pipeline's latest successful push."""

    def resolve_inputs(self) -> dict[str, Artifact | None]:
        inputs = super().resolve_inputs()
        if self.component.inputs.get('baseline_model') is None:
            inputs['baseline_model'] = self._baseline(inputs['model'])
        return inputs

    def _baseline(self, candidate: Artifact) -> Artifact | None:
        push = self.store.latest_push(self.pipeline.name)
        if push is None or not push.inputs.get('model'):
            return None  # nothing in production yet
        production = push.inputs['model'][0].artifact
        if production.id == candidate.id:
            # The candidate is already in production (an unchanged re-run): keep the baseline it was
            # measured against when it was pushed, so the evaluation is the same and can be reused.
            for node in push.walk():
                ex = node.execution
                if ex is not None and 'evaluation' in ex.outputs and \
                        [a.id for a in ex.inputs.get('model', [])] == [candidate.id]:
                    base = ex.inputs.get('baseline_model')
                    return base[0] if base else None
            return None
        if not production.exists():
            raise InputError(f'{self.component.id}: the model in production ({production!r}) is recorded in the '
                             f'store but its files at {production.uri} are gone; restore them, or wire '
                             'baseline_model=... explicitly.')
        return production


class EvaluatorExecutor(Executor):
    def run(self, *, examples: Examples, model: Model, baseline_model: Model | None,
            evaluation: ModelEvaluation, eval_config: Any, eval_split: str) -> None:
        import tensorflow_model_analysis as tfma
        from apache_beam.options.pipeline_options import PipelineOptions

        if eval_split not in examples.split_names:
            raise ValueError(f"Evaluator needs a '{eval_split}' split; {examples!r} has "
                             f'{", ".join(examples.split_names)}.')
        cfg = to_eval_config(eval_config, with_baseline=baseline_model is not None)
        models = [tfma.default_eval_shared_model(eval_saved_model_path=os.path.join(model.uri, SERVING_DIR),
                                                 eval_config=cfg, model_name=CANDIDATE)]
        if baseline_model is not None:
            models.append(tfma.default_eval_shared_model(
                eval_saved_model_path=os.path.join(baseline_model.uri, SERVING_DIR), eval_config=cfg,
                model_name=BASELINE))
        tfma.run_model_analysis(
            eval_shared_model=models if len(models) > 1 else models[0], eval_config=cfg,
            data_location=os.path.join(examples.split_uri(eval_split), '*'), file_format='tfrecords',
            output_path=evaluation.uri, pipeline_options=PipelineOptions(self.beam_pipeline_args))

        slices: dict[str, dict[str, dict[str, float]]] = {}
        for metrics in tfma.load_metrics(evaluation.uri):
            per_model = slices.setdefault(slice_name(metrics.slice_key), {CANDIDATE: {}, BASELINE: {}})
            for kv in metrics.metric_keys_and_values:
                if kv.key.is_diff or not kv.value.HasField('double_value'):
                    continue
                name = kv.key.name + (f'/{_sub_key(kv.key.sub_key)}' if kv.key.HasField('sub_key') else '')
                who = kv.key.model_name or CANDIDATE
                per_model.setdefault(who, {})[name] = kv.value.double_value.value
        if not slices:
            raise RuntimeError(f'TFMA computed no metrics for {model!r} on {examples.split_uri(eval_split)}.')
        summary = {
            'candidate_model_id': model.id or 0,
            'baseline_model_id': baseline_model.id if baseline_model is not None else 0,
            'split': eval_split,
            'slices': {name: {**m, 'diff': {k: m[CANDIDATE][k] - m[BASELINE][k] for k in m[CANDIDATE]
                                            if k in m.get(BASELINE, {})}}
                       for name, m in sorted(slices.items(), key=lambda kv: (kv[0] != OVERALL, kv[0]))},
        }
        for m in summary['slices'].values():
            if baseline_model is None:
                m.pop(BASELINE, None)
                m.pop('diff', None)
        with open(os.path.join(evaluation.uri, METRICS_FILE), 'w') as f:
            json.dump(summary, f, indent=2, sort_keys=True, default=_json_float)
        evaluation.set('baseline_model_id', summary['baseline_model_id'])
        evaluation.set('candidate_model_id', summary['candidate_model_id'])
        overall = summary['slices'].get(OVERALL, {})
        for name, value in sorted(overall.get(CANDIDATE, {}).items()):
            base = overall.get(BASELINE, {}).get(name)
            print(f'Evaluator: {name} = {value:.4f}' + (f' (baseline {base:.4f})' if base is not None else
                                                        ' (no baseline)'), flush=True)


def _sub_key(sub_key: Any) -> str:
    for field in ('class_id', 'k', 'top_k'):
        if sub_key.HasField(field):
            return f'{field}:{getattr(sub_key, field).value}'
    return 'sub'


def _json_float(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


class Evaluator(Component):
    """Measures the candidate and the production model with TFMA on the eval split."""
    examples = Input(Examples)
    model = Input(Model)
    baseline_model = Input(Model, optional=True)
    evaluation = Output(ModelEvaluation)
    eval_config = Parameter((dict, Message), check=_check_eval_config)
    eval_split = Parameter(str, default='eval')
    executor = EvaluatorExecutor
    driver = EvaluatorDriver
