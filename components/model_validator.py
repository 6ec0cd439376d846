"""ModelValidator: decides, from an evaluation, whether the candidate may replace the production model.

    >>> validator = ModelValidator(
    ...     model=trainer.outputs['model'], evaluation=evaluator.outputs['evaluation'],
    ...     thresholds={'sparse_categorical_accuracy': {
    ...         'lower_bound': 0.6,                                         # value bounds
    ...         'change': {'direction': 'higher', 'absolute': -1e-10}}},    # vs the baseline
    ...     no_baseline='bless')

Semantics are TFMA's: a value passes when ``lower_bound <= value <= upper_bound``; a change
threshold compares ``diff = candidate - baseline`` with ``absolute`` (``diff >= absolute`` when
higher is better, ``diff <= absolute`` when lower is better) and ``diff / baseline`` with
``relative`` likewise; all given bounds must pass. A threshold applies to the overall slice, or to
the slices listed under ``'slices'`` (names as in metrics.json, e.g. ``'island=Biscoe'``, or
``'all'``). A metric that was not computed fails. Without a baseline (the first run), change
thresholds cannot be checked and ``no_baseline`` decides: ``'bless'`` (value bounds only) or
``'reject'``. A threshold may also be a ``tfma.MetricThreshold``.

It always writes a ModelBlessing: a ``BLESSED`` or ``NOT_BLESSED`` file and ``reasons.json`` with every
check (metric, slice, candidate and baseline values, threshold, pass/fail, why).
"""
from __future__ import annotations

import json
import math
import os
from typing import Any

from google.protobuf.message import Message

from components.component import Component, Input, Output, Parameter
from components.evaluator import BASELINE, CANDIDATE, OVERALL, load_metrics_summary
from components.executor import Executor
from metadata.artifact import Model, ModelBlessing, ModelEvaluation

DIRECTIONS = {'higher': 'higher', 'higher_is_better': 'higher', 'lower': 'lower', 'lower_is_better': 'lower'}


def normalize_threshold(metric: str, spec: Any) -> dict:
    """A threshold as a plain dict: lower_bound, upper_bound, change{direction, absolute, relative}, slices."""
    if isinstance(spec, Message):  # tfma.MetricThreshold
        out: dict[str, Any] = {}
        if spec.HasField('value_threshold'):
            v = spec.value_threshold
            if v.HasField('lower_bound'):
                out['lower_bound'] = v.lower_bound.value
            if v.HasField('upper_bound'):
                out['upper_bound'] = v.upper_bound.value
        if spec.HasField('change_threshold'):
            c = spec.change_threshold
            direction = {1: 'lower', 2: 'higher'}.get(int(c.direction))
            if direction is None:
                raise ValueError(f'{metric}: the change threshold needs a direction (HIGHER_IS_BETTER or LOWER_IS_BETTER)')
            change: dict[str, Any] = {'direction': direction}
            if c.HasField('absolute'):
                change['absolute'] = c.absolute.value
            if c.HasField('relative'):
                change['relative'] = c.relative.value
            out['change'] = change
        return out
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
    out['slices'] = 'all' if slices == 'all' else list(slices)
    return out


def _check_thresholds(thresholds: dict) -> None:
    if not thresholds:
        raise ValueError('give at least one metric threshold')
    for metric, spec in thresholds.items():
        normalize_threshold(metric, spec)


def _check_policy(value: str) -> None:
    if value not in ('bless', 'reject'):
        raise ValueError(f"no_baseline must be 'bless' or 'reject'; got {value!r}")


def check_value(value: float, threshold: dict) -> tuple[bool, str]:
    lower, upper = threshold.get('lower_bound', -math.inf), threshold.get('upper_bound', math.inf)
    ok = lower <= value <= upper
    return ok, f'{value:.6g} {"within" if ok else "outside"} [{lower:.6g}, {upper:.6g}]'


def check_change(candidate: float, baseline: float, change: dict) -> tuple[bool, str]:
    diff = candidate - baseline
    higher = change['direction'] == 'higher'
    results, parts = [], []
    if 'absolute' in change:
        ok = diff >= change['absolute'] if higher else diff <= change['absolute']
        results.append(ok)
        parts.append(f'change {diff:+.6g} {">=" if higher else "<="} {change["absolute"]:.6g}: '
                     f'{"ok" if ok else "fails"}')
    if 'relative' in change:
        ratio = math.nan if math.isclose(baseline, 0.0) else diff / baseline
        ok = ratio >= change['relative'] if higher else ratio <= change['relative']  # NaN fails, as in TFMA
        results.append(ok)
        parts.append(f'relative change {ratio:+.6g} {">=" if higher else "<="} {change["relative"]:.6g}: '
                     f'{"ok" if ok else "fails"}')
    return all(results), '; '.join(parts)


class ModelValidatorExecutor(Executor):
    def run(self, *, model: Model, evaluation: ModelEvaluation, blessing: ModelBlessing, thresholds: dict,
            no_baseline: str) -> None:
        summary = load_metrics_summary(evaluation)
        if summary['candidate_model_id'] != model.id:
            raise ValueError(f'{evaluation!r} measured model #{summary["candidate_model_id"]}, not the candidate '
                             f'{model!r}; wire the same Trainer output into Evaluator and ModelValidator.')
        baseline_id = summary.get('baseline_model_id') or 0
        slices = summary['slices']
        checks = []
        for metric, raw in sorted(thresholds.items()):
            threshold = normalize_threshold(metric, raw)
            names = sorted(slices) if threshold['slices'] == 'all' else threshold['slices']
            for slice_name in names:
                checks.append(self._check(metric, slice_name, threshold, slices, baseline_id))
        failed = [c for c in checks if not c['passed']]
        blessed = not failed
        policy_reason = ''
        if not baseline_id and no_baseline == 'reject':
            blessed = False
            policy_reason = "no baseline model (nothing pushed yet) and no_baseline='reject'"
        reasons = {'blessed': blessed, 'candidate_model_id': model.id, 'baseline_model_id': baseline_id,
                   'no_baseline': no_baseline, 'policy': policy_reason, 'checks': checks}
        with open(os.path.join(blessing.uri, 'reasons.json'), 'w') as f:
            json.dump(reasons, f, indent=2)
        with open(os.path.join(blessing.uri, 'BLESSED' if blessed else 'NOT_BLESSED'), 'w') as f:
            f.write('')
        blessing.set('blessed', int(blessed))
        blessing.set('current_model_id', model.id or 0)
        blessing.set('baseline_model_id', baseline_id)
        verdict = 'BLESSED' if blessed else 'NOT_BLESSED'
        print(f'ModelValidator: {verdict} model #{model.id} against '
              + (f'baseline #{baseline_id}' if baseline_id else 'no baseline'), flush=True)
        for c in checks:
            print(f"  {'ok  ' if c['passed'] else 'FAIL'} {c['metric']} [{c['slice']}]: {c['reason']}", flush=True)
        if policy_reason:
            print(f'  FAIL {policy_reason}', flush=True)

    @staticmethod
    def _check(metric: str, slice_name: str, threshold: dict, slices: dict, baseline_id: int) -> dict:
        record: dict[str, Any] = {'metric': metric, 'slice': slice_name,
                                  'threshold': {k: v for k, v in threshold.items() if k != 'slices'},
                                  'candidate': None, 'baseline': None}
        values = slices.get(slice_name, {})
        candidate = values.get(CANDIDATE, {}).get(metric)
        if candidate is None:
            computed = ', '.join(sorted(values.get(CANDIDATE, {}))) if values else \
                f'slice not computed; slices: {", ".join(sorted(slices))}'
            return {**record, 'passed': False,
                    'reason': f'metric {metric!r} was not computed for slice {slice_name!r} (computed: {computed}); '
                              "add it to the Evaluator's eval_config metrics"}
        record['candidate'] = candidate
        reasons, passed = [], True
        if 'lower_bound' in threshold or 'upper_bound' in threshold:
            ok, why = check_value(candidate, threshold)
            passed &= ok
            reasons.append(why)
        if 'change' in threshold:
            baseline = values.get(BASELINE, {}).get(metric)
            record['baseline'] = baseline
            if not baseline_id:
                reasons.append('change not checked: no baseline')
            elif baseline is None:
                passed = False
                reasons.append(f'the baseline has no {metric!r} for slice {slice_name!r}')
            else:
                ok, why = check_change(candidate, baseline, threshold['change'])
                passed &= ok
                reasons.append(why)
        return {**record, 'passed': passed, 'reason': '; '.join(reasons)}


class ModelValidator(Component):
    """Blesses the candidate only if every threshold passes (TFMA semantics); always writes a blessing."""
    model = Input(Model)
    evaluation = Input(ModelEvaluation)
    blessing = Output(ModelBlessing)
    thresholds = Parameter(dict, check=_check_thresholds)
    no_baseline = Parameter(str, default='bless', check=_check_policy)
    executor = ModelValidatorExecutor
