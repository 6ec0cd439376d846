"""ImportExampleGen: TFRecord files of tf.Example in (``.gz`` read as gzip), split by hash; a file that
is not a TFRecord file, or a record that is not a tf.Example, fails with the file named.
"""
from __future__ import annotations

import os
from typing import Any, Iterable

from sluice.components.example_gen.base import (MAX_REPORTED_PROBLEMS, FileBasedExampleGen, SplitPlan,
                                                record_selection, write_splits)
from sluice.components.example_gen.spans import DataError, select_inputs
from sluice.components.executor import Executor
from sluice.metadata.artifact import Examples


def _check_example(element: tuple[str, bytes]) -> dict:
    from tensorflow.core.example import example_pb2

    filename, record = element
    try:
        example_pb2.Example.FromString(record)
    except Exception:  # protobuf raises DecodeError, or RuntimeWarning-ish errors on garbage
        return {'file': filename, 'problem': 'holds a record that is not a serialized tf.Example'}
    return {'file': filename, 'raw': record, 'example': record}


class ImportExampleGenExecutor(Executor):
    def run(self, *, input_base: str, split_ratios: dict, examples: Examples, pattern: str | None = None,
            span: Any = None, span_version: int | None = None, input_splits: dict | None = None) -> None:
        import apache_beam as beam

        pattern = pattern or ImportExampleGen.input_pattern
        selected, by_split = select_inputs(input_base, pattern, input_splits or {}, span, span_version,
                                           'ImportExampleGen')
        plan = SplitPlan(split_ratios, by_split)
        files = selected.files
        problems_path = os.path.join(self.tmp_dir, 'problems')

        def read_file(path: str) -> Iterable[tuple[str, bytes]]:
            compression = 'GZIP' if path.endswith('.gz') else ''
            import tensorflow as tf
            try:
                for record in tf.data.TFRecordDataset(path, compression_type=compression).as_numpy_iterator():
                    yield path, bytes(record)
            except tf.errors.DataLossError as e:
                raise DataError(f'ImportExampleGen: {path} is not a readable TFRecord file '
                                f'({"gzip" if compression else "uncompressed"}): {e.message}') from None

        with self.beam_pipeline() as p:
            records = (p | 'Files' >> beam.Create(files) | 'Read' >> beam.FlatMap(read_file)
                       | 'Check' >> beam.Map(_check_example))
            _ = (records | 'Problems' >> beam.Filter(lambda r: 'problem' in r)
                 | 'Describe' >> beam.Map(lambda r: f"{r['file']} {r['problem']}")
                 | 'Distinct' >> beam.Distinct()
                 | 'WriteProblems' >> beam.io.WriteToText(problems_path, num_shards=1, shard_name_template=''))
            good = records | 'Good' >> beam.Filter(lambda r: 'example' in r)
            write_splits(p, good, plan, examples, key=lambda r: r['raw'])
        with open(problems_path) as f:
            problems = [line.strip() for line in f if line.strip()]
        if problems:
            raise DataError('ImportExampleGen: ' + '; '.join(problems[:MAX_REPORTED_PROBLEMS])
                            + '. Every file in input_base must hold TFRecords of tf.Example.')
        examples.set('split_names', plan.names)
        record_selection(examples, selected, input_base, pattern, input_splits)


class ImportExampleGen(FileBasedExampleGen):
    """Imports TFRecord files of tf.Example (``.gz`` files are read as gzip) and splits them by hash."""
    executor = ImportExampleGenExecutor
