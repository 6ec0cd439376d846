"""The checks, by TFMA's validator: the thresholds from the ModelValidator and from the Evaluator's
eval config, each placed where TFMA reads it; TFMA's verdict over every slice (``validate_metrics`` per
slice merged by ``CombineValidations``, as TFMA's Evaluator does); and one check per metric key and
slice, each bound judged by TFMA alone, with the values and why (``validate_evaluation``).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable

from sluice.components.evaluator import OVERALL, load_eval_config, metric_name, slice_name
from sluice.components.model_validator.thresholds import (HIGHER_IS_BETTER, LOWER_IS_BETTER, slice_values, spec_label,
                                                          threshold_dict, to_metric_threshold)


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
            specs = [None] if slices == 'all' else [tfma.SlicingSpec(feature_values=slice_values(s)) for s in slices]
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
            label = spec_label(t.slicing_spec)
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
