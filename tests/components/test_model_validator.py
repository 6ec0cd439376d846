"""ModelValidator on hand-made evaluations: TFMA's threshold semantics, reasons, the first-run policy."""
from __future__ import annotations

import json
import math

import pytest

from components import ModelValidator, WiringError
from components.model_validator import ModelValidatorExecutor, check_change, normalize_threshold
from metadata import Model, ModelBlessing, ModelEvaluation


def evaluation(tmp_path, candidate, baseline=None, slices=None, candidate_id=7, baseline_id=3):
    d = tmp_path / 'evaluation'
    d.mkdir(exist_ok=True)
    overall = {'candidate': candidate}
    if baseline is not None:
        overall['baseline'] = baseline
    summary = {'candidate_model_id': candidate_id, 'baseline_model_id': baseline_id if baseline is not None else 0,
               'slices': {'Overall': overall, **(slices or {})}}
    (d / 'metrics.json').write_text(json.dumps(summary))
    return ModelEvaluation(uri=str(d))


def validate(tmp_path, ev, thresholds, no_baseline='bless', model_id=7):
    model = Model(uri=str(tmp_path / 'model'))
    model.id = model_id
    out = tmp_path / f'blessing-{len(list(tmp_path.iterdir()))}'
    out.mkdir()
    blessing = ModelBlessing(uri=str(out))
    ModelValidatorExecutor().run(model=model, evaluation=ev, blessing=blessing, thresholds=thresholds,
                                 no_baseline=no_baseline)
    reasons = json.loads((out / 'reasons.json').read_text())
    verdict = 'BLESSED' if (out / 'BLESSED').exists() else 'NOT_BLESSED'
    assert (out / 'BLESSED').exists() != (out / 'NOT_BLESSED').exists()
    assert blessing.get('blessed') == int(verdict == 'BLESSED') == int(reasons['blessed'])
    assert blessing.get('current_model_id') == model_id
    return verdict, reasons, blessing


ACC = 'accuracy'


@pytest.mark.parametrize('candidate, baseline, threshold, verdict', [
    # value bounds: lower <= value <= upper (inclusive)
    (0.8, None, {'lower_bound': 0.8}, 'BLESSED'),
    (0.79, None, {'lower_bound': 0.8}, 'NOT_BLESSED'),
    (0.8, None, {'upper_bound': 0.8}, 'BLESSED'),
    (0.81, None, {'lower_bound': 0.5, 'upper_bound': 0.8}, 'NOT_BLESSED'),
    # change, higher is better: candidate - baseline >= absolute
    (0.80, 0.80, {'change': {'direction': 'higher', 'absolute': -1e-10}}, 'BLESSED'),  # equal is enough
    (0.79, 0.80, {'change': {'direction': 'higher', 'absolute': -1e-10}}, 'NOT_BLESSED'),
    (0.86, 0.80, {'change': {'direction': 'higher', 'absolute': 0.05}}, 'BLESSED'),
    (0.84, 0.80, {'change': {'direction': 'higher', 'absolute': 0.05}}, 'NOT_BLESSED'),
    # relative: (candidate - baseline) / baseline >= relative
    (0.89, 0.80, {'change': {'direction': 'higher', 'relative': 0.1}}, 'BLESSED'),
    (0.87, 0.80, {'change': {'direction': 'higher', 'relative': 0.1}}, 'NOT_BLESSED'),
    (0.5, 0.0, {'change': {'direction': 'higher', 'relative': 0.0}}, 'NOT_BLESSED'),  # baseline 0: NaN fails
    # lower is better (an error): candidate - baseline <= absolute
    (1.9, 2.0, {'change': {'direction': 'lower', 'absolute': 0.0}}, 'BLESSED'),
    (2.1, 2.0, {'change': {'direction': 'lower', 'absolute': 0.0}}, 'NOT_BLESSED'),
    # value and change together: both must pass
    (0.9, 0.95, {'lower_bound': 0.6, 'change': {'direction': 'higher', 'absolute': 0.0}}, 'NOT_BLESSED'),
])
def test_tfma_threshold_semantics(tmp_path, candidate, baseline, threshold, verdict):
    ev = evaluation(tmp_path, {ACC: candidate}, {ACC: baseline} if baseline is not None else None)
    got, reasons, blessing = validate(tmp_path, ev, {ACC: threshold})
    assert got == verdict
    [check] = reasons['checks']
    assert check['metric'] == ACC and check['slice'] == 'Overall' and check['candidate'] == candidate
    assert check['passed'] == (verdict == 'BLESSED') and check['reason']
    if baseline is not None:
        assert blessing.get('baseline_model_id') == 3 and check['baseline'] == baseline


def test_first_run_policy(tmp_path):
    ev = evaluation(tmp_path, {ACC: 0.9})
    threshold = {ACC: {'lower_bound': 0.6, 'change': {'direction': 'higher', 'absolute': -1e-10}}}
    verdict, reasons, blessing = validate(tmp_path, ev, threshold, no_baseline='bless')
    assert verdict == 'BLESSED' and blessing.get('baseline_model_id') == 0
    assert reasons['checks'][0]['reason'].endswith('change not checked: no baseline')
    verdict, reasons, _ = validate(tmp_path, ev, threshold, no_baseline='reject')
    assert verdict == 'NOT_BLESSED'
    assert reasons['policy'] == "no baseline model (nothing pushed yet) and no_baseline='reject'"


def test_missing_metric_and_missing_slice_fail_with_what_was_computed(tmp_path):
    ev = evaluation(tmp_path, {ACC: 0.9, 'loss': 0.3})
    verdict, reasons, _ = validate(tmp_path, ev, {'auc': {'lower_bound': 0.5}})
    assert verdict == 'NOT_BLESSED'
    assert reasons['checks'][0]['reason'] == ("metric 'auc' was not computed for slice 'Overall' (computed: "
                                              "accuracy, loss); add it to the Evaluator's eval_config metrics")
    verdict, reasons, _ = validate(tmp_path, ev, {ACC: {'lower_bound': 0.5, 'slices': ['island=Dream']}})
    assert verdict == 'NOT_BLESSED' and 'slice not computed; slices: Overall' in reasons['checks'][0]['reason']


def test_per_slice_thresholds(tmp_path):
    slices = {'island=Biscoe': {'candidate': {ACC: 0.95}}, 'island=Dream': {'candidate': {ACC: 0.55}}}
    ev = evaluation(tmp_path, {ACC: 0.9}, slices=slices)
    verdict, reasons, _ = validate(tmp_path, ev, {ACC: {'lower_bound': 0.6, 'slices': 'all'}})
    assert verdict == 'NOT_BLESSED'
    assert {c['slice']: c['passed'] for c in reasons['checks']} == {
        'Overall': True, 'island=Biscoe': True, 'island=Dream': False}
    verdict, _, _ = validate(tmp_path, ev, {ACC: {'lower_bound': 0.6}})  # overall only by default
    assert verdict == 'BLESSED'


def test_evaluation_of_another_model_is_an_error(tmp_path):
    ev = evaluation(tmp_path, {ACC: 0.9}, candidate_id=99)
    with pytest.raises(ValueError, match=r'measured model #99, not the candidate Model\(#7'):
        validate(tmp_path, ev, {ACC: {'lower_bound': 0.5}})


def test_tfma_metric_threshold_means_the_same_as_the_dict():
    import tensorflow_model_analysis as tfma
    proto = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={'value': 0.6}),
        change_threshold=tfma.GenericChangeThreshold(direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                                                     absolute={'value': -1e-10}))
    assert normalize_threshold(ACC, proto) == {'lower_bound': 0.6,
                                               'change': {'direction': 'higher', 'absolute': -1e-10}}
    assert normalize_threshold(ACC, {'lower_bound': 0.6, 'change': {'direction': 'higher', 'absolute': -1e-10}}) \
        == {'lower_bound': 0.6, 'change': {'direction': 'higher', 'absolute': -1e-10}, 'slices': ['Overall']}


def test_check_change_reports_the_numbers():
    ok, why = check_change(0.9, 1.0, {'direction': 'higher', 'absolute': -1e-10})
    assert not ok and why == 'change -0.1 >= -1e-10: fails'
    ok, why = check_change(1.0, 0.0, {'direction': 'higher', 'relative': 0.1})
    assert not ok and math.isnan(float(why.split()[2]))


@pytest.mark.parametrize('thresholds, no_baseline, message', [
    ({}, 'bless', r'give at least one metric threshold'),
    ({ACC: {'lower': 0.5}}, 'bless', r'accuracy: unknown key\(s\) lower; use lower_bound, upper_bound, change'),
    ({ACC: {'change': {'direction': 'up', 'absolute': 0}}}, 'bless', r"accuracy: change\.direction must be 'higher' or 'lower'"),
    ({ACC: {'change': {'direction': 'higher'}}}, 'bless', r'accuracy: change needs absolute and/or relative'),
    ({ACC: {'lower_bound': 0.5}}, 'maybe', r"no_baseline must be 'bless' or 'reject'; got 'maybe'"),
])
def test_thresholds_are_checked_at_construction(thresholds, no_baseline, message):
    from components import Evaluator, ImportExampleGen, Trainer
    gen = ImportExampleGen(input_base='/d')
    trainer = Trainer(module_file='/m.py', examples=gen.outputs['examples'])
    ev = Evaluator(examples=gen.outputs['examples'], model=trainer.outputs['model'],
                   eval_config={'label_key': 'y', 'metrics': ['AUC']})
    with pytest.raises(WiringError, match=r'^ModelValidator\((thresholds|no_baseline)=\.\.\.\): ' + message):
        ModelValidator(model=trainer.outputs['model'], evaluation=ev.outputs['evaluation'], thresholds=thresholds,
                       no_baseline=no_baseline)
