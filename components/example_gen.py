"""ExampleGen: CSV files (or TFRecords of tf.Example) in, gzipped TFRecords of tf.Example out.

    >>> gen = CsvExampleGen(input_base='data/penguins', split_ratios={'train': 2, 'eval': 1})

Rows stream through Beam (files are never held in memory). A first pass infers each column's type
(int, float or string; an empty cell is a missing value, never a zero), counts rows per split and
collects bad rows; a second pass writes ``Split-<name>/data_tfrecord-*.gz``. A row's split is decided
by a hash of its content, so the same data gives the same splits on every run and every machine.
The driver fingerprints the input files by content: editing or adding a file invalidates the cache,
touching one does not.

Spans (TFX's placeholders): ``pattern`` is a glob relative to ``input_base`` in which ``{SPAN}`` and
``{VERSION}`` stand for digits (``{SPAN:4}``: exactly 4 digits, e.g. ``0007``):

    >>> gen = CsvExampleGen(input_base='data', pattern='span-{SPAN}/v{VERSION}/*.csv')

By default the newest span is ingested, at its newest version; ``span=N`` pins one span,
``span=(lo, hi)`` ingests every span from lo to hi inclusive (each at its newest version) into one
artifact, and ``span_version=V`` pins the version of a single span. The Examples artifact records
``span`` (the highest ingested) and ``version``, plus the custom properties ``spans`` (the list
ingested), ``input_base`` and ``pattern``. The cache is per span: the driver fingerprints only the
files of the selected span(s), and keys the selection, not how it was asked for (``span=None`` that
resolves to span 2 and ``span=2`` share a cache entry), so a new span reruns ExampleGen for that span
while a run pinned to an older one stays cached.
"""
from __future__ import annotations

import csv
import glob
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from sluice.components.component import Component, Output, Parameter, WiringError
from sluice.components.driver import Driver
from sluice.components.executor import Executor
from sluice.components.fingerprint import files_fingerprint
from sluice.metadata.artifact import Examples

MAX_REPORTED_PROBLEMS = 5


class DataError(ValueError):
    """The input data cannot be read as asked; the message names the file, the line and the fix."""
    retryable = False  # bad input: a retry reads the same bytes


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
    return select_files(input_base, pattern, None, None, component).files


# -- spans ----------------------------------------------------------------------------------------
_PLACEHOLDER = re.compile(r'\{(SPAN|VERSION)(?::(\d+))?\}')


def _check_pattern(pattern: str | None) -> None:
    if pattern is None:
        return
    if not pattern or os.path.isabs(pattern) or pattern.startswith('..'):
        raise ValueError(f'pattern {pattern!r} must be a glob relative to input_base, e.g. "span-{{SPAN}}/*.csv"')
    stray = re.sub(_PLACEHOLDER, '', pattern)
    if re.search(r'\{[A-Z]+(:[^}]*)?\}', stray):
        bad = re.search(r'\{[A-Z]+(:[^}]*)?\}', stray).group(0)
        raise ValueError(f'pattern {pattern!r}: unknown placeholder {bad}; the placeholders are {{SPAN}} and '
                         '{VERSION} (optionally with a width: {SPAN:4})')
    names = [m.group(1) for m in _PLACEHOLDER.finditer(pattern)]
    if 'VERSION' in names and 'SPAN' not in names:
        raise ValueError(f'pattern {pattern!r} has {{VERSION}} but no {{SPAN}}; a version is a version of a span')


def _check_span(span: Any) -> None:
    if span is None:
        return
    if isinstance(span, bool):
        raise ValueError(f'span must be a span number, (lo, hi) or None; got {span!r}')
    if isinstance(span, int):
        if span < 0:
            raise ValueError(f'span must be 0 or more; got {span}')
        return
    if isinstance(span, (tuple, list)) and len(span) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in span) and span[0] <= span[1]:
        return
    raise ValueError(f'span must be a span number, a range (lo, hi) with 0 <= lo <= hi, or None for the newest; '
                     f'got {span!r}')


def _check_version(version: Any) -> None:
    if version is None:
        return
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ValueError(f'span_version must be a version number (0 or more) or None for the newest; got {version!r}')


def pattern_regex(pattern: str) -> tuple[str, re.Pattern]:
    """The glob that finds candidate files and the regex that reads span and version off their paths
    (relative to input_base, '/'-separated)."""
    glob_parts, regex_parts, seen = [], [], set()
    pos = 0
    for m in _PLACEHOLDER.finditer(pattern):
        literal = pattern[pos:m.start()]
        glob_parts.append(literal)
        regex_parts.append(_glob_to_regex(literal))
        name, width = m.group(1), m.group(2)
        glob_parts.append('[0-9]' * int(width) if width else '*')
        digits = r'\d{%d}' % int(width) if width else r'\d+'
        group = name.lower()
        regex_parts.append(f'(?P={group})' if group in seen else f'(?P<{group}>{digits})')
        seen.add(group)
        pos = m.end()
    glob_parts.append(pattern[pos:])
    regex_parts.append(_glob_to_regex(pattern[pos:]))
    return ''.join(glob_parts), re.compile('^' + ''.join(regex_parts) + '$')


def _glob_to_regex(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == '*':
            out.append('[^/]*')
        elif c == '?':
            out.append('[^/]')
        elif c == '[':
            end = text.find(']', i + 2 if text[i + 1:i + 2] in ('!', ']') else i + 1)
            if end == -1:
                out.append(re.escape(c))
            else:
                body = text[i + 1:end]
                body = '^' + body[1:] if body.startswith('!') else body
                out.append('[' + body.replace('\\', '\\\\') + ']')
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return ''.join(out)


@dataclass
class Selection:
    """The files an ExampleGen ingests: one span (at one version) or a range of spans."""
    files: list[str]
    span: int = 0  # the highest span ingested
    version: int = 0
    spans: list[int] = field(default_factory=list)
    versions: dict[int, int] = field(default_factory=dict)
    has_spans: bool = False

    def describe(self) -> str:
        if not self.has_spans:
            return f'{len(self.files)} files'
        which = f'span {self.span}' if len(self.spans) == 1 else f'spans {", ".join(map(str, self.spans))}'
        version = f' version {self.version}' if len(self.spans) == 1 and self.versions.get(self.span) is not None else ''
        return f'{which}{version} ({len(self.files)} files)'


def has_placeholders(pattern: str) -> bool:
    return bool(_PLACEHOLDER.search(pattern))


def _PLACEHOLDER_NAMES(pattern: str) -> set[str]:
    return {m.group(1) for m in _PLACEHOLDER.finditer(pattern)}


def available_spans(input_base: str, pattern: str) -> dict[int, dict[int | None, list[str]]]:
    """span -> version (None without {VERSION}) -> files, for the files under input_base that match."""
    glob_pattern, regex = pattern_regex(pattern)
    found: dict[int, dict[int | None, list[str]]] = {}
    for path in sorted(glob.glob(os.path.join(input_base, glob_pattern))):
        if not os.path.isfile(path):
            continue
        m = regex.match(os.path.relpath(path, input_base).replace(os.sep, '/'))
        if m is None:
            continue
        groups = m.groupdict()
        span = int(groups['span']) if groups.get('span') is not None else 0
        version = int(groups['version']) if groups.get('version') is not None else None
        found.setdefault(span, {}).setdefault(version, []).append(path)
    return found


def select_files(input_base: str, pattern: str, span: Any, version: Any, component: str) -> Selection:
    """The files of the selected span (newest by default) at the selected version (newest by default),
    or of every span in a (lo, hi) range; DataError names input_base, the pattern and what exists."""
    if not os.path.isdir(input_base):
        hint = ' It is a file; pass the directory that holds it.' if os.path.isfile(input_base) else ''
        raise DataError(f'{component}: input_base {input_base} does not exist or is not a directory.{hint} '
                        f'Pass the directory that holds the {pattern} files.')
    if not has_placeholders(pattern):
        files = sorted(f for f in glob.glob(os.path.join(input_base, pattern)) if os.path.isfile(f))
        if not files:
            raise DataError(f'{component}: no {pattern} files in {input_base}; put the data there or pass '
                            'another input_base.')
        return Selection(files)
    found = available_spans(input_base, pattern)
    if not found:
        raise DataError(f"{component}: no file in {input_base} matches the pattern '{pattern}' ({{SPAN}} and "
                        '{VERSION} stand for digits); put the span directories or files there, or fix the pattern.')
    spans = sorted(found)
    listing = ', '.join(map(str, spans))
    if span is None:
        chosen = [spans[-1]]
    elif isinstance(span, int):
        if span not in found:
            raise DataError(f"{component}: span {span} does not exist in {input_base} (pattern '{pattern}'); "
                            f'the spans there are {listing}.')
        chosen = [span]
    else:
        lo, hi = span
        chosen = [s for s in spans if lo <= s <= hi]
        if not chosen:
            raise DataError(f"{component}: no span from {lo} to {hi} exists in {input_base} (pattern '{pattern}'); "
                            f'the spans there are {listing}.')
    if version is not None and len(chosen) > 1:
        raise DataError(f'{component}: span_version={version} pins the version of one span, but spans '
                        f'{", ".join(map(str, chosen))} were selected; pin a single span.')
    files: list[str] = []
    versions: dict[int, int | None] = {}
    for s in chosen:
        by_version = found[s]
        if version is not None:
            if version not in by_version:
                known = ', '.join(str(v) for v in sorted(v for v in by_version if v is not None)) or 'none'
                raise DataError(f"{component}: span {s} has no version {version} in {input_base} (pattern "
                                f"'{pattern}'); its versions are {known}.")
            v = version
        else:
            v = max(by_version, key=lambda x: -1 if x is None else x)
        versions[s] = v
        files.extend(by_version[v])
    top = chosen[-1]
    return Selection(sorted(files), span=top, version=versions[top] or 0, spans=chosen, versions=versions,
                     has_spans=True)


class ExampleGenDriver(Driver):
    """Adds the content of the selected input files to the cache key, records which files were read,
    and hands the executor the span and version it resolved (so the key and the work agree)."""

    def _selection(self) -> Selection | None:
        if not hasattr(self, '_selected'):
            params = self.component.parameters
            try:
                self._selected: Selection | None = select_files(
                    params['input_base'], self._pattern(), params.get('span'), params.get('span_version'),
                    self.component.component_type)
            except DataError:  # the executor raises it again, with a FAILED execution and no output
                self._selected = None
        return self._selected

    def _pattern(self) -> str:
        return self.component.parameters.get('pattern') or type(self.component).input_pattern

    def external_fingerprints(self) -> dict[str, str]:
        selected = self._selection()
        files = selected.files if selected is not None else []
        return {'input_files': files_fingerprint(files, root=self.component.parameters['input_base'])}

    def cache_key_parts(self, inputs: dict) -> dict[str, Any]:
        parts = super().cache_key_parts(inputs)
        selected = self._selection()
        if selected is not None and selected.has_spans:  # key the selection, not how it was asked for
            parts['parameters'] = {**parts['parameters'], 'span': selected.spans,
                                   'span_version': [selected.versions[s] for s in selected.spans]}
        return parts

    def execution_properties(self) -> dict[str, Any]:
        selected = self._selection()
        props: dict[str, Any] = {'input_files': json.dumps(selected.files if selected is not None else [])}
        if selected is not None and selected.has_spans:
            props['span'] = selected.span
            props['spans'] = json.dumps(selected.spans)
        return props

    def parameters(self) -> dict[str, Any]:
        params = super().parameters()
        selected = self._selection()
        if selected is not None and selected.has_spans:
            params['span'] = selected.span if len(selected.spans) == 1 else (selected.spans[0], selected.spans[-1])
            params['span_version'] = selected.versions[selected.span] if len(selected.spans) == 1 else None
        return params


def record_selection(examples: Examples, selected: Selection, input_base: str, pattern: str) -> None:
    examples.set('span', selected.span)
    examples.set('version', selected.version)
    examples.set('input_base', input_base)
    examples.set('pattern', pattern)
    if selected.has_spans:
        examples.set('spans', json.dumps(selected.spans))


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
    def run(self, *, input_base: str, split_ratios: dict, examples: Examples, pattern: str | None = None,
            span: Any = None, span_version: int | None = None) -> None:
        import apache_beam as beam

        pattern = pattern or CsvExampleGen.input_pattern
        selected = select_files(input_base, pattern, span, span_version, 'CsvExampleGen')
        files = selected.files
        headers = {f: read_header(f) for f in files}
        header = headers[files[0]]
        for f, h in headers.items():
            if h != header:
                raise DataError(f'CsvExampleGen: the header of {f} ({",".join(h)}) differs from the header of '
                                f'{files[0]} ({",".join(header)}); all CSV files in {input_base} must have the '
                                'same columns in the same order.')
        ratios = list(split_ratios.items())
        summary_path = os.path.join(self.tmp_dir, 'csv_summary.json')

        def read(p: Any) -> Any:
            return (p | 'Files' >> beam.Create(files)
                      | 'Read' >> beam.io.ReadAllFromText(skip_header_lines=1, with_filename=True,
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
            which = f' ({selected.describe()})' if selected.has_spans else ''
            raise DataError(f'CsvExampleGen: the CSV files in {input_base}{which} have a header but no rows; '
                            'add data rows.')
        kinds = summary['kinds']

        # Pass 2: write tf.Examples per split.
        def encode(row: dict) -> dict:
            return {'raw': row['raw'], 'example': to_example(row['values'], header, kinds)}

        with self.beam_pipeline() as p:
            rows = (read(p) | 'KeepRows' >> beam.Filter(lambda r: 'values' in r) | 'ToExample' >> beam.Map(encode))
            _write_splits(p, rows, ratios, examples, key=lambda r: r['raw'])

        examples.set('split_names', [name for name, _ in ratios])
        record_selection(examples, selected, input_base, pattern)
        examples.set('row_counts', {name: n for (name, _), n in zip(ratios, summary['splits'])})
        examples.set('column_types', {h: (k or 'missing') for h, k in zip(header, kinds)})
        empty = [name for (name, _), n in zip(ratios, summary['splits']) if n == 0]
        if empty:
            raise DataError(f'CsvExampleGen: {total} rows left split(s) {", ".join(empty)} empty; add rows or '
                            'change split_ratios.')


class _ExampleGen(Component):
    """What every ExampleGen declares: files in ``input_base`` -> examples split by hash.

    ``pattern`` (a glob relative to ``input_base``; default: the component's ``input_pattern``) may hold
    ``{SPAN}`` and ``{VERSION}`` (digits; ``{SPAN:4}`` for exactly four). Then ``span=None`` (default)
    ingests the newest span, ``span=N`` span N, ``span=(lo, hi)`` every span from lo to hi inclusive
    into one artifact (its ``span`` is the highest); ``version=None`` takes each span's newest
    version, ``version=V`` pins it (one span only). Errors name ``input_base``, the pattern and the
    spans (or versions) that exist."""
    input_base = Parameter(str, path=True)
    split_ratios = Parameter(dict, default={'train': 2, 'eval': 1}, check=_check_split_ratios)
    pattern = Parameter(str, default=None, check=_check_pattern)
    span = Parameter((int, tuple, list), default=None, check=_check_span)
    span_version = Parameter(int, default=None, check=_check_version)
    examples = Output(Examples)
    driver = ExampleGenDriver
    input_pattern = '*'
    libraries = ('apache-beam', 'tensorflow')

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        params = self.parameters
        if isinstance(params.get('span'), list):
            params['span'] = tuple(params['span'])
        for key, holder in (('span', 'SPAN'), ('span_version', 'VERSION')):
            if params.get(key) is not None and not _PLACEHOLDER_NAMES(params.get('pattern') or '') >= {holder}:
                raise WiringError(f"{type(self).__name__}({key}={params[key]!r}) selects a {key.replace('_', ' ')}, "
                                  f"but the pattern '{params.get('pattern') or type(self).input_pattern}' has no "
                                  f"{{{holder}}}; pass e.g. pattern='span-{{SPAN}}/v{{VERSION}}/*.csv'.")


class CsvExampleGen(_ExampleGen):
    """Reads the CSV files in ``input_base`` (``*.csv``, or ``pattern``) into gzipped TFRecords of
    tf.Example, split by hash.

        >>> CsvExampleGen(input_base='data', pattern='span-{SPAN}/*.csv')              # newest span
        >>> CsvExampleGen(input_base='data', pattern='span-{SPAN}/*.csv', span=2)      # span 2
        >>> CsvExampleGen(input_base='data', pattern='span-{SPAN}/*.csv', span=(1, 3)) # spans 1-3 in one
    """
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
    def run(self, *, input_base: str, split_ratios: dict, examples: Examples, pattern: str | None = None,
            span: Any = None, span_version: int | None = None) -> None:
        import apache_beam as beam

        pattern = pattern or ImportExampleGen.input_pattern
        selected = select_files(input_base, pattern, span, span_version, 'ImportExampleGen')
        files = selected.files
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
        record_selection(examples, selected, input_base, pattern)


class ImportExampleGen(_ExampleGen):
    """Imports TFRecord files of tf.Example (``.gz`` files are read as gzip) and splits them by hash."""
    executor = ImportExampleGenExecutor


__all__ = ['CsvExampleGen', 'ImportExampleGen', 'DataError']
