"""The penguin example for data that keeps arriving: one span per delivery, trained on the last three.

    sluice watch pipelines/examples/penguin/penguin_spans_pipeline.py --every 10

Reads ``<root>/incoming/span-<N>/*.csv`` (drop a new ``span-<N>`` directory there to deliver data).
Each run ingests the newest span, checks it against the curated schema and for drift against the
previous span, trains on a window of the last three spans, measures the model on the newest span and
pushes it to ``<root>/serving/`` only if it is at least as accurate as the model already there.
"""
from __future__ import annotations

import os

from sluice.components import (CsvExampleGen, Evaluator, ExampleValidator, ImportSchemaGen, LatestSpans, ModelValidator,
                        Pusher, StatisticsGen, Trainer, Transform)
from sluice import Pipeline, Retry

HERE = os.path.dirname(os.path.abspath(__file__))
MODULE = os.path.join(HERE, 'penguin_module.py')
CURATED_SCHEMA = os.path.join(HERE, 'schema', 'schema.pbtxt')


def create_pipeline(root: str = 'runs/penguin-spans', incoming: str | None = None, window: int = 3,
                    train_steps: int = 100, metadata: str | None = None) -> Pipeline:
    gen = CsvExampleGen(input_base=incoming or os.path.join(root, 'incoming'), pattern='span-{SPAN}/*.csv',
                        split_ratios={'train': 2, 'eval': 1})
    stats = StatisticsGen(examples=gen.outputs['examples'])
    schema = ImportSchemaGen(schema_file=CURATED_SCHEMA)
    check = ExampleValidator(statistics=stats.outputs['statistics'], schema=schema.outputs['schema'],
                             drift_thresholds={'species': 0.3, 'body_mass_g': 0.3})
    examples = LatestSpans(gen, n=window)
    transform = Transform(examples=examples, schema=schema.outputs['schema'], module_file=MODULE)
    transform.add_upstream_node(check)
    trainer = Trainer(module_file=MODULE, examples=transform.outputs['transformed_examples'],
                      transform_graph=transform.outputs['transform_graph'], schema=schema.outputs['schema'],
                      train_steps=train_steps, eval_steps=5)
    evaluator = Evaluator(examples=gen.outputs['examples'], model=trainer.outputs['model'],
                          eval_config={'label_key': 'species', 'metrics': ['SparseCategoricalAccuracy']})
    validator = ModelValidator(model=trainer.outputs['model'], evaluation=evaluator.outputs['evaluation'],
                               thresholds={'sparse_categorical_accuracy': {
                                   'lower_bound': 0.6, 'change': {'direction': 'higher', 'absolute': -1e-10}}},
                               no_baseline='bless')
    pusher = Pusher(model=trainer.outputs['model'], blessing=validator.outputs['blessing'],
                    push_destination=os.path.join(root, 'serving'))
    return Pipeline(name='penguin-spans', pipeline_root=root,
                    components=[gen, stats, schema, check, examples, transform, trainer, evaluator, validator,
                                pusher],
                    metadata=metadata, retry=Retry(attempts=2, delay=5.0),
                    beam_pipeline_args=['--direct_num_workers=1'])
