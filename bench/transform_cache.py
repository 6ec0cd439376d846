"""What tf.Transform's analyzer cache saves (``Transform(cache_analyzers=True)``, TFX's analyzer_cache).

The taxi CSV (resampled to ``--scale`` times its rows) is cut into three spans. A window of the three
(``LatestSpans(n=3)``) is transformed by the taxi module's ``preprocessing_fn`` (z-scores, quantile
buckets, vocabularies) in the third run of a pipeline that ingested spans 1 and 2 in its first two
runs. Both sides run the same three runs in fresh roots; only the cached side keeps the analyzer cache,
so its third Transform reads spans 1 and 2 from the cache and analyses span 3 alone. The figure is
the third Transform's execution time (Sluice's own node duration), cached against not, per repeat,
the sides taking turns.

    .venv/bin/python bench/transform_cache.py [--repeat 3] [--scale 1]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import TAXI_DIR, machine, ratios, resample, spread, turns  # noqa: E402

from sluice import LocalDagRunner, Pipeline  # noqa: E402
from sluice.components import CsvExampleGen, ImportSchemaGen, LatestSpans, Transform  # noqa: E402


def write_spans(data_csv: str, directory: str) -> None:
    with open(data_csv, newline='') as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    for span in (1, 2, 3):
        os.makedirs(os.path.join(directory, f'span-{span}'))
        with open(os.path.join(directory, f'span-{span}', 'part.csv'), 'w', newline='') as f:
            csv.writer(f).writerows([header] + body[span - 1::3])


def third_transform(root: str, data: str, cache: bool) -> tuple[float, list[str]]:
    """Runs spans 1, 2, 3 in turn; the third run's Transform duration and the datasets it read from cache."""
    runner = LocalDagRunner(progress=False)
    for span in (1, 2, 3):
        gen = CsvExampleGen(input_base=data, pattern='span-{SPAN}/*.csv', span=span)
        schema = ImportSchemaGen(schema_file=os.path.join(TAXI_DIR, 'schema', 'schema.pbtxt'))
        window = LatestSpans(gen, n=3)
        transform = Transform(examples=window, schema=schema.outputs['schema'],
                              module_file=os.path.join(TAXI_DIR, 'taxi_module.py'), cache_analyzers=cache)
        result = runner.run(Pipeline('bench-tcache', root, [gen, schema, window, transform],
                                     metadata=f'sqlite:///{root}/metadata.db',
                                     beam_pipeline_args=['--direct_num_workers=1']))
        assert result.state == 'COMPLETE', result.nodes
    out = result['Transform'].outputs['updated_analyzer_cache']
    return result['Transform'].duration, json.loads(out.get('read_from_cache') or '[]')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--scale', type=int, default=1)
    args = parser.parse_args()
    print(machine())
    directory, rows = resample(args.scale)
    data_csv = os.path.join(directory, 'taxi.csv')
    work = tempfile.mkdtemp(prefix='sluice-bench-tcache-')
    data = os.path.join(work, 'data')
    write_spans(data_csv, data)
    times: dict[str, list[float]] = {'cached': [], 'from scratch': []}
    for i in range(args.repeat):
        for side in turns(list(times), i):
            seconds, read = third_transform(os.path.join(work, f'{side.replace(" ", "-")}-{i}'), data,
                                            side == 'cached')
            assert (len(read) == 2) == (side == 'cached'), read
            times[side].append(seconds)
            print(f'  repeat {i + 1} {side}: {seconds:.2f} s (read from cache: {len(read)} of 3 spans)',
                  file=sys.stderr)
    print(f'taxi x{args.scale} ({rows} rows) in 3 spans; the third run\'s Transform over the window of 3:')
    print(f'  with the analyzer cache (spans 1-2 read from it): {spread(times["cached"], unit=" s")}')
    print(f'  without (all three analysed):                     {spread(times["from scratch"], unit=" s")}')
    print(f'  ratio cached / from scratch: {spread(ratios(times["cached"], times["from scratch"]))}')


if __name__ == '__main__':
    main()
