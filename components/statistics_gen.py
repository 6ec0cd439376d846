"""StatisticsGen: TFDV statistics of every split, computed on Beam.

    >>> stats = StatisticsGen(examples=gen.outputs['examples'])

Writes ``Split-<split>/FeatureStats.pb`` (a binary DatasetFeatureStatisticsList), as TFX does.
"""
from __future__ import annotations

import os

from sluice.components.component import Component, Input, Output, Parameter
from sluice.components.executor import Executor
from sluice.metadata.artifact import Examples, ExampleStatistics


def check_split_names(value: list) -> None:
    if not all(isinstance(v, str) and v for v in value):
        raise ValueError(f'exclude_splits takes split names, e.g. ["eval"]; got {value!r}')


STATS_FILE = 'FeatureStats.pb'


def load_statistics(statistics: ExampleStatistics, split: str) -> object:
    """The DatasetFeatureStatisticsList of one split of a statistics artifact."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    path = os.path.join(statistics.split_uri(split), STATS_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{statistics!r} has no statistics for split {split!r} ({path}); its splits are '
                                f'{", ".join(statistics.split_names) or "none"}.')
    with open(path, 'rb') as f:
        return statistics_pb2.DatasetFeatureStatisticsList.FromString(f.read())


class StatisticsGenExecutor(Executor):
    imports = ('tensorflow', 'tfx_bsl.public.tfxio', 'tensorflow_data_validation')

    def run(self, *, examples: Examples, statistics: ExampleStatistics, num_top_values: int,
            num_histogram_buckets: int, exclude_splits: list | None = None) -> None:
        import tensorflow_data_validation as tfdv
        from tfx_bsl.public import tfxio

        options = tfdv.StatsOptions(num_top_values=num_top_values, num_histogram_buckets=num_histogram_buckets)
        if not examples.split_names:
            raise ValueError(f'{examples!r} records no split_names; it was not written by an ExampleGen.')
        splits = examples.splits_without(exclude_splits or [])
        with self.beam_pipeline() as p:
            for split in splits:
                source = tfxio.TFExampleRecord(file_pattern=os.path.join(examples.split_uri(split), '*'),
                                               telemetry_descriptors=['sluice', 'StatisticsGen'])
                out = statistics.split_uri(split)
                os.makedirs(out, exist_ok=True)
                _ = (p | f'Read[{split}]' >> source.BeamSource()
                     | f'Stats[{split}]' >> tfdv.GenerateStatistics(options)
                     | f'Write[{split}]' >> tfdv.WriteStatisticsToBinaryFile(os.path.join(out, STATS_FILE)))
        statistics.set('split_names', splits)


class StatisticsGen(Component):
    """TFDV statistics of each split of the examples (but ``exclude_splits``)."""
    examples = Input(Examples)
    statistics = Output(ExampleStatistics)
    num_top_values = Parameter(int, default=20)
    num_histogram_buckets = Parameter(int, default=10)
    exclude_splits = Parameter(list, default=[], check=check_split_names)  # splits left without statistics
    libraries = ('tensorflow-data-validation', 'tfx-bsl', 'apache-beam')
    executor = StatisticsGenExecutor
    # TFDV's statistics are computed in Python: beside Transform (which traces the preprocessing_fn and
    # runs its own pipeline in this process) the two shared one GIL. Apart, the taxi data components took
    # 10.6-11.0 s instead of 13.2 s at 15,000 rows with one worker; the penguin example (344 rows) took
    # 16.4-16.6 s instead of 12.7-13.0 s with it apart (a new process's imports): bench/README.md,
    # "StatisticsGen apart".
    apart_when_parallel = True
    apart_from_rows = 10_000
