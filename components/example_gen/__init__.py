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

Modules: ``spans`` (which files: patterns, spans, versions; ``DataError``), ``base`` (what every
ExampleGen declares and shares: parameters, the driver that keys the cache on the selected files,
the hash split and the writing of splits), ``csv_input`` (CsvExampleGen: reading CSV, column types,
bad rows) and ``tfrecord_input`` (ImportExampleGen).
"""
from __future__ import annotations

from sluice.components.example_gen.csv_input import CsvExampleGen
from sluice.components.example_gen.spans import DataError
from sluice.components.example_gen.tfrecord_input import ImportExampleGen

__all__ = ['CsvExampleGen', 'ImportExampleGen', 'DataError']
