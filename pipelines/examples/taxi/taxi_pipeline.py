"""The Chicago taxi example: trips with many empty cells, validated against a curated schema.

    sluice run pipelines/examples/taxi/taxi_pipeline.py

The data is a 15,002-trip sample of the City of Chicago's taxi trips (the sample TFX's taxi example
uses). It is provided by the City "as is"; this derived copy is not the City's official source.
"""
from __future__ import annotations

import os

from components import CsvExampleGen, ExampleValidator, ImportSchemaGen, SchemaGen, StatisticsGen
from pipelines import Pipeline

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, 'data')
CURATED_SCHEMA = os.path.join(HERE, 'schema', 'schema.pbtxt')


def create_pipeline(root: str = 'runs/taxi', data: str = DATA, schema_file: str | None = CURATED_SCHEMA,
                    metadata: str | None = None, beam_pipeline_args: list[str] | None = None) -> Pipeline:
    """``schema_file=None`` infers the schema with SchemaGen instead of using the curated one."""
    gen = CsvExampleGen(input_base=data)
    stats = StatisticsGen(examples=gen.outputs['examples'])
    if schema_file:
        schema = ImportSchemaGen(schema_file=schema_file)
    else:
        schema = SchemaGen(statistics=stats.outputs['statistics'], infer_feature_shape=False)
    check = ExampleValidator(statistics=stats.outputs['statistics'], schema=schema.outputs['schema'])
    return Pipeline(name='taxi', pipeline_root=root, components=[gen, stats, schema, check],
                    metadata=metadata, enable_cache=True,
                    beam_pipeline_args=beam_pipeline_args or ['--direct_num_workers=1'])
