"""Trainer: fn_args.working_dir is scratch space (not the Model), and the raw examples for the ONNX check
are found by what the upstream execution did, whatever its component type or node id."""
from __future__ import annotations

import os

from sluice.components import Component, Executor, Input, Output, Parameter, Trainer, Transform
from sluice.components.driver import PipelineInfo
from sluice.components.trainer import TrainerDriver, TrainerExecutor
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
        examples=examples, transform_graph=None, schema=None, base_model=None, raw_examples=None, model=model,
        model_run=model_run, module_file=str(module), train_steps=1, eval_steps=1, custom_config={},
        hyperparameters={}, train_split='train', eval_split='eval', export_onnx=False, onnx_tolerance=1e-4)
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
            transformed_examples: Examples, module_file: str, analyze_split: str) -> None:
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
    trainers = {
        'transformed': Trainer(module_file=str(module), examples=prep.outputs['transformed_examples'],
                               transform_graph=prep.outputs['transform_graph']).with_id('t1'),
        'sampled': Trainer(module_file=str(module), examples=sample.outputs['sampled']).with_id('t2'),
    }
    pipeline = Pipeline(name='p', pipeline_root=str(tmp_path / 'root'), components=[gen, schema, sample, prep],
                        metadata=':memory:')
    result = LocalDagRunner(progress=False).run(pipeline, store=store)
    assert result.state == 'COMPLETE'
    info = PipelineInfo(name='p', root=str(tmp_path / 'root'), run_id=result.run_id)
    sampled = result['Sample'].outputs['sampled']
    # the examples the Transform read, though its component type is 'MyTransform' and its node id 'prep'
    raw = TrainerDriver(trainers['transformed'], store, info).resolve_inputs()['raw_examples']
    assert raw.id == sampled.id
    # examples from a component that is not a transform are the raw examples themselves
    raw = TrainerDriver(trainers['sampled'], store, info).resolve_inputs()['raw_examples']
    assert raw.id == sampled.id


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
