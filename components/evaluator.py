"""Evaluator: TFMA metrics of the candidate model and of the model in production, on the same data.

    >>> evaluator = Evaluator(examples=gen.outputs['examples'], model=trainer.outputs['model'],
    ...                       eval_config={'label_key': 'species',
    ...                                    'metrics': ['SparseCategoricalAccuracy'],
    ...                                    'slices': [[], ['island']]})

The baseline is the model in production at ``push_destination`` (filled in by the Pipeline from the
Pusher that consumes the same model; give it explicitly in a notebook): the version the destination
says is current, measured from its SavedModel AT THE DESTINATION, so a model pushed from another
store, rolled back or pushed by hand is a valid baseline. The driver records it as a Model input
whose cache fingerprint is the version's content fingerprint, so the Evaluator runs again whenever
production changes. When the model in production is the candidate itself (an unchanged re-run
after its push), the baseline is the one recorded in that version's push record, so the re-run
stays cached. Both models are measured in one TFMA run over the eval split with
the same slices. Besides TFMA's output, ``metrics.json`` holds every metric of both models per slice
(and their difference), readable without TFMA.

``eval_config`` is a dict as above (``metrics`` are TFMA metric class names, or
``{'class_name': ..., 'config': {...}}``; ``slices`` are lists of feature names, ``[]`` = overall;
optional ``prediction_key``) or a ``tfma.EvalConfig``. Thresholds in a ``tfma.EvalConfig``
(``metrics_specs[...].thresholds``, ``per_slice_thresholds``, a MetricConfig's ``threshold``) are
kept: the evaluation holds the config as given to TFMA (``eval_config.pbtxt``) and the ModelValidator
applies them. ``metrics.json`` is strict JSON (a NaN metric is ``null``).
"""
from __future__ import annotations

import json
import math
import os
from typing import Any

from google.protobuf import text_format
from google.protobuf.message import Message

from sluice.components.component import Component, Input, Output, Parameter
from sluice.components.driver import Driver
from sluice.components.executor import Executor
from sluice.components.production.destination import SERVING_DIR, inspect_version, production, serving_path
from sluice.components.production.identity import holds_model
from sluice.components.tf_setup import libraries_without_autograph
from sluice.metadata.artifact import Artifact, Examples, Model, ModelEvaluation
from sluice.components.production.record import version_artifact

METRICS_FILE = 'metrics.json'
EVAL_CONFIG_FILE = 'eval_config.pbtxt'  # the tfma.EvalConfig given to TFMA, thresholds included
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


def load_eval_config(evaluation: Artifact) -> Any:
    """The tfma.EvalConfig the evaluation was computed with, as the Evaluator gave it to TFMA (its
    thresholds included); for an evaluation without that file, the one TFMA wrote."""
    import tensorflow_model_analysis as tfma

    path = os.path.join(evaluation.uri, EVAL_CONFIG_FILE)
    if os.path.isfile(path):
        with open(path) as f:
            return text_format.Parse(f.read(), tfma.EvalConfig())
    from tensorflow_model_analysis.writers import eval_config_writer
    return eval_config_writer.load_eval_run(evaluation.uri)[0]


class EvaluatorDriver(Driver):
    """Resolves the baseline: the model in production at ``push_destination``, as the destination says
    (no TensorFlow here: this runs on cached re-runs too)."""

    baseline_version = ''  # the production version resolved as the baseline, if any

    def resolve_inputs(self) -> dict[str, Artifact | None]:
        inputs = super().resolve_inputs()
        if self.component.inputs.get('baseline_model') is None:
            inputs['baseline_model'] = self._baseline(inputs['model'])
            self.baseline_version = inputs['baseline_model'].get('version', '') if inputs['baseline_model'] else ''
        return inputs

    def external_fingerprints(self) -> dict[str, str]:
        # Besides the baseline's content (its fingerprint), its version: a rollback copies a model into a
        # new version, and the evaluation must name the version the Pusher will find in production.
        return {'baseline_version': self.baseline_version} if self.baseline_version else {}

    def _baseline(self, candidate: Artifact) -> Artifact | None:
        destination = self.component.parameters.get('push_destination')
        if not destination:
            return None
        now = production(destination)
        for note in now.notes():
            print(f'{self.component.id}: {note}', flush=True)
        target = now.current
        if target is None:
            return None  # nothing in production yet
        if holds_model(target, candidate.uri, saved_model_only=True):
            # The candidate is already in production (an unchanged re-run, or a push whose record in the
            # store was cut off; its SavedModel is the model, its ONNX copy is made beside this): keep the
            # baseline it was measured against when it was pushed, so the
            # evaluation is the same and can be reused.
            base = (target.record or {}).get('baseline')
            if not base:
                return None
            target = inspect_version(destination, base['version'])
            if target is None or not target.complete or target.fingerprint != base.get('fingerprint'):
                return None  # that version is gone: measure the candidate on its own
        return version_artifact(self.store, destination, target.number, target.fingerprint or '', target.record)


def baseline_identity(model: Model, baseline_model: Model | None, push_destination: str | None) -> dict[str, Any]:
    """What an evaluation was measured against, for metrics.json and the evaluation's properties: the
    candidate, the destination, and the baseline (its MLMD id here, the destination version and its
    content fingerprint, and where it came from according to its push record), or none."""
    base = baseline_model
    origin = None
    if base is not None and base.get('source_store_id') is not None:
        origin = {'store_id': base.get('source_store_id') or None,
                  'artifact_id': base.get('source_artifact_id') or None,
                  'pipeline': base.get('source_pipeline') or None, 'run_id': base.get('source_run_id') or None,
                  'kind': base.get('push_kind')}
    return {
        'candidate_model_id': model.id or 0,
        'baseline_model_id': (base.id or 0) if base is not None else 0,
        'push_destination': push_destination or '',
        'baseline_version': str(base.get('version') or '') if base is not None else '',
        'baseline_fingerprint': (base.get('content_fingerprint') or '') if base is not None else '',
        'baseline_model': origin,
    }


def set_baseline_identity(evaluation: ModelEvaluation, identity: dict[str, Any]) -> None:
    for key in ('baseline_model_id', 'push_destination', 'baseline_version', 'baseline_fingerprint'):
        evaluation.set(key, identity[key])
    evaluation.set('candidate_model_id', identity['candidate_model_id'])


class EvaluatorExecutor(Executor):
    imports = ('tensorflow', 'tfx_bsl.public.tfxio', 'tensorflow_model_analysis')

    def run(self, *, examples: Examples, model: Model, baseline_model: Model | None,
            evaluation: ModelEvaluation, eval_config: Any, eval_split: str, push_destination: str | None) -> None:
        import tensorflow_model_analysis as tfma

        libraries_without_autograph()  # TFMA loads Keras 2 models and the transform graph
        if eval_split not in examples.split_names:
            raise ValueError(f"Evaluator needs a '{eval_split}' split; {examples!r} has "
                             f'{", ".join(examples.split_names)}.')
        cfg = to_eval_config(eval_config, with_baseline=baseline_model is not None)
        # Without a baseline TFMA 'rubber stamps' the candidate: change thresholds in the eval config
        # cannot be checked and are dropped (TFMA raises otherwise); the ModelValidator's no_baseline decides.
        models = [tfma.default_eval_shared_model(eval_saved_model_path=os.path.join(model.uri, SERVING_DIR),
                                                 eval_config=cfg, model_name=CANDIDATE,
                                                 rubber_stamp=baseline_model is None)]
        if baseline_model is not None:
            models.append(tfma.default_eval_shared_model(
                eval_saved_model_path=serving_path(baseline_model.uri), eval_config=cfg,
                model_name=BASELINE))
        tfma.run_model_analysis(
            eval_shared_model=models if len(models) > 1 else models[0], eval_config=cfg,
            data_location=os.path.join(examples.split_uri(eval_split), '*'), file_format='tfrecords',
            output_path=evaluation.uri, pipeline_options=self.beam_options())
        with open(os.path.join(evaluation.uri, EVAL_CONFIG_FILE), 'w') as f:
            f.write(text_format.MessageToString(cfg))

        slices: dict[str, dict[str, dict[str, float]]] = {}
        for metrics in tfma.load_metrics(evaluation.uri):
            per_model = slices.setdefault(slice_name(metrics.slice_key), {CANDIDATE: {}, BASELINE: {}})
            for kv in metrics.metric_keys_and_values:
                if kv.key.is_diff or not kv.value.HasField('double_value'):
                    continue
                who = kv.key.model_name or CANDIDATE
                per_model.setdefault(who, {})[metric_name(kv.key)] = kv.value.double_value.value
        if not slices:
            raise RuntimeError(f'TFMA computed no metrics for {model!r} on {examples.split_uri(eval_split)}.')
        summary = {
            **baseline_identity(model, baseline_model, push_destination),
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
            json.dump(json_safe(summary), f, indent=2, sort_keys=True, allow_nan=False)
        set_baseline_identity(evaluation, summary)
        overall = summary['slices'].get(OVERALL, {})
        for name, value in sorted(overall.get(CANDIDATE, {}).items()):
            base = overall.get(BASELINE, {}).get(name)
            print(f'Evaluator: {name} = {value:.4f}' + (f' (baseline {base:.4f})' if base is not None else
                                                        ' (no baseline)'), flush=True)


def metric_name(key: Any) -> str:
    """A TFMA MetricKey proto's name in metrics.json and reasons.json: ``name`` or ``name/class_id:1``."""
    return key.name + (f'/{_sub_key(key.sub_key)}' if key.HasField('sub_key') else '')


def _sub_key(sub_key: Any) -> str:
    for field in ('class_id', 'k', 'top_k'):
        if sub_key.HasField(field):
            return f'{field}:{getattr(sub_key, field).value}'
    return 'sub'


def json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None, so json.dump writes valid JSON (null).
    (json.dump's ``default=`` is never called for floats: it would write the invalid token NaN.)"""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


class Evaluator(Component):
    """Measures the candidate and the production model with TFMA on the eval split."""
    examples = Input(Examples)
    model = Input(Model)
    baseline_model = Input(Model, optional=True)
    evaluation = Output(ModelEvaluation)
    eval_config = Parameter((dict, Message), check=_check_eval_config)
    eval_split = Parameter(str, default='eval')
    push_destination = Parameter(str, default=None, path=True)  # where production is; see Pipeline
    libraries = ('tensorflow-model-analysis', 'tensorflow', 'tf-keras', 'apache-beam', 'tfx-bsl')
    executor = EvaluatorExecutor
    driver = EvaluatorDriver
