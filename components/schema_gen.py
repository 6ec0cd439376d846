"""SchemaGen infers a schema from the train split's statistics; ImportSchemaGen uses a curated one.

    >>> schema = SchemaGen(statistics=stats.outputs['statistics'], infer_feature_shape=True)
    >>> schema = ImportSchemaGen(schema_file='schema/schema.pbtxt')

Both write ``schema.pbtxt`` (a tensorflow_metadata Schema in text format).
"""
from __future__ import annotations

import os

from components.component import Component, Input, Output, Parameter
from components.driver import Driver
from components.executor import Executor
from components.fingerprint import files_fingerprint
from components.statistics_gen import load_statistics
from metadata.artifact import ExampleStatistics, Schema

SCHEMA_FILE = 'schema.pbtxt'


def load_schema(schema: Schema | str) -> object:
    """Parse a schema artifact (or a schema.pbtxt path) into a Schema proto, with a clear error."""
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    path = schema if isinstance(schema, str) else os.path.join(schema.uri, SCHEMA_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'Schema file {path} does not exist.')
    with open(path, encoding='utf-8') as f:
        text = f.read()
    try:
        return text_format.Parse(text, schema_pb2.Schema())
    except text_format.ParseError as e:
        raise ValueError(f'Schema file {path} does not parse as a tensorflow_metadata Schema in text format: '
                         f'{e}. Fix it, or regenerate it with SchemaGen and edit the copy.') from None


def write_schema(schema_proto: object, schema: Schema) -> None:
    from google.protobuf import text_format

    with open(os.path.join(schema.uri, SCHEMA_FILE), 'w', encoding='utf-8') as f:
        f.write(text_format.MessageToString(schema_proto))


class SchemaGenExecutor(Executor):
    def run(self, *, statistics: ExampleStatistics, schema: Schema, infer_feature_shape: bool,
            split: str) -> None:
        import tensorflow_data_validation as tfdv

        if split not in statistics.split_names:
            raise ValueError(f"SchemaGen infers the schema from split '{split}', but the statistics have only "
                             f'{", ".join(statistics.split_names)}; pass split=... to choose one.')
        inferred = tfdv.infer_schema(load_statistics(statistics, split), infer_feature_shape=infer_feature_shape)
        write_schema(inferred, schema)


class SchemaGen(Component):
    """Infers a schema (types, presence, shapes, string domains) from the statistics of one split."""
    statistics = Input(ExampleStatistics)
    schema = Output(Schema)
    infer_feature_shape = Parameter(bool, default=True)
    split = Parameter(str, default='train')
    libraries = ('tensorflow-data-validation', 'tensorflow-metadata')
    executor = SchemaGenExecutor


class ImportSchemaGenDriver(Driver):
    def external_fingerprints(self) -> dict[str, str]:
        path = self.component.parameters['schema_file']
        return {'schema_file': files_fingerprint([path]) if os.path.isfile(path) else f'missing:{path}'}


class ImportSchemaGenExecutor(Executor):
    def run(self, *, schema_file: str, schema: Schema) -> None:
        write_schema(load_schema(schema_file), schema)


class ImportSchemaGen(Component):
    """Uses a curated schema file (text format) instead of an inferred one."""
    schema_file = Parameter(str, path=True)
    schema = Output(Schema)
    libraries = ('tensorflow-metadata', 'protobuf')
    executor = ImportSchemaGenExecutor
    driver = ImportSchemaGenDriver
