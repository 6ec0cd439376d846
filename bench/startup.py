"""What importing the heavy libraries costs a process, with Sluice imported first and without: the
measure of ``sluice/deferred.py`` (gRPC and the BigQuery client imported on first use, Python's own
distutils for TensorFlow). Every executor process and every Beam worker imports these.

    .venv/bin/python bench/startup.py [--repeat 5]

Each figure is a fresh ``python -c`` process that imports ``sluice`` first (side "after sluice") or
not ("alone") and then times, in itself, the import of one library; the sides take turns in every
repeat, both with ``TF_USE_LEGACY_KERAS=1`` (which ``import sluice`` sets). ``import sluice`` itself
is timed the same way (it is what the "after sluice" side adds).
Median [min-max] over the repeats; the difference is per repeat.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import machine, run_python, spread, turns  # noqa: E402

LIBRARIES = ['apache_beam', 'tensorflow', 'ml_metadata.metadata_store.metadata_store']
CHILD = '''
import json, sys, time
if sys.argv[2] == "after sluice":
    t = time.perf_counter(); import sluice; first = time.perf_counter() - t
else:
    first = 0.0
t = time.perf_counter()
__import__(sys.argv[1])
print(json.dumps({"seconds": time.perf_counter() - t, "sluice": first,
                  "grpc": "grpc._cython.cygrpc" in sys.modules,
                  "bigquery": "google.cloud.bigquery.client" in sys.modules,
                  "setuptools": "setuptools" in sys.modules}))
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--repeat', type=int, default=5)
    args = parser.parse_args()
    print(f'# {machine()}')
    sides = ['alone', 'after sluice']
    for library in LIBRARIES:
        got: dict[str, list[dict]] = {side: [] for side in sides}
        for r in range(args.repeat):
            for side in turns(sides, r):
                # TF_USE_LEGACY_KERAS as `import sluice` sets it, on both sides: TensorFlow then loads
                # tf-keras rather than Keras 3, whichever side imports it
                _, proc = run_python(['-W', 'ignore', '-c', CHILD, library, side], env={'TF_USE_LEGACY_KERAS': '1'})
                got[side].append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f'import {library}:')
        for side in sides:
            rows = got[side]
            also = {k: sorted({row[k] for row in rows}) for k in ('grpc', 'bigquery', 'setuptools')}
            print(f'  {side:<13} {spread([row["seconds"] for row in rows], ".3f", " s"):>30}   imported too: '
                  + ', '.join(f'{k} {"/".join(map(str, v))}' for k, v in also.items()))
        saved = [a['seconds'] - b['seconds'] for a, b in zip(got['alone'], got['after sluice'])]
        print(f'  saved        {spread(saved, ".3f", " s"):>30}   (import sluice itself: '
              f'{spread([row["sluice"] for row in got["after sluice"]], ".3f", " s")})')


if __name__ == '__main__':
    main()
