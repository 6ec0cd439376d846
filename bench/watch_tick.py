"""Benchmark: the cost of an idle ``sluice watch`` tick (nothing new), against the cached re-run it avoids.

    .venv/bin/python bench/watch_tick.py [--example penguin|taxi] [--spans 30] [--repeat 200]

In a fresh directory, copies the example's CSV into ``--spans`` span directories (``span-N/``), loads
the example pipeline pointed at them (``pattern='span-{SPAN}/*.csv'``), runs it once, then times
``Watcher.tick()`` with nothing changed (a walk of the watched files' names, sizes and times) over
``--repeat`` ticks, and a fully cached run of the same pipeline (what a watch without change
detection would do each tick) over a few repeats, both in this process. Prints each side's median
[min-max, n] and the ratio of medians.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import REPO, machine, median, spread  # noqa: E402

sys.path.insert(0, REPO)

PIPELINE = '''
from sluice.components import CsvExampleGen, StatisticsGen
from sluice import Pipeline

gen = CsvExampleGen(input_base={data!r}, pattern='span-{{SPAN}}/*.csv')
pipeline = Pipeline('watched', {root!r}, [gen, StatisticsGen(examples=gen.outputs['examples'])], metadata={url!r})
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--example', default='penguin', choices=['penguin', 'taxi'])
    parser.add_argument('--spans', type=int, default=30)
    parser.add_argument('--repeat', type=int, default=200)
    parser.add_argument('--cached-repeat', type=int, default=5)
    args = parser.parse_args()

    from sluice.runners.local import LocalDagRunner
    from sluice.ops.watch import Watcher

    csv = os.path.join(REPO, 'pipelines', 'examples', args.example, 'data', f'{args.example}s.csv'
                       if args.example == 'penguin' else 'taxi.csv')
    work = tempfile.mkdtemp(prefix='sluice-watch-bench-')
    try:
        data = os.path.join(work, 'data')
        for span in range(1, args.spans + 1):
            os.makedirs(os.path.join(data, f'span-{span}'))
            shutil.copy(csv, os.path.join(data, f'span-{span}', 'data.csv'))
        path = os.path.join(work, 'watched_pipeline.py')
        with open(path, 'w') as f:
            f.write(PIPELINE.format(data=data, root=os.path.join(work, 'root'), url=f'sqlite:///{work}/m.db'))
        watcher = Watcher(path, every=1.0, runner=LocalDagRunner(progress=False), say=lambda _: None)
        first = watcher.tick()
        assert first is not None and first.state == 'COMPLETE', first
        ticks = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            assert watcher.tick() is None
            ticks.append(time.perf_counter() - start)
        cached = []
        for _ in range(args.cached_repeat):
            start = time.perf_counter()
            result = LocalDagRunner(progress=False).run(watcher.pipeline)
            cached.append(time.perf_counter() - start)
            assert set(result.node_states().values()) == {'CACHED'}, result.node_states()
        print(machine())
        print(f'{args.example}, {args.spans} spans ({os.path.getsize(csv) / 1e6:.1f} MB each), {len(watcher.last)} '
              'watched files')
        print(f'idle tick:          {spread([t * 1000 for t in ticks], ".2f", " ms")}')
        print(f'cached re-run:      {spread([t * 1000 for t in cached], ".0f", " ms")}')
        print(f'ratio of medians:   idle tick = 1/{median(cached) / median(ticks):.0f} of a cached re-run')
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
