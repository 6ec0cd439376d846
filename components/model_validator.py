"""ModelValidator: decides, from an evaluation, whether the candidate may replace the production model.

    >>> validator = ModelValidator(
    ...     model=trainer.outputs['model'], evaluation=evaluator.outputs['evaluation'],
    ...     thresholds={'sparse_categorical_accuracy': {
    ...         'lower_bound': 0.6,                                         # value bounds
    ...         'change': {'direction': 'higher', 'absolute': -1e-10}}},    # vs the baseline
    ...     no_baseline='bless')

The verdict is TFMA's own: every threshold is handed to TFMA's validator
(``tensorflow_model_analysis.evaluators.metrics_validator.validate_metrics``, per slice, merged over
slices by TFMA's ``CombineValidations`` exactly as TFMA's Evaluator does) together with the metrics
TFMA wrote for the evaluation (``tfma.load_metrics``), and the candidate is blessed when TFMA's
``ValidationResult.validation_ok`` is true (and the first-run policy allows). So, as in TFMA: a value
passes when ``lower_bound <= value <= upper_bound``; a change threshold compares TFMA's
``diff = candidate - baseline`` with ``absolute`` (``diff >= absolute`` when higher is better,
``diff <= absolute`` when lower is better) and ``diff / baseline`` with ``relative`` likewise (a
baseline of 0 makes the ratio NaN, which fails); all given bounds must pass; a metric that was not
computed fails ("Metric not found"), and so does a threshold's slice that was not computed.

Thresholds come from two places, and all of them must pass:

- ``thresholds=`` here (optional): ``{metric: {'lower_bound': ..., 'upper_bound': ..., 'change':
  {'direction': 'higher'|'lower', 'absolute': ..., 'relative': ...}, 'slices': [...] | 'all'}}`` or
  ``{metric: tfma.MetricThreshold}``. Metric names are as in metrics.json (``name`` or
  ``name/class_id:1``). A threshold applies to the overall slice, to the slices listed under
  ``'slices'`` (names as in metrics.json, e.g. ``'island=Biscoe'``), or to every slice (``'all'``).
  Each is placed where TFMA reads thresholds: on the eval config's MetricConfig that computes the
  metric (its ``threshold`` for 'all', else ``per_slice_thresholds`` with a SlicingSpec per slice), or
  for a metric the eval config does not list, in a MetricsSpec's ``thresholds`` (TFMA's place for
  metrics computed in the model's graph; one that is not computed fails).
- the Evaluator's ``eval_config``, when it is a ``tfma.EvalConfig`` with thresholds
  (``metrics_specs[...].thresholds``, ``per_slice_thresholds``, a MetricConfig's ``threshold`` or
  ``per_slice_thresholds``), read from the evaluation (``eval_config.pbtxt``), so they are honoured,
  not ignored. ``cross_slice_thresholds`` are refused.

With no threshold in either place the ModelValidator fails and says so. Without a baseline (the
first run), change thresholds cannot be checked and ``no_baseline`` decides: ``'bless'`` checks the
value bounds only (TFMA's "rubber stamp": change thresholds are dropped), ``'reject'`` refuses.

It always writes a ModelBlessing: a ``BLESSED`` or ``NOT_BLESSED`` file and ``reasons.json`` with every
check (metric, slice, source, threshold, candidate and baseline values, pass/fail, why; each bound's
pass/fail is TFMA's validate_metrics on that bound alone) and TFMA's ValidationResult
(``tfma_validation_result``).
"""
from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import dataclass
from typing import Any, Callable

from google.protobuf.message import Message

from sluice.components.component import Component, Input, Output, Parameter
from sluice.components.evaluator import OVERALL, json_safe, load_eval_config, load_metrics_summary, metric_name, slice_name
from sluice.components.executor import Executor
from sluice.metadata.artifact import Model, ModelBlessing, ModelEvaluation

DIRECTIONS = {'higher': 'higher', 'higher_is_better': 'higher', 'lower': 'lower', 'lower_is_better': 'lower'}
LOWER_IS_BETTER, HIGHER_IS_BETTER = 1, 2  # tfma.MetricDirection's values


def _slice_values(name: str) -> dict[str, str]:
    """A slice name as in metrics.json ('Overall', 'island=Biscoe', 'a=1, b=x') as feature values."""
    if name == OVERALL:
        return {}
    values = {}
    for part in name.split(', '):
        column, sep, value = part.partition('=')
        if not sep or not column:
            raise ValueError(f"slice {name!r}: name a slice as in metrics.json, e.g. 'island=Biscoe' or "
                             f"'{OVERALL}', or give 'slices': 'all'")
        values[column] = value
    return values


def _spec_label(spec: Any) -> str:
    """A tfma.SlicingSpec named as metrics.json names slices ('column=*' for every value of a column)."""
    parts = [f'{k}={v}' for k, v in sorted(spec.feature_values.items())] + [f'{k}=*' for k in spec.feature_keys]
    return ', '.join(parts) or OVERALL


def threshold_dict(threshold: Any) -> dict:
    """A tfma.MetricThreshold in Sluice's dict form (lower_bound, upper_bound, change), for reasons.json."""
    out: dict[str, Any] = {}
    if threshold.HasField('value_threshold'):
        v = threshold.value_threshold
        if v.HasField('lower_bound'):
            out['lower_bound'] = v.lower_bound.value
        if v.HasField('upper_bound'):
            out['upper_bound'] = v.upper_bound.value
    if threshold.HasField('change_threshold'):
        c = threshold.change_threshold
        change: dict[str, Any] = {'direction': {LOWER_IS_BETTER: 'lower', HIGHER_IS_BETTER: 'higher'}.get(
            int(c.direction), 'unknown')}
        if c.HasField('absolute'):
            change['absolute'] = c.absolute.value
        if c.HasField('relative'):
            change['relative'] = c.relative.value
        out['change'] = change
    return out


def normalize_threshold(metric: str, spec: Any) -> dict:
    """A threshold as a plain dict: lower_bound, upper_bound, change{direction, absolute, relative}, slices
    (a tfma.MetricThreshold: without slices; it applies to the overall slice)."""
    if isinstance(spec, Message):  # tfma.MetricThreshold
        if spec.HasField('change_threshold') and \
                int(spec.change_threshold.direction) not in (LOWER_IS_BETTER, HIGHER_IS_BETTER):
            raise ValueError(f'{metric}: the change threshold needs a direction (HIGHER_IS_BETTER or LOWER_IS_BETTER)')
        if not spec.HasField('value_threshold') and not spec.HasField('change_threshold'):
            raise ValueError(f'{metric}: the tfma.MetricThreshold has neither a value_threshold nor a change_threshold')
        return threshold_dict(spec)
    if not isinstance(spec, dict):
        raise ValueError(f'{metric}: a threshold is a dict or a tfma.MetricThreshold; got {spec!r}')
    unknown = set(spec) - {'lower_bound', 'upper_bound', 'change', 'slices'}
    if unknown:
        raise ValueError(f'{metric}: unknown key(s) {", ".join(sorted(unknown))}; use lower_bound, upper_bound, '
                         'change, slices')
    out = {k: float(spec[k]) for k in ('lower_bound', 'upper_bound') if k in spec}
    if 'change' in spec:
        change = dict(spec['change'])
        direction = DIRECTIONS.get(str(change.get('direction', '')).lower())
        if direction is None:
            raise ValueError(f"{metric}: change.direction must be 'higher' or 'lower'; got {change.get('direction')!r}")
        if not set(change) - {'direction'}:
            raise ValueError(f'{metric}: change needs absolute and/or relative')
        bad = set(change) - {'direction', 'absolute', 'relative'}
        if bad:
            raise ValueError(f'{metric}: unknown change key(s) {", ".join(sorted(bad))}; use absolute, relative')
        out['change'] = {'direction': direction, **{k: float(change[k]) for k in ('absolute', 'relative')
                                                    if k in change}}
    if not out:
        raise ValueError(f'{metric}: give lower_bound, upper_bound and/or change')
    slices = spec.get('slices', [OVERALL])
    if slices != 'all':
        if isinstance(slices, str) or not all(isinstance(s, str) for s in slices):
            raise ValueError(f"{metric}: slices is a list of slice names (e.g. ['{OVERALL}', 'island=Biscoe']) or "
                             f"'all'; got {slices!r}")
        for name in slices:
            try:
                _slice_values(name)
            except ValueError as e:
                raise ValueError(f'{metric}: {e}') from None
    out['slices'] = 'all' if slices == 'all' else list(slices)
    return out


def to_metric_threshold(metric: str, spec: Any) -> tuple[Any, list[str] | str]:
    """A ModelValidator threshold (dict or tfma.MetricThreshold) as (tfma.MetricThreshold, slices)."""
    import tensorflow_model_analysis as tfma

    normalized = normalize_threshold(metric, spec)
    if isinstance(spec, Message):
        threshold = tfma.MetricThreshold()
        threshold.CopyFrom(spec)
        return threshold, [OVERALL]
    threshold = tfma.MetricThreshold()
    for bound in ('lower_bound', 'upper_bound'):
        if bound in normalized:
            getattr(threshold.value_threshold, bound).value = normalized[bound]
    if 'change' in normalized:
        change = normalized['change']
        threshold.change_threshold.direction = (tfma.MetricDirection.HIGHER_IS_BETTER if change['direction'] == 'higher'
                                                else tfma.MetricDirection.LOWER_IS_BETTER)
        for bound in ('absolute', 'relative'):
            if bound in change:
                getattr(threshold.change_threshold, bound).value = change[bound]
    return threshold, normalized['slices']


def _check_thresholds(thresholds: dict | None) -> None:
    for metric, spec in (thresholds or {}).items():
        normalize_threshold(metric, spec)


def _check_policy(value: str) -> None:
    if value not in ('bless', 'reject'):
        raise ValueError(f"no_baseline must be 'bless' or 'reject'; got {value!r}")


# -- the checks, by TFMA's validator -----------------------------------------------------------------------
@dataclass
class _Slice:
    name: str    # as in metrics.json ('' for a cross slice)
    key: Any     # TFMA's slice key (a tuple), as validate_metrics takes it
    metrics: dict  # tfma.metrics.MetricKey -> float, every model's metrics and TFMA's diffs


@dataclass
class _Threshold:
    """One threshold as TFMA holds it: a MetricThreshold on a metric for one slicing spec (None: every
    slice), and how to place such a threshold into a MetricsSpec exactly as it came (``place``)."""
    metric: str
    source: str  # 'thresholds' (the ModelValidator's) or 'eval_config' (the Evaluator's)
    threshold: Any  # tfma.MetricThreshold
    slicing_spec: Any  # tfma.SlicingSpec or None
    place: Callable[[Any], Any]  # tfma.MetricThreshold -> tfma.MetricsSpec holding just that threshold


@dataclass
class Validation:
    """The verdict (TFMA's ValidationResult over every threshold) and one check per metric and slice."""
    validation_ok: bool
    checks: list[dict]
    result: dict  # TFMA's ValidationResult as JSON


def _spec_holding(spec: Any, threshold: Any, slicing_spec: Any, name: str = '', metric_config: Any = None,
                  key: Any = None) -> Any:
    """A copy of the MetricsSpec ``spec`` holding only ``threshold`` (for ``slicing_spec``, None = every
    slice): on ``metric_config`` (a MetricConfig of the spec: where TFMA reads thresholds of the metrics it
    computes) or, without one, under ``name`` in the spec's threshold maps (TFMA's place for metrics
    computed in the model's graph). ``key`` narrows the spec to that one metric key (sub key, aggregation,
    weighting)."""
    import tensorflow_model_analysis as tfma

    out = tfma.MetricsSpec()
    out.CopyFrom(spec)
    for field in ('metrics', 'thresholds', 'per_slice_thresholds', 'cross_slice_thresholds'):
        out.ClearField(field)
    if metric_config is None:
        if slicing_spec is None:
            out.thresholds[name].CopyFrom(threshold)
        else:
            out.per_slice_thresholds[name].thresholds.add(slicing_specs=[slicing_spec], threshold=threshold)
    else:
        config = out.metrics.add()
        config.CopyFrom(metric_config)
        for field in ('threshold', 'per_slice_thresholds', 'cross_slice_thresholds'):
            config.ClearField(field)
        if slicing_spec is None:
            config.threshold.CopyFrom(threshold)
        else:
            config.per_slice_thresholds.add(slicing_specs=[slicing_spec], threshold=threshold)
    if key is not None:
        sub = key.sub_key
        if key.aggregation_type is None:
            out.ClearField('aggregate')
            out.ClearField('binarize')
            if sub is not None:
                field, value = next((f, getattr(sub, f)) for f in ('class_id', 'k', 'top_k')
                                    if getattr(sub, f) is not None)
                getattr(out.binarize, {'class_id': 'class_ids', 'k': 'k_list', 'top_k': 'top_k_list'}[field]
                        ).values.append(value)
        else:
            out.ClearField('binarize')
            del out.aggregate.top_k_list.values[:]
            if sub is not None and sub.top_k is not None:
                out.aggregate.top_k_list.values.append(sub.top_k)
        if key.example_weighted is not None:
            out.example_weights.weighted = bool(key.example_weighted)
            out.example_weights.unweighted = not key.example_weighted
    return out


class _TfmaValidator:
    """Runs thresholds through TFMA's own validator (``metrics_validator.validate_metrics`` per slice and
    ``CombineValidations`` over slices, as TFMA's Evaluator does) on the metrics TFMA wrote."""

    def __init__(self, evaluation: Any) -> None:
        import tensorflow_model_analysis as tfma
        from tensorflow_model_analysis.slicer import slicer_lib
        from tensorflow_model_analysis.utils import config_util

        self.raw = load_eval_config(evaluation)
        self.has_baseline = any(spec.is_baseline for spec in self.raw.model_specs)
        self.base = config_util.update_eval_config_with_defaults(
            self.raw, has_baseline=self.has_baseline, rubber_stamp=True)
        self.candidate = next(spec.name for spec in self.base.model_specs if not spec.is_baseline)
        self.baseline = next((spec.name for spec in self.base.model_specs if spec.is_baseline), None)
        self.slices: list[_Slice] = []
        self.cross_slices: list[_Slice] = []
        for m in tfma.load_metrics(evaluation.uri):
            values = {tfma.metrics.MetricKey.from_proto(kv.key): kv.value.double_value.value
                      for kv in m.metric_keys_and_values if kv.value.HasField('double_value')}
            if m.HasField('cross_slice_key'):
                self.cross_slices.append(_Slice('', slicer_lib.deserialize_cross_slice_key(m.cross_slice_key), values))
            else:
                self.slices.append(_Slice(slice_name(m.slice_key), slicer_lib.deserialize_slice_key(m.slice_key),
                                          values))
        self.slices.sort(key=lambda s: (s.name != OVERALL, s.name))

    # -- where thresholds come from ------------------------------------------------------------
    def eval_config_thresholds(self) -> list[_Threshold]:
        """The thresholds in the Evaluator's eval config, each as TFMA reads it."""
        from tensorflow_model_analysis.metrics import metric_specs

        found = []
        for spec in self.raw.metrics_specs:
            if spec.cross_slice_thresholds or any(mc.cross_slice_thresholds for mc in spec.metrics):
                raise ValueError("The Evaluator's eval_config has cross_slice_thresholds; the ModelValidator checks "
                                 'thresholds on slices (thresholds, per_slice_thresholds), not across slices.')
            for name, threshold in spec.thresholds.items():
                found.append(_Threshold(name, 'eval_config', threshold, None, functools.partial(
                    _spec_holding, spec, slicing_spec=None, name=name)))
            for name, per_slice in spec.per_slice_thresholds.items():
                for item in per_slice.thresholds:
                    for slicing_spec in item.slicing_specs:
                        found.append(_Threshold(name, 'eval_config', item.threshold, slicing_spec, functools.partial(
                            _spec_holding, spec, slicing_spec=slicing_spec, name=name)))
            for config in spec.metrics:
                if not config.HasField('threshold') and not config.per_slice_thresholds:
                    continue
                name = metric_specs.metric_instance(config).name
                if config.HasField('threshold'):
                    found.append(_Threshold(name, 'eval_config', config.threshold, None, functools.partial(
                        _spec_holding, spec, slicing_spec=None, metric_config=config)))
                for item in config.per_slice_thresholds:
                    for slicing_spec in item.slicing_specs:
                        found.append(_Threshold(name, 'eval_config', item.threshold, slicing_spec, functools.partial(
                            _spec_holding, spec, slicing_spec=slicing_spec, metric_config=config)))
        return found

    def own_thresholds(self, thresholds: dict) -> list[_Threshold]:
        """The ModelValidator's thresholds, placed where TFMA reads thresholds: on the MetricConfig that
        computes the metric (its ``threshold`` for 'all' slices, else its ``per_slice_thresholds``), or, for
        a metric the eval config does not list, in a MetricsSpec's threshold maps."""
        import tensorflow_model_analysis as tfma
        from tensorflow_model_analysis.metrics import metric_specs

        configured = {}
        for spec in self.base.metrics_specs:
            for key, config, _ in metric_specs.keys_and_metrics_from_specs(self.base, [spec]):
                if key.model_name == self.candidate and not key.is_diff:
                    configured.setdefault(metric_name(key.to_proto()), (spec, config, key))
        found = []
        for metric, raw in sorted(thresholds.items()):
            threshold, slices = to_metric_threshold(metric, raw)
            specs = [None] if slices == 'all' else [tfma.SlicingSpec(feature_values=_slice_values(s)) for s in slices]
            for slicing_spec in specs:
                if metric in configured:
                    spec, config, key = configured[metric]
                    place = functools.partial(_spec_holding, spec, slicing_spec=slicing_spec, metric_config=config,
                                              key=key)
                else:
                    place = functools.partial(_spec_holding, tfma.MetricsSpec(), slicing_spec=slicing_spec,
                                              name=metric)
                found.append(_Threshold(metric, 'thresholds', threshold, slicing_spec, place))
        return found

    # -- TFMA -----------------------------------------------------------------------------------
    def config(self, metrics_specs: list) -> Any:
        """An EvalConfig with the evaluation's models and these specs, with TFMA's defaults applied as TFMA
        applied them (without a baseline, 'rubber stamping': change thresholds are dropped)."""
        import tensorflow_model_analysis as tfma
        from tensorflow_model_analysis.utils import config_util

        cfg = tfma.EvalConfig(model_specs=self.raw.model_specs, metrics_specs=metrics_specs)
        return config_util.update_eval_config_with_defaults(cfg, has_baseline=self.has_baseline, rubber_stamp=True)

    def validate(self, thresholds: list[_Threshold]) -> Any:
        """TFMA's ValidationResult for these thresholds over every slice, as TFMA's Evaluator computes it."""
        from tensorflow_model_analysis.evaluators.metrics_validator import validate_metrics
        from tensorflow_model_analysis.writers.metrics_plots_and_validations_writer import CombineValidations

        cfg = self.config([t.place(t.threshold) for t in thresholds])
        combine = CombineValidations(cfg, rubber_stamp=not self.has_baseline)
        result = combine.create_accumulator()
        for s in self.slices + self.cross_slices:
            result = combine.add_input(result, validate_metrics((s.key, s.metrics), cfg))
        return combine.extract_output(result)

    def checks(self, t: _Threshold) -> list[dict]:
        """One check per metric key and slice that threshold ``t`` applies to. Each bound (value bounds,
        absolute change, relative change) passes or fails as TFMA's validate_metrics says."""
        import tensorflow_model_analysis as tfma
        from tensorflow_model_analysis.evaluators.metrics_validator import validate_metrics
        from tensorflow_model_analysis.metrics import metric_specs
        from tensorflow_model_analysis.slicer import slicer_lib

        probe = tfma.MetricThreshold()
        probe.value_threshold.SetInParent()
        probe_cfg = self.config([t.place(probe)])
        keys = [k for k in metric_specs.metric_thresholds_from_metrics_specs(probe_cfg.metrics_specs, probe_cfg)
                if k.model_name != self.baseline]
        if t.slicing_spec is None:
            slices = self.slices
        else:
            spec = slicer_lib.SingleSliceSpec(spec=t.slicing_spec)
            slices = [s for s in self.slices if spec.is_slice_applicable(s.key)]
        parts = []  # (kind, tfma.MetricThreshold with that one bound)
        if t.threshold.HasField('value_threshold'):
            parts.append(('value', tfma.MetricThreshold(value_threshold=t.threshold.value_threshold)))
        change = t.threshold.change_threshold if t.threshold.HasField('change_threshold') else None
        if change is not None and self.has_baseline:
            for bound in ('absolute', 'relative'):
                if change.HasField(bound):
                    part = tfma.MetricThreshold()
                    part.change_threshold.direction = change.direction
                    getattr(part.change_threshold, bound).CopyFrom(getattr(change, bound))
                    parts.append((bound, part))
            if not change.HasField('absolute') and not change.HasField('relative'):
                parts.append(('change', tfma.MetricThreshold(change_threshold=change)))
        record = {'metric': t.metric, 'slice': '', 'source': t.source, 'threshold': threshold_dict(t.threshold),
                  'candidate': None, 'baseline': None}
        not_checked = ['change not checked: no baseline'] if change is not None and not self.has_baseline else []
        if not slices:  # TFMA: a threshold's slice that was not computed fails (unless nothing is left to check)
            label = _spec_label(t.slicing_spec)
            why = f"{label!r}: slice not computed; slices: {', '.join(s.name for s in self.slices)}"
            return [{**record, 'metric': name, 'slice': label, 'passed': not parts,
                     'reason': '; '.join([why] + not_checked)}
                    for name in [metric_name(k.to_proto()) for k in keys] or [t.metric]]
        checks = []
        for s in slices:
            failed = {}  # bound -> the metric keys TFMA reported as failing it
            for kind, part in parts:
                result = validate_metrics((s.key, s.metrics), self.config([t.place(part)]))
                failed[kind] = [f.metric_key for v in result.metric_validations_per_slice for f in v.failures]
            for key in keys:
                checks.append(self._check(record, key, s, parts, failed, change, not_checked))
        return checks

    def _check(self, record: dict, key: Any, s: _Slice, parts: list, failed: dict, change: Any,
               not_checked: list[str]) -> dict:
        name = metric_name(key.to_proto())
        candidate = s.metrics.get(key)
        baseline = s.metrics.get(key.make_baseline_key(self.baseline)) if self.has_baseline else None
        diff = s.metrics.get(key.make_diff_key())
        reasons, oks = [], []
        for kind, part in parts:
            watched = key if kind == 'value' else key.make_diff_key()
            ok = watched.to_proto() not in failed[kind]
            oks.append(ok)
            verdict = 'ok' if ok else 'fails'
            if candidate is None:
                computed = ', '.join(sorted({metric_name(k.to_proto()) for k in s.metrics
                                             if k.model_name == self.candidate and not k.is_diff}))
                why = (f'metric {name!r} was not computed for slice {s.name!r} (computed: {computed}); '
                       "add it to the Evaluator's eval_config metrics")
            elif kind == 'value':
                v = part.value_threshold
                lower = v.lower_bound.value if v.HasField('lower_bound') else -math.inf
                upper = v.upper_bound.value if v.HasField('upper_bound') else math.inf
                why = f'{candidate:.6g} {"within" if ok else "outside"} [{lower:.6g}, {upper:.6g}]'
            elif baseline is None or diff is None:
                why = f'the baseline has no {name!r} for slice {s.name!r}'
            else:
                sign = {HIGHER_IS_BETTER: '>=', LOWER_IS_BETTER: '<='}.get(int(change.direction), '?')
                if kind == 'absolute':
                    why = f'change {diff:+.6g} {sign} {part.change_threshold.absolute.value:.6g}: {verdict}'
                elif kind == 'relative':  # as TFMA divides: NaN (fails) when the baseline is 0
                    ratio = math.nan if math.isclose(baseline, 0.0) else diff / baseline
                    why = f'relative change {ratio:+.6g} {sign} {part.change_threshold.relative.value:.6g}: {verdict}'
                else:
                    why = f'change {diff:+.6g}: {verdict}'
            if why not in reasons:
                reasons.append(why)
        reasons += not_checked
        return {**record, 'metric': name, 'slice': s.name, 'candidate': candidate, 'baseline': baseline,
                'passed': all(oks), 'reason': '; '.join(reasons)}


def validate_evaluation(evaluation: Any, thresholds: dict | None) -> Validation:
    """Checks the ModelValidator's ``thresholds`` and those in the evaluation's eval config with TFMA's
    validator on the metrics TFMA wrote for ``evaluation``."""
    from google.protobuf import json_format

    tfma_validator = _TfmaValidator(evaluation)
    found = tfma_validator.own_thresholds(thresholds or {}) + tfma_validator.eval_config_thresholds()
    if not found:
        raise ValueError(f'No thresholds to check {evaluation!r} against: give ModelValidator(thresholds={{...}}), '
                         "or thresholds in the Evaluator's eval_config (a tfma.EvalConfig with "
                         'metrics_specs[...].thresholds / per_slice_thresholds, or a MetricConfig threshold).')
    result = tfma_validator.validate(found)
    checks = [c for t in found for c in tfma_validator.checks(t)]
    as_json = {'validation_ok': bool(result.validation_ok),
               **json_format.MessageToDict(result, preserving_proto_field_name=True)}
    return Validation(bool(result.validation_ok), checks, as_json)


def blessing_identity(model: Model, summary: dict) -> dict[str, Any]:
    """What a blessing is bound to (for reasons.json): the candidate, and the production version it was
    measured against (destination, version, content fingerprint, origin) as the evaluation recorded it,
    with the evaluation's overall metrics (which a push record keeps)."""
    return {'candidate_model_id': model.id, 'baseline_model_id': summary.get('baseline_model_id') or 0,
            **{k: summary.get(k) or '' for k in ('push_destination', 'baseline_version', 'baseline_fingerprint')},
            'baseline_model': summary.get('baseline_model'), 'overall_metrics': summary['slices'].get(OVERALL)}


def set_blessing_identity(blessing: ModelBlessing, identity: dict[str, Any]) -> None:
    """The blessing's properties the Pusher's compare-and-swap reads."""
    blessing.set('current_model_id', identity['candidate_model_id'] or 0)
    for key in ('baseline_model_id', 'push_destination', 'baseline_version', 'baseline_fingerprint'):
        blessing.set(key, identity[key])


class ModelValidatorExecutor(Executor):
    def run(self, *, model: Model, evaluation: ModelEvaluation, blessing: ModelBlessing, thresholds: dict | None,
            no_baseline: str) -> None:
        summary = load_metrics_summary(evaluation)
        if summary['candidate_model_id'] != model.id:
            raise ValueError(f'{evaluation!r} measured model #{summary["candidate_model_id"]}, not the candidate '
                             f'{model!r}; wire the same Trainer output into Evaluator and ModelValidator.')
        baseline_id = summary.get('baseline_model_id') or 0
        validation = validate_evaluation(evaluation, thresholds)  # TFMA's verdict, and why
        checks = validation.checks
        blessed = validation.validation_ok
        policy_reason = ''
        if not baseline_id and no_baseline == 'reject':
            blessed = False
            policy_reason = "no baseline model (nothing pushed yet) and no_baseline='reject'"
        identity = blessing_identity(model, summary)
        reasons = {'blessed': blessed, **identity, 'no_baseline': no_baseline, 'policy': policy_reason,
                   'checks': checks}
        reasons['tfma_validation_result'] = validation.result
        with open(os.path.join(blessing.uri, 'reasons.json'), 'w') as f:
            json.dump(json_safe(reasons), f, indent=2, allow_nan=False)
        with open(os.path.join(blessing.uri, 'BLESSED' if blessed else 'NOT_BLESSED'), 'w') as f:
            f.write('')
        blessing.set('blessed', int(blessed))
        set_blessing_identity(blessing, identity)
        verdict = 'BLESSED' if blessed else 'NOT_BLESSED'
        version = f" (version {identity['baseline_version']} at {identity['push_destination']})" \
            if identity['baseline_version'] else ''
        print(f'ModelValidator: {verdict} model #{model.id} against '
              + (f'baseline #{baseline_id}{version}' if baseline_id else 'no baseline'), flush=True)
        for c in checks:
            print(f"  {'ok  ' if c['passed'] else 'FAIL'} {c['metric']} [{c['slice']}]: {c['reason']}", flush=True)
        if not validation.validation_ok and all(c['passed'] for c in checks):
            print(f"  FAIL TFMA's validation: {json.dumps(validation.result)}", flush=True)
        if policy_reason:
            print(f'  FAIL {policy_reason}', flush=True)


class ModelValidator(Component):
    """Blesses the candidate only if every threshold passes (TFMA semantics); always writes a blessing."""
    model = Input(Model)
    evaluation = Input(ModelEvaluation)
    blessing = Output(ModelBlessing)
    thresholds = Parameter(dict, default=None, check=_check_thresholds)
    no_baseline = Parameter(str, default='bless', check=_check_policy)
    libraries = ('tensorflow-model-analysis',)
    executor = ModelValidatorExecutor
