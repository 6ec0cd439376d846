"""Four penguin pipelines written in TFX's style, one per shape of TFX's getting-started tutorials,
with ``from sluice.tfx import v1 as tfx`` as their only Sluice line:

- ``simple``: CsvExampleGen -> Trainer -> Pusher (no blessing: nothing gates the push);
- ``tfdv``:   + StatisticsGen, SchemaGen and ExampleValidator, the Trainer reading the inferred schema;
- ``tfma``:   + a LatestBlessedModelStrategy resolver, an Evaluator with thresholds, a gated Pusher;
- ``tft``:    + an Importer'd schema and a Transform whose graph the Trainer applies.

Each ``create_<shape>(root)`` returns a ``tfx.dsl.Pipeline``; the tests wrap them in pipeline files.
"""
from __future__ import annotations

import os

from sluice.tfx import v1 as tfx

HERE = os.path.dirname(os.path.abspath(__file__))
PENGUIN = os.path.join(os.path.dirname(os.path.dirname(HERE)), 'pipelines', 'examples', 'penguin')
DATA = os.path.join(PENGUIN, 'data')
SCHEMA_DIR = os.path.join(PENGUIN, 'schema')  # holds schema.pbtxt, as an Importer's source_uri does in TFX
MODULE = os.path.join(HERE, 'penguin_trainer.py')
TRAIN_STEPS, EVAL_STEPS = 8, 2


def _pipeline(name, root, components):
    return tfx.dsl.Pipeline(
        pipeline_name=name, pipeline_root=root, components=components, enable_cache=True,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            os.path.join(root, 'metadata.db')),
        beam_pipeline_args=['--direct_num_workers=1'])


def _destination(root):
    return tfx.proto.PushDestination(
        filesystem=tfx.proto.PushDestination.Filesystem(base_directory=os.path.join(root, 'serving')))


def _trainer(examples, **kwargs):
    return tfx.components.Trainer(module_file=MODULE, examples=examples,
                                  train_args=tfx.proto.TrainArgs(num_steps=TRAIN_STEPS),
                                  eval_args=tfx.proto.EvalArgs(num_steps=EVAL_STEPS), **kwargs)


def create_simple(root):
    example_gen = tfx.components.CsvExampleGen(input_base=DATA)
    trainer = _trainer(example_gen.outputs['examples'])
    pusher = tfx.components.Pusher(model=trainer.outputs['model'], push_destination=_destination(root))
    return _pipeline('penguin-simple', root, [example_gen, trainer, pusher])


def create_tfdv(root):
    example_gen = tfx.components.CsvExampleGen(
        input_base=DATA,
        output_config=tfx.proto.Output(split_config=tfx.proto.SplitConfig(splits=[
            tfx.proto.SplitConfig.Split(name='train', hash_buckets=3),
            tfx.proto.SplitConfig.Split(name='eval', hash_buckets=1)])))
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs['examples'])
    schema_gen = tfx.components.SchemaGen(statistics=statistics_gen.outputs['statistics'], infer_feature_shape=True)
    example_validator = tfx.components.ExampleValidator(statistics=statistics_gen.outputs['statistics'],
                                                        schema=schema_gen.outputs['schema'])
    trainer = _trainer(example_gen.outputs['examples'], schema=schema_gen.outputs['schema'])
    pusher = tfx.components.Pusher(model=trainer.outputs['model'], push_destination=_destination(root))
    return _pipeline('penguin-tfdv', root,
                     [example_gen, statistics_gen, schema_gen, example_validator, trainer, pusher])


def eval_config(min_accuracy=0.4):
    import tensorflow_model_analysis as tfma

    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(label_key='species')],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=['species'])],
        metrics_specs=[tfma.MetricsSpec(
            metrics=[tfma.MetricConfig(class_name='SparseCategoricalAccuracy')],
            per_slice_thresholds={'sparse_categorical_accuracy': tfma.PerSliceMetricThresholds(thresholds=[
                tfma.PerSliceMetricThreshold(
                    slicing_specs=[tfma.SlicingSpec()],
                    threshold=tfma.MetricThreshold(
                        value_threshold=tfma.GenericValueThreshold(lower_bound={'value': min_accuracy}),
                        change_threshold=tfma.GenericChangeThreshold(
                            direction=tfma.MetricDirection.HIGHER_IS_BETTER, absolute={'value': -1e-10})))])})])


def create_tfma(root, min_accuracy=0.4):
    example_gen = tfx.components.CsvExampleGen(input_base=DATA)
    trainer = _trainer(example_gen.outputs['examples'])
    model_resolver = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id('latest_blessed_model_resolver')
    evaluator = tfx.components.Evaluator(examples=example_gen.outputs['examples'], model=trainer.outputs['model'],
                                         baseline_model=model_resolver.outputs['model'],
                                         eval_config=eval_config(min_accuracy))
    pusher = tfx.components.Pusher(model=trainer.outputs['model'], model_blessing=evaluator.outputs['blessing'],
                                   push_destination=_destination(root))
    return _pipeline('penguin-tfma', root, [example_gen, trainer, model_resolver, evaluator, pusher])


def create_tft(root):
    example_gen = tfx.components.CsvExampleGen(input_base=DATA)
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs['examples'])
    schema_importer = tfx.dsl.Importer(source_uri=SCHEMA_DIR, artifact_type=tfx.types.standard_artifacts.Schema
                                       ).with_id('schema_importer')
    example_validator = tfx.components.ExampleValidator(statistics=statistics_gen.outputs['statistics'],
                                                        schema=schema_importer.outputs['result'])
    transform = tfx.components.Transform(examples=example_gen.outputs['examples'],
                                         schema=schema_importer.outputs['result'], materialize=False,
                                         module_file=MODULE)
    trainer = _trainer(example_gen.outputs['examples'], transform_graph=transform.outputs['transform_graph'])
    pusher = tfx.components.Pusher(model=trainer.outputs['model'], push_destination=_destination(root))
    return _pipeline('penguin-tft', root, [example_gen, statistics_gen, schema_importer, example_validator,
                                           transform, trainer, pusher])
