"""The Chicago taxi example: predict a trip's tip from data with many empty cells.

    sluice run pipelines/examples/taxi/taxi_pipeline.py

The data is a 15,002-trip sample of the City of Chicago's taxi trips (the sample TFX's taxi example
uses). It is provided by the City "as is"; this derived copy is not the City's official source. The
transform fills in missing values and uses z-scores, buckets and vocabularies with out-of-vocabulary
buckets; the Trainer saves the model as a SavedModel, and its node Trainer.onnx exports it to ONNX
(checked against each other).
"""
from __future__ import annotations

import os

from sluice.components import (CsvExampleGen, Evaluator, ExampleValidator, ImportSchemaGen, ModelValidator, Pusher,
                        SchemaGen, StatisticsGen, Trainer, Transform)
from sluice import Pipeline

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, 'data')
MODULE = os.path.join(HERE, 'taxi_module.py')
CURATED_SCHEMA = os.path.join(HERE, 'schema', 'schema.pbtxt')


def create_pipeline(root: str = 'runs/taxi', data: str = DATA, module_file: str = MODULE,
                    schema_file: str | None = CURATED_SCHEMA, train_steps: int = 200,
                    max_mean_absolute_error: float = 1.0, metadata: str | None = None,
                    beam_pipeline_args: list[str] | None = None) -> Pipeline:
    """``schema_file=None`` infers the schema with SchemaGen instead of using the curated one."""
    gen = CsvExampleGen(input_base=data)
    stats = StatisticsGen(examples=gen.outputs['examples'])
    if schema_file:
        schema = ImportSchemaGen(schema_file=schema_file)
    else:
        schema = SchemaGen(statistics=stats.outputs['statistics'], infer_feature_shape=False)
    check = ExampleValidator(statistics=stats.outputs['statistics'], schema=schema.outputs['schema'])
    transform = Transform(examples=gen.outputs['examples'], schema=schema.outputs['schema'],
                          module_file=module_file).add_upstream_node(check)
    trainer = Trainer(module_file=module_file, examples=transform.outputs['transformed_examples'],
                      transform_graph=transform.outputs['transform_graph'], schema=schema.outputs['schema'],
                      train_steps=train_steps, eval_steps=10)
    evaluator = Evaluator(examples=gen.outputs['examples'], model=trainer.outputs['model'],
                          eval_config={'label_key': 'tips',
                                       'metrics': ['MeanAbsoluteError', 'MeanSquaredError'],
                                       'slices': [[], ['payment_type']]})
    validator = ModelValidator(model=trainer.outputs['model'], evaluation=evaluator.outputs['evaluation'],
                               thresholds={'mean_absolute_error': {
                                   'upper_bound': max_mean_absolute_error,
                                   'change': {'direction': 'lower', 'absolute': 1e-10}}},
                               no_baseline='bless')
    pusher = Pusher(model=trainer.outputs['model'], blessing=validator.outputs['blessing'],
                    push_destination=os.path.join(root, 'serving'))
    return Pipeline(name='taxi', pipeline_root=root,
                    components=[gen, stats, schema, check, transform, trainer, evaluator, validator, pusher],
                    metadata=metadata, enable_cache=True,
                    beam_pipeline_args=beam_pipeline_args or ['--direct_num_workers=1'])
