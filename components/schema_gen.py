"""SchemaGen infers a schema from the train split's statistics; ImportSchemaGen uses a curated one.

    >>> schema = SchemaGen(statistics=stats.outputs['statistics'], infer_feature_shape=True)
    >>> schema = ImportSchemaGen(schema_file='schema/schema.pbtxt')

Both write ``schema.pbtxt`` (a tensorflow_metadata Schema in text format).

The inferred schema accepts every split it was inferred from. TFDV infers it from one split
(``tfdv.infer_schema``), then ``tfdv.update_schema`` relaxes it for each other split (string values
seen only there join the domain, shapes are dropped where a feature is missing in some rows, new
features are added), and presence is set from what was observed in all splits:

- a feature present in every example of every split must stay so (``min_fraction: 1``);
- otherwise ``min_fraction`` is half the lowest fraction observed in a split, rounded down to a
  hundredth (a column that vanishes, or mostly does, is an anomaly; normal variation is not), and
  ``min_count`` is 1 while that is above 0, else 0 (a feature seen in only a handful of rows, or in
  one split only, may be absent);
- a feature that ``update_schema`` would deprecate because a split lacks it entirely is kept (a
  deprecated feature would vanish from Transform's feature spec), with ``min_count: 0``.

Ranges are never inferred: a value out of a range you curated (``ImportSchemaGen``) still blocks.
"""
from __future__ import annotations

import math
import os
from typing import Any

from sluice.components.component import Component, Input, Output, Parameter
from sluice.components.driver import Driver
from sluice.components.executor import Executor
from sluice.components.fingerprint import files_fingerprint
from sluice.components.statistics_gen import load_statistics
from sluice.metadata.artifact import ExampleStatistics, Schema

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
    imports = ('tensorflow', 'tensorflow_data_validation')

    def run(self, *, statistics: ExampleStatistics, schema: Schema, infer_feature_shape: bool,
            split: str) -> None:
        import tensorflow_data_validation as tfdv

        if split not in statistics.split_names:
            raise ValueError(f"SchemaGen infers the schema from split '{split}', but the statistics have only "
                             f'{", ".join(statistics.split_names)}; pass split=... to choose one.')
        by_split = {name: load_statistics(statistics, name) for name in statistics.split_names}
        inferred = tfdv.infer_schema(by_split[split], infer_feature_shape=infer_feature_shape)
        inferred = accept_own_data(inferred, by_split, split)
        write_schema(inferred, schema)
        left = {name: [f"feature '{k}': {v.short_description}" for k, v in sorted(
                    tfdv.validate_statistics(stats, inferred).anomaly_info.items())]
                for name, stats in by_split.items()}
        left = {k: v for k, v in left.items() if v}
        schema.set('inferred_from', split)
        if left:  # should not happen; say so rather than hand on a schema that rejects its own data
            schema.set('rejects_own_data', left)
            print(f'SchemaGen: the inferred schema still rejects its own data: {left}', flush=True)


def feature_presence(statistics: Any) -> tuple[int, dict[str, int]]:
    """(number of examples, feature name -> examples with a value) of a DatasetFeatureStatisticsList."""
    if not statistics.datasets:
        return 0, {}
    dataset = statistics.datasets[0]
    out = {}
    for f in dataset.features:
        name = '.'.join(f.path.step) if f.HasField('path') else f.name
        stats = f.WhichOneof('stats')
        common = getattr(getattr(f, stats), 'common_stats', None) if stats else None
        out[name] = int(common.num_non_missing) if common is not None else 0
    return int(dataset.num_examples), out


def accept_own_data(schema_proto: Any, by_split: dict[str, Any], inferred_from: str) -> Any:
    """Relax a schema inferred from one split so that it accepts every split (see the module doc)."""
    import tensorflow_data_validation as tfdv
    from tensorflow_metadata.proto.v0 import schema_pb2

    stages = {f.name: f.lifecycle_stage for f in schema_proto.feature}
    for name, stats in by_split.items():
        if name != inferred_from:
            schema_proto = tfdv.update_schema(schema_proto, stats)
    fractions: dict[str, list[float]] = {}
    for stats in by_split.values():
        total, present = feature_presence(stats)
        for feature in schema_proto.feature:
            fractions.setdefault(feature.name, []).append(present.get(feature.name, 0) / total if total else 0.0)
    for feature in schema_proto.feature:
        if feature.lifecycle_stage == schema_pb2.DEPRECATED and stages.get(feature.name) != schema_pb2.DEPRECATED:
            feature.ClearField('lifecycle_stage')  # missing from a whole split: optional, not gone
        seen = fractions.get(feature.name) or [0.0]
        if min(seen) >= 1.0:
            continue
        feature.ClearField('shape')  # missing in some rows: it reaches Transform as a SparseTensor
        lowest = min(seen)
        floor = math.floor(lowest / 2 * 100) / 100
        feature.presence.Clear()
        if floor > 0:
            feature.presence.min_fraction = floor
        feature.presence.min_count = 1 if floor > 0 else 0
    return schema_proto


class SchemaGen(Component):
    """Infers a schema (types, presence, shapes, string domains) from the statistics of one split
    (``split``, default train), relaxed so that it accepts every split of those statistics."""
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
