"""The penguin example: Palmer penguins measurements, checked against a curated schema.

    sluice run pipelines/examples/penguin/penguin_pipeline.py

``data/`` holds the clean data set (334 penguins, measurements scaled to [0, 1]); ``skewed/`` a
copy with a bad value, which the schema check rejects: run with ``data='.../skewed'`` to see it.
"""
from __future__ import annotations

import os

from components import CsvExampleGen, ExampleValidator, ImportSchemaGen, SchemaGen, StatisticsGen
from pipelines import Pipeline

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, 'data')
CURATED_SCHEMA = os.path.join(HERE, 'schema', 'schema.pbtxt')


def create_pipeline(root: str = 'runs/penguin', data: str = DATA, schema_file: str | None = CURATED_SCHEMA,
                    metadata: str | None = None, beam_pipeline_args: list[str] | None = None) -> Pipeline:
    """``schema_file=None`` infers the schema with SchemaGen instead of using the curated one."""
    gen = CsvExampleGen(input_base=data, split_ratios={'train': 2, 'eval': 1})
    stats = StatisticsGen(examples=gen.outputs['examples'])
    if schema_file:
        schema = ImportSchemaGen(schema_file=schema_file)
    else:
        schema = SchemaGen(statistics=stats.outputs['statistics'], infer_feature_shape=True)
    check = ExampleValidator(statistics=stats.outputs['statistics'], schema=schema.outputs['schema'])
    return Pipeline(name='penguin', pipeline_root=root, components=[gen, stats, schema, check],
                    metadata=metadata, enable_cache=True,
                    beam_pipeline_args=beam_pipeline_args or ['--direct_num_workers=1'])
