"""A small demo pipeline on the Palmer penguins CSV, built from custom components.

It shows how a component is declared (typed inputs, outputs, parameters and an executor), how an
executor runs its data work on Beam, and how a driver adds input files to the cache key:

    ReadCsv --> Summarize ---\\
           \\--> CountLabels --> WriteReport

    sluice run pipelines/examples/demo/demo_pipeline.py
"""
from __future__ import annotations

import csv
import glob
import json
import os

from sluice.components import Artifact, Component, Driver, Executor, Input, Output, Parameter
from sluice.components.fingerprint import files_fingerprint
from sluice import Pipeline

HERE = os.path.dirname(os.path.abspath(__file__))
PENGUIN_DATA = os.path.join(HERE, '..', 'penguin', 'data')


class Table(Artifact):
    """Rows of CSV files as JSON lines (``rows-*.jsonl``)."""
    PROPERTIES = {'rows': int}


class ColumnSummary(Artifact):
    """One JSON line per column (``columns-*.jsonl``)."""


class Markdown(Artifact):
    """A report, ``report.md``."""


def _csv_files(directory: str) -> list[str]:
    files = sorted(glob.glob(os.path.join(directory, '*.csv')))
    if not files:
        raise FileNotFoundError(f'No CSV files in {directory}; put one or more .csv files there '
                                'or pass another directory as input_base.')
    return files


def _read_jsonl(uri: str, prefix: str) -> list[dict]:
    rows = []
    for path in sorted(glob.glob(os.path.join(uri, f'{prefix}-*.jsonl'))):
        with open(path) as f:
            rows.extend(json.loads(line) for line in f if line.strip())
    return rows


class ReadCsvDriver(Driver):
    """Adds the content of the input CSV files to the cache key."""

    def external_fingerprints(self) -> dict[str, str]:
        directory = self.component.parameters['input_base']
        files = sorted(glob.glob(os.path.join(directory, '*.csv')))
        return {'input_files': files_fingerprint(files, root=directory)}


class ReadCsvExecutor(Executor):
    def run(self, *, input_base: str, table: Table) -> None:
        import apache_beam as beam

        files = _csv_files(input_base)
        with open(files[0], newline='') as f:
            header = next(csv.reader(f))

        def parse(line: str) -> dict:
            values = next(csv.reader([line]))
            if len(values) != len(header):
                raise ValueError(f'row has {len(values)} fields, header has {len(header)}: {line!r}')
            return {k: (float(v) if v else None) for k, v in zip(header, values)}

        count_path = os.path.join(self.tmp_dir, 'count')
        with self.beam_pipeline() as p:
            rows = (p | 'Read' >> beam.io.ReadFromText(os.path.join(input_base, '*.csv'), skip_header_lines=1)
                      | 'Parse' >> beam.Map(parse))
            _ = rows | 'Write' >> beam.Map(json.dumps) | beam.io.WriteToText(
                os.path.join(table.uri, 'rows'), file_name_suffix='.jsonl')
            _ = (rows | beam.combiners.Count.Globally() | 'Count' >> beam.Map(str)
                 | 'WriteCount' >> beam.io.WriteToText(count_path, num_shards=1, shard_name_template=''))
        with open(count_path) as f:
            table.set('rows', int(f.read().strip()))


class ReadCsv(Component):
    """Reads every CSV file in ``input_base`` into a Table."""
    input_base = Parameter(str, path=True)
    table = Output(Table)
    executor = ReadCsvExecutor
    driver = ReadCsvDriver


class SummarizeExecutor(Executor):
    def run(self, *, table: Table, summary: ColumnSummary, exclude: list) -> None:
        import apache_beam as beam

        def cells(row: dict):
            for column, value in row.items():
                if column not in exclude and value is not None:
                    yield column, value

        def combine(values) -> tuple:
            values = list(values)
            return len(values), sum(values), min(values), max(values)

        def to_json(kv) -> str:
            column, (n, total, lo, hi) = kv
            return json.dumps({'column': column, 'count': n, 'mean': total / n, 'min': lo, 'max': hi})

        with self.beam_pipeline() as p:
            _ = (p | beam.io.ReadFromText(os.path.join(table.uri, 'rows-*.jsonl'))
                   | beam.Map(json.loads) | beam.FlatMap(cells) | beam.GroupByKey()
                   | beam.MapTuple(lambda c, vs: (c, combine(vs))) | beam.Map(to_json)
                   | beam.io.WriteToText(os.path.join(summary.uri, 'columns'), file_name_suffix='.jsonl'))


class Summarize(Component):
    """Count, mean, min and max of each numeric column (on Beam)."""
    table = Input(Table)
    summary = Output(ColumnSummary)
    exclude = Parameter(list, default=[])
    executor = SummarizeExecutor


class CountLabelsExecutor(Executor):
    def run(self, *, table: Table, counts: ColumnSummary, label: str) -> None:
        import apache_beam as beam

        def label_of(row: dict):
            if label not in row:
                raise KeyError(f'column {label!r} is not in the table; columns: {", ".join(row)}')
            return row[label]

        with self.beam_pipeline() as p:
            _ = (p | beam.io.ReadFromText(os.path.join(table.uri, 'rows-*.jsonl'))
                   | beam.Map(json.loads) | beam.Map(label_of) | beam.combiners.Count.PerElement()
                   | beam.MapTuple(lambda value, n: json.dumps({'column': label, 'value': value, 'count': n}))
                   | beam.io.WriteToText(os.path.join(counts.uri, 'columns'), file_name_suffix='.jsonl'))


class CountLabels(Component):
    """How many rows have each value of the label column."""
    table = Input(Table)
    counts = Output(ColumnSummary)
    label = Parameter(str)
    executor = CountLabelsExecutor


class WriteReportExecutor(Executor):
    def run(self, *, summary: ColumnSummary, counts: ColumnSummary, report: Markdown, title: str) -> None:
        lines = [f'# {title}', '', '| column | count | mean | min | max |', '|---|---|---|---|---|']
        for s in sorted(_read_jsonl(summary.uri, 'columns'), key=lambda s: s['column']):
            lines.append(f"| {s['column']} | {s['count']} | {s['mean']:.4f} | {s['min']:.4f} | {s['max']:.4f} |")
        lines += ['', '| label | rows |', '|---|---|']
        for c in sorted(_read_jsonl(counts.uri, 'columns'), key=lambda c: c['value']):
            lines.append(f"| {c['value']:g} | {c['count']} |")
        with open(os.path.join(report.uri, 'report.md'), 'w') as f:
            f.write('\n'.join(lines) + '\n')


class WriteReport(Component):
    """Writes the summary and label counts as a Markdown table."""
    summary = Input(ColumnSummary)
    counts = Input(ColumnSummary)
    report = Output(Markdown)
    title = Parameter(str, default='Data summary')
    executor = WriteReportExecutor


def create_pipeline(root: str = 'runs/demo', data: str = PENGUIN_DATA, metadata: str | None = None,
                    beam_pipeline_args: list[str] | None = None) -> Pipeline:
    read = ReadCsv(input_base=data)
    summarize = Summarize(table=read.outputs['table'], exclude=['species'])
    labels = CountLabels(table=read.outputs['table'], label='species')
    report = WriteReport(summary=summarize.outputs['summary'], counts=labels.outputs['counts'],
                         title='Palmer penguins')
    return Pipeline(name='demo', pipeline_root=root, components=[read, summarize, labels, report],
                    metadata=metadata, enable_cache=True,
                    beam_pipeline_args=beam_pipeline_args or ['--direct_num_workers=1'])
