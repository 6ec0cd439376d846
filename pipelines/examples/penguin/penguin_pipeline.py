"""The penguin example: Palmer penguins, from CSV to a model in production behind the gate.

    sluice run pipelines/examples/penguin/penguin_pipeline.py

``data/`` holds the clean data set (334 penguins, measurements scaled to [0, 1]); ``skewed/`` a
copy with a bad value, which the schema check rejects before any training. The model is pushed to
``<root>/serving/<version>/`` only when it is at least as accurate as the model already there.
"""
from __future__ import annotations

import os

from sluice.components import (CsvExampleGen, Evaluator, ExampleValidator, ImportSchemaGen, InfraValidator,
                               ModelValidator, Pusher, SchemaGen, StatisticsGen, Trainer, Transform)
from sluice import Pipeline

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, 'data')
MODULE = os.path.join(HERE, 'penguin_module.py')
CURATED_SCHEMA = os.path.join(HERE, 'schema', 'schema.pbtxt')


def create_pipeline(root: str = 'runs/penguin', data: str = DATA, module_file: str = MODULE,
                    schema_file: str | None = CURATED_SCHEMA, train_steps: int = 100,
                    min_accuracy: float = 0.6, metadata: str | None = None,
                    beam_pipeline_args: list[str] | None = None, infra_validation: bool = False,
                    push_destination: str | None = None) -> Pipeline:
    """``schema_file=None`` infers the schema with SchemaGen instead of using the curated one;
    ``infra_validation=True`` adds an InfraValidator (the model must load and answer in ``sluice serve``,
    20 eval examples among its requests, before it is pushed). ``root``, ``data`` and ``push_destination`` (default ``<root>/serving``) may
    be object store URLs (``s3://bucket/prefix``)."""
    gen = CsvExampleGen(input_base=data, split_ratios={'train': 2, 'eval': 1})
    stats = StatisticsGen(examples=gen.outputs['examples'])
    if schema_file:
        schema = ImportSchemaGen(schema_file=schema_file)
    else:
        schema = SchemaGen(statistics=stats.outputs['statistics'], infer_feature_shape=True)
    check = ExampleValidator(statistics=stats.outputs['statistics'], schema=schema.outputs['schema'])
    transform = Transform(examples=gen.outputs['examples'], schema=schema.outputs['schema'],
                          module_file=module_file)
    trainer = Trainer(module_file=module_file, examples=transform.outputs['transformed_examples'],
                      transform_graph=transform.outputs['transform_graph'], schema=schema.outputs['schema'],
                      train_steps=train_steps, eval_steps=5)
    evaluator = Evaluator(examples=gen.outputs['examples'], model=trainer.outputs['model'],
                          eval_config={'label_key': 'species', 'metrics': ['SparseCategoricalAccuracy'],
                                       'slices': [[], ['species']]})
    validator = ModelValidator(model=trainer.outputs['model'], evaluation=evaluator.outputs['evaluation'],
                               thresholds={'sparse_categorical_accuracy': {
                                   'lower_bound': min_accuracy,
                                   'change': {'direction': 'higher', 'absolute': -1e-10}}},
                               no_baseline='bless')
    infra = InfraValidator(model=trainer.outputs['model'], examples=gen.outputs['examples'], split_name='eval',
                           num_examples=20) if infra_validation else None
    pusher = Pusher(model=trainer.outputs['model'], blessing=validator.outputs['blessing'],
                    infra_blessing=infra.outputs['blessing'] if infra else None,
                    push_destination=push_destination or f"{root.rstrip('/')}/serving")
    # Nothing is trained on data that failed validation: Transform waits for ExampleValidator.
    transform.add_upstream_node(check)
    return Pipeline(name='penguin', pipeline_root=root,
                    components=[gen, stats, schema, check, transform, trainer, evaluator, validator,
                                *([infra] if infra else []), pusher],
                    metadata=metadata, enable_cache=True,
                    beam_pipeline_args=beam_pipeline_args or ['--direct_num_workers=1'])
