"""onnxruntime's threads for a served model (issue #24): one thread a run against onnxruntime's default
pool (a thread per core), with 1, 2 and 8 requests answered at once from Python threads in one process,
as `sluice serve`'s worker threads answer them.

    .venv/bin/python bench/onnx_threads.py [VERSION_DIR] [--rows 64] [--seconds 2] [--repeat 3]

VERSION_DIR: a pushed version (model.onnx, serving_samples.json); default: the newest taxi version
bench/serve.py left under bench/out/serve. Each cell runs both sides in turn, `--repeat` times; it
prints requests per second and CPU microseconds per request (the process's CPU time over the
requests answered), every repeat, so the spread shows.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import threading
import time

from sluice.components.onnx_export.loading import open_model
from sluice.components.onnx_export.runtime import make_session

HERE = os.path.dirname(os.path.abspath(__file__))


def newest_taxi_version() -> str:
    found = sorted(glob.glob(os.path.join(HERE, 'out', 'serve', 'runs', 'taxi', 'serving', '[0-9]*')),
                   key=lambda p: int(os.path.basename(p)))
    if not found:
        raise SystemExit('no taxi version under bench/out/serve: run bench/serve.py first, or give VERSION_DIR')
    return found[-1]


def measure(model, body: dict, at_once: int, seconds: float) -> tuple[float, float]:
    """(requests per second, CPU us per request) with ``at_once`` threads answering ``body`` in a loop."""
    model.predict(body)
    answered, stop = [0] * at_once, time.monotonic() + seconds

    def loop(i: int) -> None:
        while time.monotonic() < stop:
            model.predict(body)
            answered[i] += 1
    cpu = time.process_time()
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(at_once)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = sum(answered)
    return total / seconds, (time.process_time() - cpu) / max(total, 1) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('version_dir', nargs='?', default=None)
    parser.add_argument('--rows', type=int, default=64)
    parser.add_argument('--seconds', type=float, default=2.0)
    parser.add_argument('--repeat', type=int, default=3)
    args = parser.parse_args()
    version = args.version_dir or newest_taxi_version()
    onnx_file = os.path.join(version, 'model.onnx')
    with open(os.path.join(version, 'serving_samples.json')) as f:
        rows = json.load(f)['request']['instances']
    body = {'instances': (rows * args.rows)[:args.rows]}
    model = open_model(onnx_file)  # one thread a run, as sluice serve's session for busy times
    sides = {'one thread': model.session, 'default pool': make_session(onnx_file)}
    print(f'{onnx_file}, {args.rows} rows a request, {args.seconds:g} s per cell, {os.cpu_count()} cores')
    for at_once in (1, 2, 8):
        figures: dict[str, list[tuple[float, float]]] = {side: [] for side in sides}
        for _ in range(args.repeat):
            for side, session in sides.items():
                model.session = session
                figures[side].append(measure(model, body, at_once, args.seconds))
        for side, runs in figures.items():
            print(f'  {at_once} at once, {side:<12}: req/s {", ".join(f"{r:,.0f}" for r, _ in runs)}; '
                  f'CPU us/request {", ".join(f"{c:,.0f}" for _, c in runs)}')


if __name__ == '__main__':
    main()
