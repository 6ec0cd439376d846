"""What every ExampleGen shares: its declaration (``FileBasedExampleGen``: input_base, split_ratios and
the span parameters -> Examples), the driver that keys the cache on the content of the selected files
and records which were read, the split of a record by a hash of its content, and the writing of the
splits as gzipped TFRecords.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from sluice.components.component import Component, Output, Parameter, WiringError
from sluice.components.driver import Driver
from sluice.components.example_gen.spans import (DataError, Selection, check_pattern, check_span, check_version,
                                                 placeholder_names, select_files)
from sluice.components.fingerprint import files_fingerprint
from sluice.metadata.artifact import Examples

MAX_REPORTED_PROBLEMS = 5


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


def write_splits(p: Any, records: Any, ratios: list[tuple[str, int]], examples: Examples,
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


class FileBasedExampleGen(Component):
    """What every ExampleGen declares: files in ``input_base`` -> examples split by hash.

    ``pattern`` (a glob relative to ``input_base``; default: the component's ``input_pattern``) may hold
    ``{SPAN}`` and ``{VERSION}`` (digits; ``{SPAN:4}`` for exactly four). Then ``span=None`` (default)
    ingests the newest span, ``span=N`` span N, ``span=(lo, hi)`` every span from lo to hi inclusive
    into one artifact (its ``span`` is the highest); ``version=None`` takes each span's newest
    version, ``version=V`` pins it (one span only). Errors name ``input_base``, the pattern and the
    spans (or versions) that exist."""
    input_base = Parameter(str, path=True)
    split_ratios = Parameter(dict, default={'train': 2, 'eval': 1}, check=_check_split_ratios)
    pattern = Parameter(str, default=None, check=check_pattern)
    span = Parameter((int, tuple, list), default=None, check=check_span)
    span_version = Parameter(int, default=None, check=check_version)
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
            if params.get(key) is not None and not placeholder_names(params.get('pattern') or '') >= {holder}:
                raise WiringError(f"{type(self).__name__}({key}={params[key]!r}) selects a {key.replace('_', ' ')}, "
                                  f"but the pattern '{params.get('pattern') or type(self).input_pattern}' has no "
                                  f"{{{holder}}}; pass e.g. pattern='span-{{SPAN}}/v{{VERSION}}/*.csv'.")
