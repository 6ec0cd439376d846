"""BulkInferrer on the real stack: the session's penguin model (tests/shared_runs.py) run with tfx_bsl's
RunInference on Beam over the unlabelled penguins, recorded in ML-Metadata; its errors on the executor."""
from __future__ import annotations

import glob
import os
import shutil

import numpy as np
import pytest

from dummies import FakeBless
from sluice import LocalDagRunner, Pipeline
from sluice.components import Component, CsvExampleGen, Executor, Model, Output, Parameter, WiringError
from sluice.components.bulk_inferrer import NOT_INFERRED, BulkInferrer, BulkInferrerExecutor, InferenceError
from sluice.metadata import MetadataStore
from sluice.metadata.artifact import Examples, InferenceResult, ModelBlessing

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNLABELLED = os.path.join(REPO, 'pipelines', 'examples', 'penguin', 'unlabelled')
FEATURES = ['culmen_length_mm', 'culmen_depth_mm', 'flipper_length_mm', 'body_mass_g']
BEAM_ARGS = ['--direct_num_workers=1']


class SharedModelExecutor(Executor):
    def run(self, *, model: Model, source: str) -> None:
        shutil.copytree(os.path.join(source, 'Format-Serving'), os.path.join(model.uri, 'Format-Serving'))


class SharedModel(Component):
    """The shared penguin run's trained model, copied into this test's pipeline."""
    model = Output(Model)
    source = Parameter(str, path=True)
    executor = SharedModelExecutor


@pytest.fixture(scope='module')
def penguin(penguin_run):
    """The session's penguin run (read only): its Trainer's Model and its CsvExampleGen's Examples."""
    _, result = penguin_run
    assert result['state'] == 'COMPLETE', result['errors']
    store = MetadataStore(result['metadata'])
    model = store.node_outputs(result['run_id'], 'Trainer')['model'][0]
    examples = store.node_outputs(result['run_id'], 'CsvExampleGen')['examples'][0]
    return model, examples


@pytest.fixture(scope='module')
def runs(penguin, tmp_path_factory):
    """A pipeline over the unlabelled penguins: one BulkInferrer behind a BLESSED blessing, one behind a
    NOT_BLESSED one; run twice (the second run all cached). (pipeline, store, first, second)."""
    root = tmp_path_factory.mktemp('bulk')
    gen = CsvExampleGen(input_base=UNLABELLED, split_ratios={'unlabelled': 1})
    model = SharedModel(source=penguin[0].uri)
    blessed = FakeBless(model=model.outputs['model'], blessed=True).with_id('Blessed')
    unblessed = FakeBless(model=model.outputs['model'], blessed=False).with_id('NotBlessed')
    inferrer = BulkInferrer(examples=gen.outputs['examples'], model=model.outputs['model'],
                            model_blessing=blessed.outputs['blessing'])
    idle = BulkInferrer(examples=gen.outputs['examples'], model=model.outputs['model'],
                        model_blessing=unblessed.outputs['blessing']).with_id('BulkInferrerNotBlessed')
    pipeline = Pipeline(name='bulk', pipeline_root=str(root / 'root'),
                        components=[gen, model, blessed, unblessed, inferrer, idle],
                        metadata=f'sqlite:///{root}/metadata.db', enable_cache=True, beam_pipeline_args=BEAM_ARGS)
    first = LocalDagRunner(progress=False).run(pipeline)
    second = LocalDagRunner(progress=False).run(pipeline)
    return pipeline, MetadataStore(pipeline.metadata), first, second


def prediction_logs(artifact):
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    files = sorted(glob.glob(os.path.join(artifact.uri, 'prediction_logs-?????-of-?????.gz')))  # TFX's names
    return [prediction_log_pb2.PredictionLog.FromString(r)
            for r in tf.data.TFRecordDataset(files, compression_type='GZIP').as_numpy_iterator()]


def split_records(examples, split):
    import tensorflow as tf
    files = glob.glob(os.path.join(examples.split_uri(split), '*.gz'))
    return [bytes(r) for r in tf.data.TFRecordDataset(files, compression_type='GZIP').as_numpy_iterator()]


def outputs_of(store, run, node):
    return store.node_outputs(run.run_id, node)


def test_one_prediction_log_per_row_with_the_saved_models_own_outputs(runs):
    import tensorflow as tf

    _, store, first, _ = runs
    assert first.state == 'COMPLETE', {k: n.error for k, n in first.nodes.items() if n.error}
    result = outputs_of(store, first, 'BulkInferrer')['inference_result'][0]
    examples = outputs_of(store, first, 'CsvExampleGen')['examples'][0]
    model = outputs_of(store, first, 'SharedModel')['model'][0]
    logs = prediction_logs(result)
    with open(os.path.join(UNLABELLED, 'penguins_unlabelled.csv')) as f:
        rows = len(f.read().splitlines()) - 1
    assert len(logs) == rows == 10
    assert result.get('inferred') == 1 and result.get('example_count') == rows and result.get('model_id') == model.id
    assert result.get('split_names') == '["unlabelled"]'
    assert all(log.WhichOneof('log_type') == 'predict_log' for log in logs)
    requests = [log.predict_log.request.inputs['examples'].string_val[0] for log in logs]
    assert sorted(requests) == sorted(split_records(examples, 'unlabelled'))  # each example once, as it is stored
    assert set(tf.train.Example.FromString(requests[0]).features.feature) == set(FEATURES)  # no label
    assert {log.predict_log.response.model_spec.signature_name for log in logs} == {'serving_default'}

    serving = tf.saved_model.load(os.path.join(model.uri, 'Format-Serving')).signatures['serving_default']
    some = logs[:4]
    own = serving(examples=tf.constant([log.predict_log.request.inputs['examples'].string_val[0]
                                        for log in some]))['probabilities'].numpy()
    logged = np.concatenate([tf.make_ndarray(log.predict_log.response.outputs['probabilities']) for log in some])
    assert logged.shape == own.shape == (4, 3)
    np.testing.assert_allclose(logged, own, atol=1e-5, rtol=0)


def test_a_not_blessed_model_is_not_inferred_and_that_is_recorded(runs):
    _, store, first, _ = runs
    assert first['BulkInferrerNotBlessed'].state == 'COMPLETE'
    result = outputs_of(store, first, 'BulkInferrerNotBlessed')['inference_result'][0]
    assert result.state == 'LIVE' and result.get('inferred') == 0 and result.get('example_count') == 0
    assert 'NOT_BLESSED' in result.get('reason') and 'nothing was inferred' in result.get('reason')
    assert os.listdir(result.uri) == [NOT_INFERRED]
    with open(os.path.join(result.uri, NOT_INFERRED)) as f:
        assert f.read().strip() == result.get('reason')


def test_a_second_run_is_cached(runs):
    _, store, first, second = runs
    assert set(second.node_states().values()) == {'CACHED'}, second.node_states()
    for node in ('BulkInferrer', 'BulkInferrerNotBlessed'):
        assert (outputs_of(store, second, node)['inference_result'][0].id ==
                outputs_of(store, first, node)['inference_result'][0].id)


def run_executor(tmp_path, examples, model, blessing=None, **params):
    out = tmp_path / 'inference_result'
    out.mkdir()
    result = InferenceResult(uri=str(out))
    params = {'example_splits': [], 'signature_names': [], 'tags': [], **params}
    BulkInferrerExecutor(beam_pipeline_args=BEAM_ARGS, tmp_dir=str(tmp_path / 'tmp')).run(
        examples=examples, model=model, model_blessing=blessing, inference_result=result, **params)
    return result


def test_example_splits_choose_the_splits_inferred(penguin, tmp_path):
    model, examples = penguin
    assert examples.split_names == ['train', 'eval']
    result = run_executor(tmp_path, examples, model, example_splits=['eval'])
    logs = prediction_logs(result)
    assert sorted(log.predict_log.request.inputs['examples'].string_val[0] for log in logs) == \
        sorted(split_records(examples, 'eval'))
    assert result.get('split_names') == '["eval"]' and result.get('example_count') == len(logs)


def test_a_split_the_examples_do_not_have_is_an_error(penguin, tmp_path):
    model, examples = penguin
    with pytest.raises(ValueError) as caught:
        run_executor(tmp_path, examples, model, example_splits=['eval', 'unlabelled'])
    assert str(caught.value) == (f"BulkInferrer(example_splits=['eval', 'unlabelled']): {examples!r} has no split "
                                 "'unlabelled'; its splits are train, eval (example_splits=[] infers on all of them).")
    assert os.listdir(tmp_path / 'inference_result') == []


def test_a_model_without_format_serving_is_an_error(penguin, tmp_path):
    _, examples = penguin
    (tmp_path / 'model').mkdir()
    model = Model(uri=str(tmp_path / 'model'))
    with pytest.raises(InferenceError, match=r"holds no Format-Serving/saved_model.pb: BulkInferrer runs the "
                                             r"serving SavedModel, which the Trainer's run_fn saves"):
        run_executor(tmp_path, examples, model)


def test_a_blessing_of_another_model_is_an_error(penguin, tmp_path):
    model, examples = penguin
    blessing = ModelBlessing(uri=str(tmp_path), blessed=1, current_model_id=model.id + 1000)
    with pytest.raises(ValueError, match=f'blesses model #{model.id + 1000}, not Model\\(#{model.id} '):
        run_executor(tmp_path, examples, model, blessing)


def test_a_signature_of_dense_inputs_is_a_clear_error_before_any_work(penguin, tmp_path):
    import tensorflow as tf

    _, examples = penguin
    module = tf.Module()
    module.serve = tf.function(lambda x: {'y': x * 2.0},
                               input_signature=[tf.TensorSpec([None], tf.float32, name='x')])
    tf.saved_model.save(module, str(tmp_path / 'dense' / 'Format-Serving'),
                        signatures={'serving_default': module.serve})
    model = Model(uri=str(tmp_path / 'dense'))
    model.id = 7
    with pytest.raises(InferenceError) as caught:
        run_executor(tmp_path, examples, model)
    message = str(caught.value)
    assert message.startswith("Signature 'serving_default' of Model(#7 ")
    assert 'takes x: float32[None]; RunInference feeds ONE string tensor of serialized tf.Examples' in message
    assert os.listdir(tmp_path / 'inference_result') == []
    (tmp_path / 'other').mkdir()
    with pytest.raises(InferenceError, match=r"has no signature 'classify' \(its signatures: serving_default\)"):
        run_executor(tmp_path / 'other', examples, model, signature_names=['classify'])


def test_examples_the_model_cannot_parse_fail_naming_the_model(penguin, tmp_path):
    import tensorflow as tf

    model, _ = penguin
    split = tmp_path / 'examples' / 'Split-unlabelled'
    split.mkdir(parents=True)
    with tf.io.TFRecordWriter(str(split / 'data_tfrecord-00000-of-00001.gz'), options='GZIP') as w:
        for value in (0.1, 0.2):
            w.write(tf.train.Example(features=tf.train.Features(feature={
                name: tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
                for name in FEATURES if name != 'body_mass_g'})).SerializeToString())
    examples = Examples(uri=str(tmp_path / 'examples'), split_names='["unlabelled"]')
    with pytest.raises(InferenceError) as caught:
        run_executor(tmp_path, examples, model)
    message = str(caught.value)
    assert message.startswith(f'RunInference could not run {model!r} (signature serving_default of ')
    assert ('InvalidArgumentError: Graph execution error: Name: <unknown>, Feature: body_mass_g (data type: float) '
            'is required but could not be found. The signature parses') in message
    assert 'the examples must carry the features it parses' in message


def test_parameters_are_lists_of_names():
    with pytest.raises(WiringError, match=r'BulkInferrer\(example_splits=...\) expects list; got str'):
        BulkInferrer(examples=CsvExampleGen(input_base=UNLABELLED).outputs['examples'],
                     model=SharedModel(source=UNLABELLED).outputs['model'], example_splits='eval')
    with pytest.raises(WiringError, match='names one of them twice'):
        BulkInferrer(examples=CsvExampleGen(input_base=UNLABELLED).outputs['examples'],
                     model=SharedModel(source=UNLABELLED).outputs['model'], example_splits=['eval', 'eval'])


def test_a_split_without_files_is_an_error(tmp_path, penguin):
    model, _ = penguin
    (tmp_path / 'examples' / 'Split-unlabelled').mkdir(parents=True)
    examples = Examples(uri=str(tmp_path / 'examples'), split_names='["unlabelled"]')
    with pytest.raises(ValueError, match=r"Split 'unlabelled' of Examples\('.*'\) holds no files \(.* is empty or "
                                         r'gone\); run its ExampleGen again'):
        run_executor(tmp_path, examples, model)


def test_the_beam_pipeline_is_built_from_the_pipelines_beam_args(tmp_path, penguin):
    model, examples = penguin
    out = tmp_path / 'out'
    out.mkdir()
    executor = BulkInferrerExecutor(beam_pipeline_args=['--runner=NoSuchRunner'], tmp_dir=str(tmp_path / 'tmp'))
    with pytest.raises(ValueError, match='NoSuchRunner'):
        executor.run(examples=examples, model=model, model_blessing=None, inference_result=InferenceResult(uri=str(out)),
                     example_splits=['eval'], signature_names=[], tags=[])
