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
                                                 placeholder_names, select_inputs)
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


def _check_input_splits(splits: dict) -> None:
    for name, pattern in splits.items():
        _check_split_ratios({name: 1})
        if not isinstance(pattern, str):
            raise ValueError(f'the pattern of split {name!r} must be a glob relative to input_base; got {pattern!r}')
        check_pattern(pattern)


class SplitPlan:
    """Which split each record goes to: by a hash of its content over ``split_ratios``, or, for
    ``input_splits``, by the file it came from."""

    def __init__(self, split_ratios: dict, by_split: dict[str, list[str]]) -> None:
        if by_split:
            self.ratios = [(name, 1) for name in by_split]
            self.by_file = {_file_key(path): i for i, files in enumerate(by_split.values()) for path in files}
        else:
            self.ratios, self.by_file = list(split_ratios.items()), {}

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.ratios]

    def index(self, record: dict, content: bytes) -> int:
        if not self.by_file:
            return split_of(content, self.ratios)
        found = self.by_file.get(_file_key(record['file']))
        if found is None:  # a reader naming the file otherwise than the listing did
            raise RuntimeError(f"{record['file']} was read but is in no split's list of files")
        return found


def _file_key(path: str) -> str:
    """A file's name as readers may spell it (``file://`` or not, normalised)."""
    path = path[len('file://'):] if path.startswith('file://') else path
    return path if '://' in path else os.path.normpath(os.path.abspath(path))


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
                self._selected: Selection | None = select_inputs(
                    params['input_base'], self._pattern(), params.get('input_splits') or {}, params.get('span'),
                    params.get('span_version'), self.component.component_type)[0]
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


def record_selection(examples: Examples, selected: Selection, input_base: str, pattern: str,
                     input_splits: dict | None = None) -> None:
    examples.set('span', selected.span)
    examples.set('version', selected.version)
    examples.set('input_base', input_base)
    examples.set('pattern', pattern)
    if input_splits:
        examples.set('input_splits', json.dumps(input_splits))
    if selected.has_spans:
        examples.set('spans', json.dumps(selected.spans))


def write_splits(p: Any, records: Any, plan: SplitPlan, examples: Examples, key: Any) -> None:
    """Partition serialized examples by split (``plan``: a hash of ``key(record)``, or the record's file)
    and write gzipped TFRecords."""
    import apache_beam as beam

    parts = records | 'Split' >> beam.Partition(lambda r, n: plan.index(r, key(r)), len(plan.ratios))
    for index, (name, _) in enumerate(plan.ratios):
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
    input_splits = Parameter(dict, default={}, check=_check_input_splits)  # {split: pattern}: data split already
    span = Parameter((int, tuple, list), default=None, check=check_span)
    span_version = Parameter(int, default=None, check=check_version)
    examples = Output(Examples)
    driver = ExampleGenDriver
    input_pattern = '*'
    libraries = ('apache-beam', 'tensorflow')

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        params = self.parameters
        name = type(self).__name__
        if isinstance(params.get('span'), list):
            params['span'] = tuple(params['span'])
        splits = params.get('input_splits') or {}
        if splits and (kwargs.get('pattern') is not None or 'split_ratios' in kwargs):
            raise WiringError(f'{name}(input_splits=...) reads each split from its own pattern; pass neither '
                              'pattern= nor split_ratios= with it.')
        patterns = list(splits.values()) or [params.get('pattern') or '']
        for key, holder in (('span', 'SPAN'), ('span_version', 'VERSION')):
            lacking = [p or type(self).input_pattern for p in patterns if holder not in placeholder_names(p)]
            if params.get(key) is not None and lacking:
                raise WiringError(f"{name}({key}={params[key]!r}) selects a {key.replace('_', ' ')}, "
                                  f"but the pattern '{lacking[0]}' has no "
                                  f"{{{holder}}}; pass e.g. pattern='span-{{SPAN}}/v{{VERSION}}/*.csv'.")
