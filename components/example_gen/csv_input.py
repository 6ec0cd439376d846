"""CsvExampleGen: CSV files in, tf.Examples out, in two passes over the rows (Beam): the first infers each
column's type (int, float or string; an empty cell is a missing value) and counts rows per split and
collects bad rows (wrong field count, not UTF-8, not CSV), reported with file and line; the second
writes the examples per split.
"""
from __future__ import annotations

import csv
import json
import os
from typing import Any, Iterable

from sluice.metadata import storage
from sluice.components.example_gen.base import (MAX_REPORTED_PROBLEMS, FileBasedExampleGen, SplitPlan,
                                                record_selection, write_splits)
from sluice.components.example_gen import example_wire
from sluice.components.example_gen.spans import DataError, select_inputs
from sluice.components.executor import Executor
from sluice.metadata.artifact import Examples


def read_header(path: str) -> list[str]:
    with storage.open_file(path, 'rb') as f:
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
    counts per split, and up to MAX_REPORTED_PROBLEMS bad rows (reported in file and line order;
    which ones, among more, depends on how the input was split between workers)."""

    @staticmethod
    def make(n_columns: int, plan: SplitPlan) -> Any:
        import apache_beam as beam

        class _Combine(beam.CombineFn):
            def create_accumulator(self) -> dict:
                return {'kinds': [None] * n_columns, 'splits': [0] * len(plan.ratios), 'problems': []}

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
                acc['splits'][plan.index(row, row['raw'])] += 1
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
    """A row as a serialized tf.Example (without TensorFlow: ``example_wire``); an empty cell is a
    missing value: the feature is absent, not zero. (The executor makes its encoder once.)"""
    return example_wire.encoder(header, kinds)(values)


def line_number(path: str, raw: bytes) -> int | None:
    """The 1-based line of ``path`` whose content is ``raw`` (only used to report a bad row)."""
    with storage.open_file(path, 'rb') as f:
        for number, line in enumerate(f, start=1):
            if line.rstrip(b'\r\n') == raw.rstrip(b'\r\n'):
                return number
    return None


class CsvExampleGenExecutor(Executor):
    def run(self, *, input_base: str, split_ratios: dict, examples: Examples, pattern: str | None = None,
            span: Any = None, span_version: int | None = None, input_splits: dict | None = None) -> None:
        import apache_beam as beam

        pattern = pattern or CsvExampleGen.input_pattern
        selected, by_split = select_inputs(input_base, pattern, input_splits or {}, span, span_version,
                                           'CsvExampleGen')
        plan = SplitPlan(split_ratios, by_split)
        files = selected.files
        headers = {f: read_header(f) for f in files}
        header = headers[files[0]]
        for f, h in headers.items():
            if h != header:
                raise DataError(f'CsvExampleGen: the header of {f} ({",".join(h)}) differs from the header of '
                                f'{files[0]} ({",".join(header)}); all CSV files in {input_base} must have the '
                                'same columns in the same order.')
        summary_path = os.path.join(self.tmp_dir, 'csv_summary.json')
        total = sum(storage.stat(f)['size'] for f in files)
        bundle = read_bundle_bytes(files, total)
        self.input_rows = estimated_rows(files, total)  # a small input is parsed in this process (Executor.input_rows)

        def read(p: Any) -> Any:
            return (p | 'Files' >> beam.Create(files)
                      | 'Read' >> beam.io.ReadAllFromText(skip_header_lines=1, with_filename=True,
                                                          coder=beam.coders.BytesCoder(),
                                                          desired_bundle_size=bundle)
                      | 'Parse' >> beam.Map(parse_line, len(header)))

        # Pass 1: column kinds, rows per split, bad rows.
        with self.beam_pipeline() as p:
            _ = (read(p) | 'Infer' >> beam.CombineGlobally(InferColumns.make(len(header), plan))
                 | 'ToJson' >> beam.Map(lambda acc: json.dumps(
                     {**acc, 'problems': [(f, r.decode('latin-1'), m) for f, r, m in acc['problems']]}))
                 | 'WriteSummary' >> beam.io.WriteToText(summary_path, num_shards=1, shard_name_template=''))
        with open(summary_path) as f:
            summary = json.load(f)
        if summary['problems']:
            found = []
            for path, raw, problem in summary['problems']:
                raw_bytes = raw.encode('latin-1')  # the line's bytes, carried losslessly through JSON
                found.append((path, line_number(path, raw_bytes) or 0, problem, raw_bytes))
            lines = [f"  {f'{path} line {number}' if number else path} {problem}: "
                     f"{raw.decode('utf-8', 'replace')[:120]!r}" for path, number, problem, raw in sorted(found)]
            raise DataError('CsvExampleGen: bad rows in the input (fix them, or remove them from the file):\n'
                            + '\n'.join(lines))
        total = sum(summary['splits'])
        if total == 0:
            which = f' ({selected.describe()})' if selected.has_spans else ''
            raise DataError(f'CsvExampleGen: the CSV files in {input_base}{which} have a header but no rows; '
                            'add data rows.')
        kinds = summary['kinds']

        # Pass 2: write tf.Examples per split.
        to_bytes = example_wire.encoder(header, kinds)

        def encode(row: dict) -> dict:
            return {'file': row['file'], 'raw': row['raw'], 'example': to_bytes(row['values'])}

        with self.beam_pipeline() as p:
            rows = (read(p) | 'KeepRows' >> beam.Filter(lambda r: 'values' in r) | 'ToExample' >> beam.Map(encode))
            write_splits(p, rows, plan, examples, key=lambda r: r['raw'])

        examples.set('split_names', plan.names)
        record_selection(examples, selected, input_base, pattern, input_splits)
        examples.set('row_counts', {name: n for name, n in zip(plan.names, summary['splits'])})
        examples.set('column_types', {h: (k or 'missing') for h, k in zip(header, kinds)})
        empty = [name for name, n in zip(plan.names, summary['splits']) if n == 0]
        if empty:
            fix = 'add rows to their files' if by_split else 'add rows or change split_ratios'
            raise DataError(f'CsvExampleGen: {total} rows left split(s) {", ".join(empty)} empty; {fix}.')


# Ranges of the input read apart: Beam's default (64 MiB) reads a file of less in one piece, so with
# several worker processes one of them parsed and wrote all of it (and a single output file per split
# left the readers downstream one file each). At least RANGES pieces of the input, none under 1 MiB.
RANGES, MIN_RANGE, MAX_RANGE = 16, 1 << 20, 64 << 20


def _total_bytes(files: list[str], total: int | None) -> int:
    return sum(storage.stat(f)['size'] for f in files) if total is None else total


def read_bundle_bytes(files: list[str], total: int | None = None) -> int:
    """The size of the ranges the CSV files (``total`` bytes, if known) are read in: the input over
    RANGES, within MIN_RANGE and MAX_RANGE. A range starts at the line after its first byte: no row
    is read twice or lost."""
    return max(MIN_RANGE, min(MAX_RANGE, _total_bytes(files, total) // RANGES))


def estimated_rows(files: list[str], total: int | None = None, sample_bytes: int = 1 << 18) -> int:
    """The lines of ``files`` (``total`` bytes, if known), estimated from those of the first file's
    first ``sample_bytes``."""
    with storage.open_file(files[0], 'rb') as f:
        sample = f.read(sample_bytes)
    return round(_total_bytes(files, total) * sample.count(b'\n') / max(len(sample), 1))


class CsvExampleGen(FileBasedExampleGen):
    """Reads the CSV files in ``input_base`` (``*.csv``, or ``pattern``) into gzipped TFRecords of
    tf.Example, split by hash.

        >>> CsvExampleGen(input_base='data', pattern='span-{SPAN}/*.csv')              # newest span
        >>> CsvExampleGen(input_base='data', pattern='span-{SPAN}/*.csv', span=2)      # span 2
        >>> CsvExampleGen(input_base='data', pattern='span-{SPAN}/*.csv', span=(1, 3)) # spans 1-3 in one
    """
    executor = CsvExampleGenExecutor
    input_pattern = '*.csv'
