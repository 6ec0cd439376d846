"""ExampleGen: CSV files (or TFRecords of tf.Example) in, gzipped TFRecords of tf.Example out.

    >>> gen = CsvExampleGen(input_base='data/penguins', split_ratios={'train': 2, 'eval': 1})

Rows stream through Beam (files are never held in memory). A first pass infers each column's type
(int, float or string; an empty cell is a missing value, never a zero), counts rows per split and
collects bad rows; a second pass writes ``Split-<name>/data_tfrecord-*.gz``. A row's split is decided
by a hash of its content, so the same data gives the same splits on every run and every machine.
The driver fingerprints the input files by content: editing or adding a file invalidates the cache,
touching one does not.
"""
from __future__ import annotations

import csv
import glob
import hashlib
import json
import os
from typing import Any, Iterable

from components.component import Component, Output, Parameter
from components.driver import Driver
from components.executor import Executor
from components.fingerprint import files_fingerprint
from metadata.artifact import Examples

MAX_REPORTED_PROBLEMS = 5


class DataError(ValueError):
    """The input data cannot be read as asked; the message names the file, the line and the fix."""


def _check_split_ratios(ratios: dict) -> None:
    if not ratios:
        raise ValueError("give at least one split, e.g. {'train': 2, 'eval': 1}")
    for name, weight in ratios.items():
        if not isinstance(name, str) or not name or not name.replace('_', '').replace('-', '').isalnum():
            raise ValueError(f'split name {name!r} must be letters, digits, _ or -')
        if not isinstance(weight, int) or isinstance(weight, bool) or weight <= 0:
            raise ValueError(f'the weight of split {name!r} must be a positive integer; got {weight!r}')


def split_of(content: bytes, ratios: list[tuple[str, int]]) -> int:
    """Index of the split a record goes to: a stable hash of its content over the weights."""
    bucket = int.from_bytes(hashlib.sha256(content).digest()[:8], 'big') % sum(w for _, w in ratios)
    for index, (_, weight) in enumerate(ratios):
        if bucket < weight:
            return index
        bucket -= weight
    raise AssertionError('unreachable')


def input_files(input_base: str, pattern: str, component: str) -> list[str]:
    if not os.path.isdir(input_base):
        hint = ' It is a file; pass the directory that holds it.' if os.path.isfile(input_base) else ''
        raise DataError(f'{component}: input_base {input_base} does not exist or is not a directory.{hint} '
                        f'Pass the directory that holds the {pattern} files.')
    files = sorted(f for f in glob.glob(os.path.join(input_base, pattern)) if os.path.isfile(f))
    if not files:
        raise DataError(f'{component}: no {pattern} files in {input_base}; put the data there or pass '
                        'another input_base.')
    return files


class ExampleGenDriver(Driver):
    """Adds the content of the input files to the cache key, and records which files were read."""

    def _files(self) -> list[str]:
        base = self.component.parameters['input_base']
        pattern = type(self.component).input_pattern
        return sorted(f for f in glob.glob(os.path.join(base, pattern)) if os.path.isfile(f))

    def external_fingerprints(self) -> dict[str, str]:
        return {'input_files': files_fingerprint(self._files(), root=self.component.parameters['input_base'])}

    def execution_properties(self) -> dict[str, Any]:
        return {'input_files': json.dumps(self._files())}


# -- CSV ------------------------------------------------------------------------------------------
def read_header(path: str) -> list[str]:
    with open(path, 'rb') as f:
        first = f.readline()
    if not first.strip():
        raise DataError(f'CsvExampleGen: {path} is empty (line 1 has no header); every CSV file needs a header '
                        'row naming its columns. Remove the file or add the header and rows.')
    try:
        text = first.decode('utf-8-sig')
    except UnicodeDecodeError as e:
        raise DataError(f'CsvExampleGen: {path} line 1 is not UTF-8 (byte {e.start + 1}); save the file as UTF-8.') from None
    header = next(csv.reader([text.rstrip('\r\n')]))
    header = [h.strip() for h in header]
    blank = [i + 1 for i, h in enumerate(header) if not h]
    if blank:
        raise DataError(f'CsvExampleGen: {path} line 1: column {blank[0]} of the header has no name; name every column.')
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise DataError(f'CsvExampleGen: {path} line 1: the header repeats {", ".join(dupes)}; column names must be unique.')
    return header


INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1
_KIND_ORDER = {None: 0, 'int': 1, 'float': 2, 'string': 3}


def value_kind(text: str) -> str:
    try:
        v = int(text)
        if INT64_MIN <= v <= INT64_MAX:
            return 'int'
    except ValueError:
        pass
    try:
        float(text)
        return 'float'
    except ValueError:
        return 'string'


def parse_line(element: tuple[str, bytes], n_columns: int) -> dict[str, Any]:
    """One CSV line -> its values, or the problem with it."""
    filename, raw = element
    try:
        text = raw.decode('utf-8')
    except UnicodeDecodeError as e:
        return {'file': filename, 'raw': raw, 'problem': f'is not UTF-8 (byte {e.start + 1} of the line)'}
    if not text.strip():
        return {'file': filename, 'raw': raw, 'blank': True}
    try:
        values = next(csv.reader([text]))
    except csv.Error as e:
        return {'file': filename, 'raw': raw, 'problem': f'is not valid CSV ({e})'}
    if len(values) != n_columns:
        return {'file': filename, 'raw': raw,
                'problem': f'has {len(values)} fields but the header has {n_columns}'}
    return {'file': filename, 'raw': raw, 'values': values}


class InferColumns:
    """A CombineFn (built lazily so Beam is imported only inside executors): column kinds, row
    counts per split, and the first few bad rows."""

    @staticmethod
    def make(n_columns: int, ratios: list[tuple[str, int]]) -> Any:
        import apache_beam as beam

        class _Combine(beam.CombineFn):
            def create_accumulator(self) -> dict:
                return {'kinds': [None] * n_columns, 'splits': [0] * len(ratios), 'problems': []}

            def add_input(self, acc: dict, row: dict) -> dict:
                if 'problem' in row:
                    if len(acc['problems']) < MAX_REPORTED_PROBLEMS:
                        acc['problems'].append((row['file'], row['raw'], row['problem']))
                    return acc
                if 'values' not in row:
                    return acc
                kinds = acc['kinds']
                for i, value in enumerate(row['values']):
                    if value != '' and kinds[i] != 'string':
                        kind = value_kind(value)
                        if _KIND_ORDER[kind] > _KIND_ORDER[kinds[i]]:
                            kinds[i] = kind
                acc['splits'][split_of(row['raw'], ratios)] += 1
                return acc

            def merge_accumulators(self, accs: Iterable[dict]) -> dict:
                out = self.create_accumulator()
                for acc in accs:
                    for i, kind in enumerate(acc['kinds']):
                        if _KIND_ORDER[kind] > _KIND_ORDER[out['kinds'][i]]:
                            out['kinds'][i] = kind
                    out['splits'] = [a + b for a, b in zip(out['splits'], acc['splits'])]
                    out['problems'] = (out['problems'] + acc['problems'])[:MAX_REPORTED_PROBLEMS]
                return out

            def extract_output(self, acc: dict) -> dict:
                return acc

        return _Combine()


def to_example(values: list[str], header: list[str], kinds: list[str | None]) -> bytes:
    from tensorflow.core.example import example_pb2

    example = example_pb2.Example()
    for name, kind, value in zip(header, kinds, values):
        if value == '':
            continue  # missing: the feature is absent, not zero
        feature = example.features.feature[name]
        if kind == 'int':
            feature.int64_list.value.append(int(value))
        elif kind == 'float':
            feature.float_list.value.append(float(value))
        else:
            feature.bytes_list.value.append(value.encode('utf-8'))
    return example.SerializeToString()


def line_number(path: str, raw: bytes) -> int | None:
    """The 1-based line of ``path`` whose content is ``raw`` (only used to report a bad row)."""
    with open(path, 'rb') as f:
        for number, line in enumerate(f, start=1):
            if line.rstrip(b'\r\n') == raw.rstrip(b'\r\n'):
                return number
    return None


def _write_splits(p: Any, records: Any, ratios: list[tuple[str, int]], examples: Examples,
                  key: Any) -> None:
    """Partition serialized examples by split (hash of ``key(record)``) and write gzipped TFRecords."""
    import apache_beam as beam

    parts = records | 'Split' >> beam.Partition(lambda r, n: split_of(key(r), ratios), len(ratios))
    for index, (name, _) in enumerate(ratios):
        directory = examples.split_uri(name)
        os.makedirs(directory, exist_ok=True)
        _ = (parts[index] | f'Serialize[{name}]' >> beam.Map(lambda r: r['example'])
             | f'Write[{name}]' >> beam.io.WriteToTFRecord(
                 os.path.join(directory, 'data_tfrecord'), file_name_suffix='.gz',
                 compression_type=beam.io.filesystem.CompressionTypes.GZIP))


class CsvExampleGenExecutor(Executor):
    def run(self, *, input_base: str, split_ratios: dict, examples: Examples) -> None:
        import apache_beam as beam

        files = input_files(input_base, '*.csv', 'CsvExampleGen')
        headers = {f: read_header(f) for f in files}
        header = headers[files[0]]
        for f, h in headers.items():
            if h != header:
                raise DataError(f'CsvExampleGen: the header of {f} ({",".join(h)}) differs from the header of '
                                f'{files[0]} ({",".join(header)}); all CSV files in {input_base} must have the '
                                'same columns in the same order.')
        ratios = list(split_ratios.items())
        pattern = os.path.join(input_base, '*.csv')
        summary_path = os.path.join(self.tmp_dir, 'csv_summary.json')

        def read(p: Any) -> Any:
            return (p | 'Read' >> beam.io.ReadFromTextWithFilename(pattern, skip_header_lines=1,
                                                                     coder=beam.coders.BytesCoder())
                      | 'Parse' >> beam.Map(parse_line, len(header)))

        # Pass 1: column kinds, rows per split, bad rows.
        with self.beam_pipeline() as p:
            _ = (read(p) | 'Infer' >> beam.CombineGlobally(InferColumns.make(len(header), ratios))
                 | 'ToJson' >> beam.Map(lambda acc: json.dumps(
                     {**acc, 'problems': [(f, r.decode('latin-1'), m) for f, r, m in acc['problems']]}))
                 | 'WriteSummary' >> beam.io.WriteToText(summary_path, num_shards=1, shard_name_template=''))
        with open(summary_path) as f:
            summary = json.load(f)
        if summary['problems']:
            lines = []
            for path, raw, problem in summary['problems']:
                raw_bytes = raw.encode('latin-1')  # the line's bytes, carried losslessly through JSON
                number = line_number(path, raw_bytes)
                where = f'{path} line {number}' if number else path
                lines.append(f"  {where} {problem}: {raw_bytes.decode('utf-8', 'replace')[:120]!r}")
            raise DataError('CsvExampleGen: bad rows in the input (fix them, or remove them from the file):\n'
                            + '\n'.join(lines))
        total = sum(summary['splits'])
        if total == 0:
            raise DataError(f'CsvExampleGen: the CSV files in {input_base} have a header but no rows; add data rows.')
        kinds = summary['kinds']

        # Pass 2: write tf.Examples per split.
        def encode(row: dict) -> dict:
            return {'raw': row['raw'], 'example': to_example(row['values'], header, kinds)}

        with self.beam_pipeline() as p:
            rows = (read(p) | 'KeepRows' >> beam.Filter(lambda r: 'values' in r) | 'ToExample' >> beam.Map(encode))
            _write_splits(p, rows, ratios, examples, key=lambda r: r['raw'])

        examples.set('split_names', [name for name, _ in ratios])
        examples.set('span', 0)
        examples.set('version', 0)
        examples.set('row_counts', {name: n for (name, _), n in zip(ratios, summary['splits'])})
        examples.set('column_types', {h: (k or 'missing') for h, k in zip(header, kinds)})
        empty = [name for (name, _), n in zip(ratios, summary['splits']) if n == 0]
        if empty:
            raise DataError(f'CsvExampleGen: {total} rows left split(s) {", ".join(empty)} empty; add rows or '
                            'change split_ratios.')


class _ExampleGen(Component):
    """What every ExampleGen declares: files in ``input_base`` -> examples split by hash."""
    input_base = Parameter(str, path=True)
    split_ratios = Parameter(dict, default={'train': 2, 'eval': 1}, check=_check_split_ratios)
    examples = Output(Examples)
    driver = ExampleGenDriver
    input_pattern = '*'
    libraries = ('apache-beam', 'tensorflow')


class CsvExampleGen(_ExampleGen):
    """Reads every CSV file in ``input_base`` into gzipped TFRecords of tf.Example, split by hash."""
    executor = CsvExampleGenExecutor
    input_pattern = '*.csv'


# -- TFRecord -------------------------------------------------------------------------------------
def _check_example(element: tuple[str, bytes]) -> dict:
    from tensorflow.core.example import example_pb2

    filename, record = element
    try:
        example_pb2.Example.FromString(record)
    except Exception:  # protobuf raises DecodeError, or RuntimeWarning-ish errors on garbage
        return {'file': filename, 'problem': 'holds a record that is not a serialized tf.Example'}
    return {'file': filename, 'raw': record, 'example': record}


class ImportExampleGenExecutor(Executor):
    def run(self, *, input_base: str, split_ratios: dict, examples: Examples) -> None:
        import apache_beam as beam

        files = input_files(input_base, '*', 'ImportExampleGen')
        ratios = list(split_ratios.items())
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
            _write_splits(p, good, ratios, examples, key=lambda r: r['raw'])
        with open(problems_path) as f:
            problems = [line.strip() for line in f if line.strip()]
        if problems:
            raise DataError('ImportExampleGen: ' + '; '.join(problems[:MAX_REPORTED_PROBLEMS])
                            + '. Every file in input_base must hold TFRecords of tf.Example.')
        examples.set('split_names', [name for name, _ in ratios])
        examples.set('span', 0)
        examples.set('version', 0)


class ImportExampleGen(_ExampleGen):
    """Imports TFRecord files of tf.Example (``.gz`` files are read as gzip) and splits them by hash."""
    executor = ImportExampleGenExecutor


__all__ = ['CsvExampleGen', 'ImportExampleGen', 'DataError']
