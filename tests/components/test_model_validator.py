"""ModelValidator: TFMA's threshold semantics (on hand-made TFMA metrics, and case by case against TFMA's
own validation of real TFMA metrics), reasons, the first-run policy, thresholds in the eval config."""
from __future__ import annotations

import json
import math

import pytest

from sluice.components import ModelValidator, WiringError
from sluice.components.model_validator.gate import ModelValidatorExecutor
from sluice.components.model_validator.thresholds import normalize_threshold
from sluice.metadata import Model, ModelBlessing, ModelEvaluation


def evaluation(tmp_path, candidate, baseline=None, slices=None, candidate_id=7, baseline_id=3, eval_config=None):
    """An evaluation as the Evaluator writes it: metrics.json, and TFMA's metrics records (here hand-made:
    metrics computed in the model's graph, TFMA's diff = candidate - baseline) with the eval config."""
    import tensorflow as tf
    import tensorflow_model_analysis as tfma
    from google.protobuf import text_format

    d = tmp_path / 'evaluation'
    d.mkdir(exist_ok=True)
    overall = {'candidate': candidate}
    if baseline is not None:
        overall['baseline'] = baseline
    all_slices = {'Overall': overall, **(slices or {})}
    summary = {'candidate_model_id': candidate_id, 'baseline_model_id': baseline_id if baseline is not None else 0,
               'slices': all_slices}
    (d / 'metrics.json').write_text(json.dumps(summary))
    with_baseline = baseline is not None
    cfg = eval_config or tfma.EvalConfig()
    del cfg.model_specs[:]
    cfg.model_specs.add(name='candidate', label_key='y')
    if with_baseline:
        cfg.model_specs.add(name='baseline', label_key='y', is_baseline=True)
    (d / 'eval_config.pbtxt').write_text(text_format.MessageToString(cfg))
    candidate_name = 'candidate' if with_baseline else ''  # TFMA's names: '' for a single model
    with tf.io.TFRecordWriter(str(d / 'metrics-00000-of-00001.tfrecord')) as w:
        for name, models in all_slices.items():
            record = tfma.MetricsForSlice()
            if name != 'Overall':
                for part in name.split(', '):
                    column, _, value = part.partition('=')
                    record.slice_key.single_slice_keys.add(column=column, bytes_value=value.encode())
            for who, model_name in (('candidate', candidate_name), ('baseline', 'baseline')):
                for metric, value in models.get(who, {}).items():
                    kv = record.metric_keys_and_values.add(key={'name': metric, 'model_name': model_name})
                    kv.value.double_value.value = value
            for metric, value in models.get('candidate', {}).items():
                if with_baseline and metric in models.get('baseline', {}):
                    kv = record.metric_keys_and_values.add(key={'name': metric, 'model_name': candidate_name,
                                                                'is_diff': True})
                    kv.value.double_value.value = value - models['baseline'][metric]
            w.write(record.SerializeToString())
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


def test_the_reason_reports_the_numbers(tmp_path):
    # (was a test of check_change, Sluice's own re-implementation of TFMA's change check, now gone: the
    # pass/fail in the reason is TFMA's validate_metrics on that bound)
    ev = evaluation(tmp_path, {ACC: 0.9}, {ACC: 1.0})
    _, reasons, _ = validate(tmp_path, ev, {ACC: {'change': {'direction': 'higher', 'absolute': -1e-10}}})
    assert reasons['checks'][0]['reason'] == 'change -0.1 >= -1e-10: fails'
    ev = evaluation(tmp_path, {ACC: 1.0}, {ACC: 0.0})
    _, reasons, _ = validate(tmp_path, ev, {ACC: {'change': {'direction': 'higher', 'relative': 0.1}}})
    why = reasons['checks'][0]['reason']
    assert not reasons['checks'][0]['passed'] and math.isnan(float(why.split()[2]))


def test_thresholds_in_the_evaluators_eval_config_are_honoured(tmp_path):
    import tensorflow_model_analysis as tfma
    cfg = tfma.EvalConfig(metrics_specs=[tfma.MetricsSpec(
        thresholds={ACC: tfma.MetricThreshold(value_threshold=tfma.GenericValueThreshold(lower_bound={'value': 0.95}))},
        per_slice_thresholds={'loss': tfma.PerSliceMetricThresholds(thresholds=[tfma.PerSliceMetricThreshold(
            slicing_specs=[tfma.SlicingSpec(feature_values={'island': 'Dream'})],
            threshold=tfma.MetricThreshold(change_threshold=tfma.GenericChangeThreshold(
                direction=tfma.MetricDirection.LOWER_IS_BETTER, absolute={'value': 0.0})))])})])
    slices = {'island=Dream': {'candidate': {ACC: 0.8, 'loss': 0.5}, 'baseline': {ACC: 0.8, 'loss': 0.4}}}
    ev = evaluation(tmp_path, {ACC: 0.9, 'loss': 0.3}, {ACC: 0.85, 'loss': 0.35}, slices=slices, eval_config=cfg)
    # no thresholds= at all: the eval config's thresholds decide (accuracy 0.9 < 0.95 on every slice; the
    # loss got worse on Dream)
    verdict, reasons, _ = validate(tmp_path, ev, None)
    assert verdict == 'NOT_BLESSED'
    assert [(c['metric'], c['slice'], c['source'], c['passed']) for c in reasons['checks']] == [
        (ACC, 'Overall', 'eval_config', False), (ACC, 'island=Dream', 'eval_config', False),
        ('loss', 'island=Dream', 'eval_config', False)]
    assert reasons['checks'][2]['reason'] == 'change +0.1 <= 0: fails'
    # both places apply: a passing threshold here does not outvote a failing one there
    verdict, reasons, _ = validate(tmp_path, ev, {ACC: {'lower_bound': 0.5}})
    assert verdict == 'NOT_BLESSED' and reasons['checks'][0] == {**reasons['checks'][0], 'source': 'thresholds',
                                                                  'passed': True}
    # the first run: value bounds only from the eval config too
    ev = evaluation(tmp_path, {ACC: 0.97, 'loss': 0.3}, slices={'island=Dream': {'candidate': {ACC: 0.96}}},
                    eval_config=cfg)
    verdict, reasons, _ = validate(tmp_path, ev, None)
    assert verdict == 'BLESSED'
    assert reasons['checks'][-1]['reason'] == 'change not checked: no baseline'


def test_no_thresholds_anywhere_is_an_error_naming_both_places(tmp_path):
    ev = evaluation(tmp_path, {ACC: 0.9})
    for nothing in (None, {}):
        with pytest.raises(ValueError, match=r"No thresholds to check .*: give ModelValidator\(thresholds=\{\.\.\.\}\), "
                                             r"or thresholds in the Evaluator's eval_config"):
            validate(tmp_path, ev, nothing)


def test_thresholds_are_optional_at_construction():
    from sluice.components import Evaluator, ImportExampleGen, Trainer
    gen = ImportExampleGen(input_base='/d')
    trainer = Trainer(module_file='/m.py', examples=gen.outputs['examples'])
    ev = Evaluator(examples=gen.outputs['examples'], model=trainer.outputs['model'],
                   eval_config={'label_key': 'y', 'metrics': ['AUC']})
    validator = ModelValidator(model=trainer.outputs['model'], evaluation=ev.outputs['evaluation'])
    assert validator.parameters['thresholds'] is None


@pytest.mark.parametrize('thresholds, no_baseline, message', [
    # ({}, 'bless', 'give at least one metric threshold') is gone: thresholds may also come from the
    # Evaluator's eval config, which is known only at run time (test_no_thresholds_anywhere_...)
    ({ACC: {'lower_bound': 0.5, 'slices': ['Dream']}}, 'bless', r"accuracy: slice 'Dream': name a slice as in "
                                                                 r"metrics\.json, e\.g\. 'island=Biscoe'"),
    ({ACC: {'lower': 0.5}}, 'bless', r'accuracy: unknown key\(s\) lower; use lower_bound, upper_bound, change'),
    ({ACC: {'change': {'direction': 'up', 'absolute': 0}}}, 'bless', r"accuracy: change\.direction must be 'higher' or 'lower'"),
    ({ACC: {'change': {'direction': 'higher'}}}, 'bless', r'accuracy: change needs absolute and/or relative'),
    ({ACC: {'lower_bound': 0.5}}, 'maybe', r"no_baseline must be 'bless' or 'reject'; got 'maybe'"),
])
def test_thresholds_are_checked_at_construction(thresholds, no_baseline, message):
    from sluice.components import Evaluator, ImportExampleGen, Trainer
    gen = ImportExampleGen(input_base='/d')
    trainer = Trainer(module_file='/m.py', examples=gen.outputs['examples'])
    ev = Evaluator(examples=gen.outputs['examples'], model=trainer.outputs['model'],
                   eval_config={'label_key': 'y', 'metrics': ['AUC']})
    with pytest.raises(WiringError, match=r'^ModelValidator\((thresholds|no_baseline)=\.\.\.\): ' + message):
        ModelValidator(model=trainer.outputs['model'], evaluation=ev.outputs['evaluation'], thresholds=thresholds,
                       no_baseline=no_baseline)


# -- the verdict equals TFMA's own, case by case, on real TFMA metrics --------------------------------------
# Two tiny SavedModels (serving_default parses tf.Examples and returns one column as the prediction:
# the candidate 'pc', the baseline always 0) measured by the Evaluator with TFMA on 8 examples:
#   Overall:  binary_accuracy 0.875 vs 0.625; mean_squared_error 0.1 vs 0.375; mean_prediction 0.5 vs 0 (a
#             ZERO baseline); mean_label 0.375 vs 0.375; calibration 4/3 vs 0
#   binary_accuracy per island: Biscoe 1 vs 1/3, Dream 2/3 vs 2/3, Torgersen 1 vs 1 (all labels 0, so
#             its calibration is NaN)
ROWS = [(1., .9, 'Biscoe'), (0., .2, 'Biscoe'), (1., .8, 'Dream'), (0., .6, 'Dream'), (1., .7, 'Biscoe'),
        (0., .1, 'Dream'), (0., .3, 'Torgersen'), (0., .4, 'Torgersen')]
CLASSES = {'binary_accuracy': 'BinaryAccuracy', 'mean_squared_error': 'MeanSquaredError', 'mean_label': 'MeanLabel',
           'mean_prediction': 'MeanPrediction', 'calibration': 'Calibration', 'example_count': 'ExampleCount'}
HI, LO = 'higher', 'lower'


def _proto(value=None, change=None):
    import tensorflow_model_analysis as tfma
    t = tfma.MetricThreshold()
    for bound, v in (value or {}).items():
        getattr(t.value_threshold, bound).value = v
    if change:
        t.change_threshold.direction = (tfma.MetricDirection.HIGHER_IS_BETTER if change['direction'] == HI
                                        else tfma.MetricDirection.LOWER_IS_BETTER)
        for bound in ('absolute', 'relative'):
            if bound in change:
                getattr(t.change_threshold, bound).value = change[bound]
    return t


# (case, metric, threshold as given to ModelValidator, TFMA's verdict with a baseline, on the first run)
CASES = [
    ('value lower bound ok', 'binary_accuracy', {'lower_bound': 0.85}, True, True),
    ('value lower bound fails', 'binary_accuracy', {'lower_bound': 0.9}, False, False),
    ('value upper bound ok', 'mean_squared_error', {'upper_bound': 0.11}, True, True),
    ('value upper bound fails', 'mean_squared_error', {'upper_bound': 0.09}, False, False),
    ('value outside both bounds', 'mean_prediction', {'lower_bound': 0.1, 'upper_bound': 0.4}, False, False),
    ('higher absolute ok', 'binary_accuracy', {'change': {'direction': HI, 'absolute': 0.2}}, True, True),
    ('higher absolute fails', 'binary_accuracy', {'change': {'direction': HI, 'absolute': 0.3}}, False, True),
    ('higher relative ok', 'binary_accuracy', {'change': {'direction': HI, 'relative': 0.35}}, True, True),
    ('higher relative fails', 'binary_accuracy', {'change': {'direction': HI, 'relative': 0.45}}, False, True),
    ('higher absolute ok, relative fails', 'binary_accuracy',
     {'change': {'direction': HI, 'absolute': 0.1, 'relative': 0.5}}, False, True),
    ('equal to the baseline', 'mean_label', {'change': {'direction': HI, 'absolute': -1e-10}}, True, True),
    ('lower absolute ok', 'mean_squared_error', {'change': {'direction': LO, 'absolute': -0.25}}, True, True),
    ('lower absolute fails', 'mean_squared_error', {'change': {'direction': LO, 'absolute': -0.3}}, False, True),
    ('lower relative ok', 'mean_squared_error', {'change': {'direction': LO, 'relative': -0.7}}, True, True),
    ('lower relative fails', 'mean_squared_error', {'change': {'direction': LO, 'relative': -0.75}}, False, True),
    ('zero baseline, higher absolute ok', 'mean_prediction', {'change': {'direction': HI, 'absolute': 0.45}},
     True, True),
    ('zero baseline, higher absolute fails', 'mean_prediction', {'change': {'direction': HI, 'absolute': 0.55}},
     False, True),
    ('zero baseline, lower absolute ok', 'mean_prediction', {'change': {'direction': LO, 'absolute': 1.0}},
     True, True),
    ('zero baseline, higher relative (NaN)', 'mean_prediction', {'change': {'direction': HI, 'relative': -1.0}},
     False, True),
    ('zero baseline, lower relative (NaN)', 'mean_prediction', {'change': {'direction': LO, 'relative': 1.0}},
     False, True),
    ('every slice, one fails', 'binary_accuracy', {'lower_bound': 0.7, 'slices': 'all'}, False, False),
    ('every slice ok', 'binary_accuracy', {'lower_bound': 0.6, 'slices': 'all'}, True, True),
    ('a NaN metric on one slice', 'calibration', {'lower_bound': 0.0, 'slices': 'all'}, False, False),
    ('one slice ok', 'binary_accuracy', {'lower_bound': 0.95, 'slices': ['island=Biscoe']}, True, True),
    ('one slice, change ok', 'binary_accuracy', {'change': {'direction': HI, 'absolute': 0.6},
                                                 'slices': ['island=Biscoe']}, True, True),
    ('a slice not computed', 'binary_accuracy', {'lower_bound': 0.2, 'slices': ['island=Fantasy']}, False, False),
    ('a metric not computed', 'auc', {'lower_bound': 0.5}, False, False),
    ('a metric not computed, change', 'auc', {'change': {'direction': HI, 'absolute': 0.0}}, False, True),
    ('tfma.MetricThreshold ok', 'binary_accuracy',
     lambda: _proto({'lower_bound': 0.8}, {'direction': HI, 'absolute': 0.15}), True, True),
    ('tfma.MetricThreshold fails', 'mean_squared_error',
     lambda: _proto({'upper_bound': 0.2}, {'direction': LO, 'absolute': -0.29}), False, True),
]  # the tfma.MetricThreshold cases are built when used: TFMA is not imported while pytest collects tests


def _cases():
    """CASES with each tfma.MetricThreshold built."""
    return [(case, metric, threshold() if callable(threshold) else threshold, *verdicts)
            for case, metric, threshold, *verdicts in CASES]


def _as_tfma(metric, threshold):
    """(tfma.MetricThreshold, [SlicingSpec] or None = every slice): the case as a TFMA user writes it."""
    import tensorflow_model_analysis as tfma
    if not isinstance(threshold, dict):
        return threshold, [tfma.SlicingSpec()]
    slices = threshold.get('slices', ['Overall'])
    specs = None if slices == 'all' else [
        tfma.SlicingSpec() if s == 'Overall' else tfma.SlicingSpec(feature_values=dict([s.split('=')]))
        for s in slices]
    return _proto({k: v for k, v in threshold.items() if k in ('lower_bound', 'upper_bound')},
                  threshold.get('change')), specs


def _case_config():
    """A tfma.EvalConfig computing the metrics, with every case's threshold where TFMA reads it: on the
    MetricConfig (its threshold for every slice, else per_slice_thresholds), or for a metric not computed,
    in the MetricsSpec's thresholds."""
    import tensorflow_model_analysis as tfma
    cfg = tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(label_key='label')],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=['island'])],
        metrics_specs=[tfma.MetricsSpec(metrics=[tfma.MetricConfig(class_name=c) for c in CLASSES.values()])])
    for _, metric, threshold, _, _ in _cases():
        t, specs = _as_tfma(metric, threshold)
        spec = cfg.metrics_specs.add()
        if metric not in CLASSES:
            spec.per_slice_thresholds[metric].thresholds.add(slicing_specs=specs, threshold=t)
            continue
        config = spec.metrics.add(class_name=CLASSES[metric])
        if specs is None:
            config.threshold.CopyFrom(t)
        else:
            config.per_slice_thresholds.add(slicing_specs=specs, threshold=t)
    return cfg


@pytest.fixture(scope='module')
def tfma_evaluations(tmp_path_factory):
    """Evaluations by the Evaluator (TFMA) with every case's threshold in its tfma.EvalConfig: with a
    baseline and without (the first run)."""
    import tensorflow as tf
    from sluice.components.evaluator import EvaluatorExecutor
    from sluice.metadata import Examples

    root = tmp_path_factory.mktemp('tfma')
    split = root / 'examples' / 'Split-eval'
    split.mkdir(parents=True)
    with tf.io.TFRecordWriter(str(split / 'data.tfrecord')) as w:
        for label, pc, island in ROWS:
            w.write(tf.train.Example(features=tf.train.Features(feature={
                'label': tf.train.Feature(float_list=tf.train.FloatList(value=[label])),
                'pc': tf.train.Feature(float_list=tf.train.FloatList(value=[pc])),
                'pb': tf.train.Feature(float_list=tf.train.FloatList(value=[0.0])),
                'island': tf.train.Feature(bytes_list=tf.train.BytesList(value=[island.encode()]))})
            ).SerializeToString())

    def model(column, model_id):
        class Serve(tf.Module):
            @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
            def serve(self, examples):
                parsed = tf.io.parse_example(examples, {column: tf.io.FixedLenFeature([1], tf.float32)})
                return {'prediction': parsed[column]}
        m = Serve()
        tf.saved_model.save(m, str(root / column / 'Format-Serving'), signatures={'serving_default': m.serve})
        artifact = Model(uri=str(root / column))
        artifact.id = model_id
        return artifact

    examples = Examples(uri=str(root / 'examples'), split_names='["eval"]')
    candidate, baseline = model('pc', 7), model('pb', 3)
    out = {}
    for name, base in (('baseline', baseline), ('first_run', None)):
        (root / name).mkdir()
        evaluation = ModelEvaluation(uri=str(root / name))
        EvaluatorExecutor().run(examples=examples, model=candidate, baseline_model=base, evaluation=evaluation,
                                eval_config=_case_config(), eval_split='eval', push_destination=None)
        out[name] = evaluation
    return out


def _without_thresholds(tmp_path, evaluation):
    """A copy of the evaluation whose eval config has no thresholds (same TFMA metrics)."""
    import shutil
    import tensorflow_model_analysis as tfma
    from google.protobuf import text_format
    d = tmp_path / 'plain'
    shutil.copytree(evaluation.uri, d)
    cfg = text_format.Parse((d / 'eval_config.pbtxt').read_text(), tfma.EvalConfig())
    del cfg.metrics_specs[1:]
    (d / 'eval_config.pbtxt').write_text(text_format.MessageToString(cfg))
    return ModelEvaluation(uri=str(d))


def _tfma_verdicts(evaluation):
    """Each case's verdict in TFMA's own ValidationResult, written by TFMA's Evaluator run."""
    import tensorflow_model_analysis as tfma
    result = tfma.load_validation_result(evaluation.uri)
    failures = [f for v in result.metric_validations_per_slice for f in v.failures]
    verdicts = {}
    for case, metric, threshold, _, _ in _cases():
        t, specs = _as_tfma(metric, threshold)
        failed = any(f.metric_key.name == metric and (
            (f.metric_threshold.HasField('value_threshold') and f.metric_threshold.value_threshold == t.value_threshold)
            or (f.metric_threshold.HasField('change_threshold')
                and f.metric_threshold.change_threshold == t.change_threshold)) for f in failures)
        missing = specs is not None and any(s in result.missing_slices for s in specs if s.feature_values)
        verdicts[case] = not failed and not missing
    return result, verdicts


def _threshold_of(metric, threshold):
    from sluice.components.model_validator.thresholds import threshold_dict
    return threshold_dict(_as_tfma(metric, threshold)[0])


@pytest.mark.parametrize('scenario', ['baseline', 'first_run'])
def test_every_case_gets_tfmas_own_verdict(tmp_path, tfma_evaluations, scenario):
    from google.protobuf import json_format
    evaluation = tfma_evaluations[scenario]
    result, tfma_says = _tfma_verdicts(evaluation)
    expected = {case: (with_base if scenario == 'baseline' else first) for case, _, _, with_base, first in CASES}
    assert tfma_says == expected  # the table states what TFMA decides

    # thresholds= on the ModelValidator, one case at a time, on the same TFMA metrics
    plain = _without_thresholds(tmp_path, evaluation)
    for case, metric, threshold, _, _ in _cases():
        verdict, reasons, _ = validate(tmp_path, plain, {metric: threshold})
        assert (verdict == 'BLESSED') == tfma_says[case], (case, reasons['checks'])
        assert reasons['checks'] and all(c['source'] == 'thresholds' for c in reasons['checks'])
        assert all(c['passed'] for c in reasons['checks']) == tfma_says[case], case

    # the same thresholds inside the Evaluator's tfma.EvalConfig, no thresholds= at all: honoured, and the
    # verdict is TFMA's ValidationResult as TFMA's own Evaluator run wrote it
    verdict, reasons, _ = validate(tmp_path, evaluation, None)
    assert (verdict == 'BLESSED') == result.validation_ok is False
    ours = reasons['tfma_validation_result']
    theirs = json_format.MessageToDict(result, preserving_proto_field_name=True)
    assert ours['validation_ok'] is False and theirs.get('validation_ok', False) is False
    key = lambda v: json.dumps(v, sort_keys=True)  # noqa: E731
    assert sorted(map(key, ours['metric_validations_per_slice'])) == \
        sorted(map(key, theirs['metric_validations_per_slice']))
    assert ours.get('missing_slices') == theirs.get('missing_slices')
    for case, metric, threshold, _, _ in _cases():
        mine = [c for c in reasons['checks']
                if c['metric'] == metric and c['threshold'] == _threshold_of(metric, threshold)]
        assert mine and all(c['source'] == 'eval_config' for c in mine), case
        assert all(c['passed'] for c in mine) == tfma_says[case], (case, mine)


def test_reasons_name_the_numbers_and_each_bound(tmp_path, tfma_evaluations):
    plain = _without_thresholds(tmp_path, tfma_evaluations['baseline'])
    _, reasons, _ = validate(tmp_path, plain, {'binary_accuracy': {
        'lower_bound': 0.8, 'change': {'direction': 'higher', 'absolute': 0.1, 'relative': 0.5}}})
    [check] = reasons['checks']
    assert check['candidate'] == pytest.approx(0.875) and check['baseline'] == pytest.approx(0.625)
    assert check['reason'] == '0.875 within [0.8, inf]; change +0.25 >= 0.1: ok; relative change +0.4 >= 0.5: fails'
    assert check['threshold'] == {'lower_bound': 0.8, 'change': {'direction': 'higher', 'absolute': 0.1,
                                                                 'relative': 0.5}}
    _, reasons, _ = validate(tmp_path, plain, {'mean_prediction': {'change': {'direction': 'higher',
                                                                              'relative': 0.0}}})
    assert reasons['checks'][0]['reason'] == 'relative change +nan >= 0: fails'  # a zero baseline, as in TFMA
    _, reasons, _ = validate(tmp_path, plain, {'binary_accuracy': {'lower_bound': 0.7, 'slices': 'all'}})
    assert {c['slice']: c['passed'] for c in reasons['checks']} == {
        'Overall': True, 'island=Biscoe': True, 'island=Dream': False, 'island=Torgersen': True}


def test_metrics_json_is_valid_json_with_null_for_nan(tfma_evaluations):
    import pathlib
    text = (pathlib.Path(tfma_evaluations['baseline'].uri) / 'metrics.json').read_text()
    assert 'NaN' not in text  # json.dump wrote NaN for it before: not JSON

    def refuse(constant):
        raise ValueError(f'invalid JSON constant {constant}')
    summary = json.loads(text, parse_constant=refuse)
    torgersen = summary['slices']['island=Torgersen']
    assert torgersen['candidate']['calibration'] is None and torgersen['baseline']['calibration'] is None
    assert summary['slices']['Overall']['candidate']['calibration'] == pytest.approx(4 / 3)


def test_an_evaluation_without_eval_config_pbtxt_uses_the_config_tfma_wrote(tmp_path, tfma_evaluations):
    import shutil
    older = tmp_path / 'older'
    shutil.copytree(tfma_evaluations['baseline'].uri, older)
    (older / 'eval_config.pbtxt').unlink()
    verdict, reasons, _ = validate(tmp_path, ModelEvaluation(uri=str(older)), None)
    _, again, _ = validate(tmp_path, tfma_evaluations['baseline'], None)
    assert verdict == 'NOT_BLESSED' and reasons['checks'] == again['checks']
