"""The forms of a ModelValidator threshold: Sluice's dict (lower_bound, upper_bound, change with direction
and absolute/relative, slices) checked and normalised, converted to and from a tfma.MetricThreshold;
and slice names as metrics.json writes them (``'island=Biscoe'``) <-> TFMA's slicing specs.
"""
from __future__ import annotations

from typing import Any

from google.protobuf.message import Message

from sluice.components.evaluator import OVERALL

DIRECTIONS = {'higher': 'higher', 'higher_is_better': 'higher', 'lower': 'lower', 'lower_is_better': 'lower'}
LOWER_IS_BETTER, HIGHER_IS_BETTER = 1, 2  # tfma.MetricDirection's values


def slice_values(name: str) -> dict[str, str]:
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


def spec_label(spec: Any) -> str:
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
                slice_values(name)
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
