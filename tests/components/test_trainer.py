"""Trainer: fn_args.working_dir is scratch space (not the Model); its ONNX copy is made by the node it
brings along (``<id>.onnx``), which finds the raw examples for its check by what the upstream execution
did, whatever its component type or node id."""
from __future__ import annotations

import json
import logging
import os
import pathlib
import re

import pytest

from sluice.components import Component, Executor, Input, Output, Parameter, Trainer, Transform
from sluice.components.onnx_exporter import raw_examples_of
from sluice.components.trainer import TrainerExecutor
from sluice.metadata import Examples, Model, Schema
from sluice.metadata.artifact import ModelRun, TransformGraph
from sluice import LocalDagRunner, Pipeline

MODULE = '''
import os
import tensorflow as tf

SEEN = {}

def run_fn(fn_args):
    SEEN['working_dir'] = fn_args.working_dir
    with open(os.path.join(fn_args.working_dir, 'checkpoint-scratch.txt'), 'w') as f:
        f.write('scratch')

    class Serve(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def serve(self, examples):
            return {'outputs': tf.zeros_like(tf.strings.length(examples), tf.float32)}
    m = Serve()
    tf.saved_model.save(m, fn_args.serving_model_dir, signatures={'serving_default': m.serve})
'''


def test_working_dir_is_the_executions_scratch_space_not_the_model(tmp_path):
    module = tmp_path / 'module.py'
    module.write_text(MODULE)
    examples = Examples(uri=str(tmp_path / 'examples'), split_names='["train", "eval"]')
    model, model_run = Model(uri=str(tmp_path / 'model')), ModelRun(uri=str(tmp_path / 'model_run'))
    for d in (model.uri, model_run.uri, tmp_path / 'tmp'):
        os.makedirs(d)
    TrainerExecutor(tmp_dir=str(tmp_path / 'tmp')).run(
        examples=examples, transform_graph=None, schema=None, base_model=None, model=model,
        model_run=model_run, module_file=str(module), train_steps=1, eval_steps=1, custom_config={},
        hyperparameters={}, train_split='train', eval_split='eval')
    published = [os.path.relpath(os.path.join(d, f), model.uri) for d, _, files in os.walk(model.uri) for f in files]
    assert 'checkpoint-scratch.txt' not in [os.path.basename(p) for p in published]  # was model.uri before
    assert os.path.isfile(os.path.join(tmp_path, 'tmp', 'working', 'checkpoint-scratch.txt'))
    assert os.path.isfile(os.path.join(model.uri, 'Format-Serving', 'saved_model.pb'))


# -- raw examples through lineage, on dummy components and a real in-memory store -------------------------
class GenExecutor(Executor):
    def run(self, *, examples: Examples) -> None:
        examples.set('split_names', ['train', 'eval'])
        for split in ('train', 'eval'):
            os.makedirs(examples.split_uri(split))


class Gen(Component):
    examples = Output(Examples)
    executor = GenExecutor


class SchemaExecutor(Executor):
    def run(self, *, schema: Schema) -> None:
        with open(os.path.join(schema.uri, 'schema.pbtxt'), 'w') as f:
            f.write('')


class FakeSchema(Component):
    schema = Output(Schema)
    executor = SchemaExecutor


class FakeTransformExecutor(Executor):
    def run(self, *, examples: Examples, schema: Schema, transform_graph: TransformGraph,
            transformed_examples: Examples, module_file: str, analyze_split: str, **cache: object) -> None:
        transformed_examples.set('split_names', examples.split_names)


class MyTransform(Transform):
    """A Transform subclass: another component type, the same job."""
    executor = FakeTransformExecutor


class SampleExecutor(Executor):
    def run(self, *, examples: Examples, sampled: Examples, rate: float) -> None:
        sampled.set('split_names', examples.split_names)


class Sample(Component):
    """Reads examples under 'examples' and writes examples, but no transform graph: not a Transform."""
    examples = Input(Examples)
    sampled = Output(Examples)
    rate = Parameter(float, default=0.5)
    executor = SampleExecutor


def test_raw_examples_are_found_for_a_renamed_transform_subclass(store, tmp_path):
    module = tmp_path / 'module.py'
    module.write_text('def preprocessing_fn(inputs):\n    return inputs\n')
    gen, schema = Gen(), FakeSchema()
    sample = Sample(examples=gen.outputs['examples'])
    prep = MyTransform(examples=sample.outputs['sampled'], schema=schema.outputs['schema'],
                       module_file=str(module)).with_id('prep')
    pipeline = Pipeline(name='p', pipeline_root=str(tmp_path / 'root'), components=[gen, schema, sample, prep],
                        metadata=':memory:')
    result = LocalDagRunner(progress=False).run(pipeline, store=store)
    assert result.state == 'COMPLETE'
    sampled = result['Sample'].outputs['sampled']
    # the examples the Transform read, though its component type is 'MyTransform' and its node id 'prep'
    assert raw_examples_of(store, result['prep'].outputs['transformed_examples']).id == sampled.id
    # examples from a component that is not a transform are the raw examples themselves
    assert raw_examples_of(store, sampled).id == sampled.id


def test_the_onnx_export_is_a_node_of_its_own_named_after_the_trainer(tmp_path):
    """A Trainer brings its OnnxExporter into the pipeline (after it, named after it, whatever its id);
    Pushers and InfraValidators fed its model wait for the export; export_onnx=False brings none."""
    from sluice.components import CsvExampleGen, InfraValidator, Pusher

    gen = CsvExampleGen(input_base=str(tmp_path))
    trainer = Trainer(examples=gen.outputs['examples'], module_file=DENSE_MODULE, onnx_tolerance=1e-3)
    pusher = Pusher(model=trainer.outputs['model'], push_destination=str(tmp_path / 'serving'))
    infra = InfraValidator(model=trainer.outputs['model'])
    plain = Trainer(examples=gen.outputs['examples'], module_file=DENSE_MODULE, export_onnx=False).with_id('plain')
    pipeline = Pipeline('p', str(tmp_path / 'root'), [gen, trainer, pusher, infra, plain])
    assert sorted(pipeline.node_ids) == ['CsvExampleGen', 'InfraValidator', 'Pusher', 'Trainer', 'Trainer.onnx', 'plain']
    assert pipeline.node_ids.index('Trainer') < pipeline.node_ids.index('Trainer.onnx') < pipeline.node_ids.index('Pusher')
    exporter = pipeline.node('Trainer.onnx')
    assert exporter is trainer.onnx_exporter and exporter.parameters['onnx_tolerance'] == 1e-3
    assert pusher.inputs['onnx_model'].producer is exporter and infra.inputs['onnx_model'].producer is exporter
    assert pipeline.upstream_of('Pusher') == {'CsvExampleGen', 'Trainer', 'Trainer.onnx'}
    assert plain.onnx_exporter is None and 'onnx_tolerance' not in trainer.parameters
    # a partial run that trains also exports (--only, --to)
    assert pipeline.select(only=['Trainer']) == {'Trainer', 'Trainer.onnx'}
    assert pipeline.select(to_nodes=['Trainer']) == {'CsvExampleGen', 'Trainer', 'Trainer.onnx'}
    trainer.with_id('train')  # the export's id follows the Trainer's
    assert exporter.id == 'train.onnx' 


WARM_MODULE = '''
import os

def run_fn(fn_args):
    with open(os.path.join(fn_args.model_run_dir, 'base_model.txt'), 'w') as f:
        f.write(str(fn_args.base_model))
    os.makedirs(fn_args.serving_model_dir, exist_ok=True)
    with open(os.path.join(fn_args.serving_model_dir, 'saved_model.pb'), 'w') as f:
        f.write('a stand-in model')
'''


def test_warm_start_from_the_model_in_production(tmp_path):
    """fn_args.base_model is the SavedModel in production at warm_start_from, as the destination says;
    a new push reruns the Trainer, an unchanged destination keeps it cached."""
    from sluice.components import CsvExampleGen
    from sluice.components.production.changes import promote

    dest, url = tmp_path / 'serving', f'sqlite:///{tmp_path}/m.db'
    module = tmp_path / 'warm_module.py'
    module.write_text(WARM_MODULE)
    penguins = os.path.join(os.path.dirname(__file__), '..', '..', 'pipelines', 'examples', 'penguin', 'data')

    def train():
        gen = CsvExampleGen(input_base=penguins)
        trainer = Trainer(examples=gen.outputs['examples'], module_file=str(module), export_onnx=False,
                          warm_start_from=str(dest))
        result = LocalDagRunner(progress=False).run(Pipeline('warm', str(tmp_path / 'root'), [gen, trainer],
                                                             metadata=url))
        assert result.state == 'COMPLETE', {k: n.error for k, n in result.nodes.items()}
        with open(os.path.join(result['Trainer'].outputs['model_run'].uri, 'base_model.txt')) as f:
            return result['Trainer'].state, f.read()

    assert train() == ('COMPLETE', 'None')  # nothing in production yet
    made = tmp_path / 'by_hand' / 'Format-Serving'
    made.mkdir(parents=True)
    (made / 'saved_model.pb').write_text('a model put in production by hand')
    version, _ = promote(str(dest), str(made.parent), {}, 'a test')
    version = version.number
    state, base = train()
    assert state == 'COMPLETE' and base == os.path.join(str(dest), str(version))  # the SavedModel at the root
    assert os.path.isfile(os.path.join(base, 'saved_model.pb'))
    assert train()[0] == 'CACHED'


# -- a serving signature of dense per-feature inputs (TFX's penguin_simple), and export_onnx='if_possible' ---
DENSE_MODULE = os.path.join(os.path.dirname(__file__), '..', 'tfx_style', 'dense_penguin_module.py')
MEASUREMENTS = ['body_mass_g', 'culmen_depth_mm', 'culmen_length_mm', 'flipper_length_mm']  # the signature's order
LGAMMA_REFUSAL = ('serving_default(body_mass_g: float32 [None, 1], culmen_depth_mm: float32 [None, 1], '
                  'culmen_length_mm: float32 [None, 1], flipper_length_mm: float32 [None, 1]) cannot be exported '
                  'to ONNX: tf2onnx has no conversion for the TensorFlow op(s) Lgamma. Set export_onnx=False to '
                  "train without the ONNX copy, or export_onnx='if_possible' to keep it only when the export works.")


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture(scope='module')
def dense_run(tmp_path_factory):
    """One small pipeline: the penguin CSV, then three Trainers on the penguin_simple-shaped module: its
    Keras default signature with the ONNX export (default), and a signature tf2onnx cannot convert with
    export_onnx='if_possible' and with the default."""
    from sluice.components import CsvExampleGen, Pusher
    from sluice.metadata import MetadataStore

    root = tmp_path_factory.mktemp('dense')
    url = f'sqlite:///{root}/m.db'
    penguins = os.path.join(os.path.dirname(__file__), '..', '..', 'pipelines', 'examples', 'penguin', 'data')
    gen = CsvExampleGen(input_base=penguins)

    def trainer(node_id, **kwargs):
        return Trainer(examples=gen.outputs['examples'], module_file=DENSE_MODULE, train_steps=4, eval_steps=1,
                       **kwargs).with_id(node_id)

    unconvertible = {'unconvertible': True}
    skipping, strict = (trainer('skipping', custom_config=unconvertible, export_onnx='if_possible'),
                        trainer('strict', custom_config=unconvertible))
    nodes = [gen, trainer('dense'), skipping, strict,
             # exported, but no difference is within a negative tolerance: the check fails
             trainer('unchecked', export_onnx='if_possible', onnx_tolerance=-1.0),
             # no blessing: only the ONNX copy stands between these models and production
             *(Pusher(model=t.outputs['model'], push_destination=str(root / 'serving' / t.id)).with_id(f'{t.id}_push')
               for t in (skipping, strict))]
    logged = _Records()
    logger = logging.getLogger('sluice.components.onnx_exporter')
    logger.addHandler(logged)
    try:
        # one node at a time: the exports run in this process, where the warnings are caught (with nodes at
        # once they run in processes of their own, apart_when_parallel)
        result = LocalDagRunner(progress=False, parallel=1).run(Pipeline('dense', str(root / 'root'), nodes,
                                                                         metadata=url))
    finally:
        logger.removeHandler(logged)
    store = MetadataStore(url)
    models = {k: (store.node_outputs(result.run_id, f'{k}.onnx') or {}).get('onnx_model', [None])[0]
              for k in ('dense', 'skipping', 'strict', 'unchecked')}
    return result, models, logged.records


def _eval_features(examples_uri):
    """The eval rows of the CSV as the dense signature takes them: {feature: float32 [n, 1]}."""
    import glob

    import tensorflow as tf

    files = sorted(glob.glob(os.path.join(examples_uri, 'Split-eval', '*')))
    records = list(tf.data.TFRecordDataset(files, compression_type='GZIP').as_numpy_iterator())
    spec = {m: tf.io.FixedLenFeature([1], tf.float32) for m in MEASUREMENTS}
    return {k: v.numpy() for k, v in tf.io.parse_example(records, spec).items()}


def test_a_dense_signature_is_exported_with_its_own_inputs_and_checked(dense_run):
    """penguin_simple's serving_default (one float32 [None, 1] tensor per feature): the ONNX model takes
    those tensors, by their names, and answers as the SavedModel does on the eval rows."""
    import numpy as np
    import tensorflow as tf

    from sluice.components.onnx_export import make_session
    from sluice.components.onnx_export.loading import load

    result, models, _ = dense_run
    assert result['dense.onnx'].state == 'COMPLETE', result['dense.onnx'].error
    model = models['dense']
    assert model.get('model_id') == result['dense'].outputs['model'].id
    onnx_file = os.path.join(model.uri, 'model.onnx')
    assert os.path.isfile(onnx_file)
    session = make_session(onnx_file)
    assert [(i.name, i.type, i.shape) for i in session.get_inputs()] == [
        (m, 'tensor(float)', ['batch', 1]) for m in MEASUREMENTS]
    assert 0 <= model.get('onnx_max_abs_diff') <= 1e-4 and model.get('onnx_skipped') is None
    assert [d['name'] for d in json.loads(model.get('onnx_inputs'))] == MEASUREMENTS

    # The check, made again here: the SavedModel fed its dense inputs, the ONNX model the same rows.
    features = _eval_features(result['CsvExampleGen'].outputs['examples'].uri)
    assert len(features['body_mass_g']) > 20
    saved_model = os.path.join(result['dense'].outputs['model'].uri, 'Format-Serving')
    serving = tf.saved_model.load(saved_model).signatures['serving_default']
    expected = {k: v.numpy() for k, v in serving(**{k: tf.constant(v) for k, v in features.items()}).items()}
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, features)))
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert np.abs(got[name] - value).max() <= 1e-4

    # A server loads it (warm-up on the rows the export stored) and answers a row by the features' names.
    served = load(model.uri, 1, '')
    row = {k: float(v[0, 0]) for k, v in features.items()}
    answer, _ = served.predict({'instances': [row]})
    [name] = expected
    assert np.abs(np.array(answer['predictions'][0]) - expected[name][0]).max() <= 1e-4


def test_if_possible_records_why_and_completes_without_onnx(dense_run):
    result, models, logged = dense_run
    assert result['skipping.onnx'].state == 'COMPLETE', result['skipping.onnx'].error
    model = models['skipping']
    assert os.path.isfile(os.path.join(result['skipping'].outputs['model'].uri, 'Format-Serving', 'saved_model.pb'))
    assert os.listdir(model.uri) == []
    assert model.get('onnx_skipped') == LGAMMA_REFUSAL
    assert model.get('onnx_max_abs_diff') is None and model.get('onnx_inputs') is None
    warnings = [r.getMessage() for r in logged if r.levelno >= logging.WARNING]
    assert sorted(warnings) == sorted(
        f"{node}.onnx: no ONNX copy of model #{result[node].outputs['model'].id} (export_onnx='if_possible', "
        f"recorded as the OnnxModel's onnx_skipped): {models[node].get('onnx_skipped')}"
        for node in ('skipping', 'unchecked'))


def test_if_possible_keeps_no_onnx_copy_that_fails_its_check(dense_run):
    result, models, _ = dense_run
    assert result['unchecked.onnx'].state == 'COMPLETE', result['unchecked.onnx'].error
    model = models['unchecked']
    assert os.listdir(model.uri) == []
    assert re.fullmatch(r"The ONNX export \(inputs body_mass_g, culmen_depth_mm, culmen_length_mm, flipper_length_mm\) "
                        r"differs from the SavedModel by up to [0-9.e-]+ on the 'eval' examples \(tolerance "
                        r"onnx_tolerance=-1\)\. Set export_onnx=False .*", model.get('onnx_skipped'))
    assert model.get('onnx_max_abs_diff') is None and model.get('onnx_inputs') is None


def test_by_default_an_unconvertible_signature_fails_the_export_and_nothing_is_pushed(dense_run):
    result, models, _ = dense_run
    assert result['strict'].state == 'COMPLETE'
    assert result['strict.onnx'].state == 'FAILED' and models['strict'] is None
    assert LGAMMA_REFUSAL in result['strict.onnx'].error
    # The Pusher of that model waits for its ONNX copy: it never ran, and its destination is empty.
    assert result.state == 'FAILED'
    assert result.nodes.get('strict_push') is None or result['strict_push'].state not in ('COMPLETE', 'CACHED')
    root = pathlib.Path(result['strict'].outputs['model'].uri).parents[3]  # <root>/root/strict/model/<id>
    destination = root / 'serving' / 'strict'
    assert (root / 'serving' / 'skipping').is_dir()  # (where the other Pusher pushed)
    assert not destination.exists() or not [v for v in os.listdir(destination) if v.isdigit()]


def test_a_model_whose_export_was_skipped_is_pushed_without_an_onnx_copy(dense_run):
    """export_onnx='if_possible': the push holds the SavedModel alone (sluice serve then says why it
    cannot serve it)."""
    result, _, _ = dense_run
    pushed = result['skipping_push'].outputs['pushed_model']
    assert pushed.get('pushed') == 1, pushed.get('reason')
    files = os.listdir(pushed.get('pushed_destination'))
    assert 'saved_model.pb' in files and 'model.onnx' not in files and 'serving_samples.json' not in files


def test_export_onnx_takes_true_false_or_if_possible(tmp_path):
    from sluice.components import CsvExampleGen
    from sluice.components.component import WiringError

    gen = CsvExampleGen(input_base=str(tmp_path))
    for value in (True, False, 'if_possible'):
        trainer = Trainer(examples=gen.outputs['examples'], module_file=DENSE_MODULE, export_onnx=value)
        assert trainer.export_onnx == value
        assert (trainer.onnx_exporter.parameters['export_onnx'] if value else trainer.onnx_exporter) == (value or None)
    with pytest.raises(WiringError, match=r"Trainer\(export_onnx=\.\.\.\): export_onnx must be True, False or "
                                          r"'if_possible', got 'maybe'"):
        Trainer(examples=gen.outputs['examples'], module_file=DENSE_MODULE, export_onnx='maybe')
