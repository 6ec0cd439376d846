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

Modules: ``thresholds`` (the forms of a threshold: Sluice's dict <-> tfma.MetricThreshold),
``tfma_validation`` (where thresholds come from, and the verdict and per-metric checks by TFMA's
validator), ``gate`` (the component: the first-run policy, reasons.json and the blessing).
"""
from __future__ import annotations

from sluice.components.model_validator.gate import ModelValidator

__all__ = ['ModelValidator']
