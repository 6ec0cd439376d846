"""Trainer: fn_args.working_dir is scratch space (not the Model), and the raw examples for the ONNX check
are found by what the upstream execution did, whatever its component type or node id."""
from __future__ import annotations

import os

from components import Component, Executor, Input, Output, Parameter, Trainer, Transform
from components.driver import PipelineInfo
from components.trainer import TrainerDriver, TrainerExecutor
from metadata import Examples, Model, Schema
from metadata.artifact import ModelRun, TransformGraph
from pipelines import LocalDagRunner, Pipeline

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
