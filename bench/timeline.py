"""Where a multi-process run's cores go, over time: the taxi data components (as bench/beam_workers.py
runs them) in this process, with the CPU of every process of its tree sampled at an interval, and
the moments each node, each Beam pipeline and each node's heavy imports began and ended.

    .venv/bin/python bench/timeline.py [--scale 10] [--workers 2] [--interval 0.5]

Prints the events, then one line per interval: each process's CPU seconds in it (the driver, the
pool's zygote, each worker, in the order they started; '.' before a process started or after it
ended) and the cores left idle; then each process's CPU in all and the idle core-seconds between
consecutive events, which is where a faster run has to come from. One run, not a measurement of
speed: bench/beam_workers.py compares one worker with several, repeated. The sampling thread reads
/proc in the driver, a few milliseconds per sample.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import TAXI_DIR, data_components, machine, resample, tree_sample  # noqa: E402

T0 = time.perf_counter()
events: list[tuple[float, str, str]] = []


def now() -> float:
    return time.perf_counter() - T0


def mark(what: str, thread: str | None = None) -> None:
    events.append((now(), what, thread or threading.current_thread().name.removeprefix('sluice-node-')))


def hook() -> None:
    """Events from each Beam pipeline's run and the launcher's heavy imports, in each node's thread
    (Beam itself is imported where the run imports it)."""
    import sluice.orchestration.launcher as launcher
    from sluice.components.executor import Executor

    build, import_first = Executor.beam_pipeline, launcher.import_first

    def beam_pipeline(self):
        pipeline = build(self)
        run = pipeline.run

        def timed_run(*args, **kwargs):  # leaving the pipeline's block runs it and waits
            mark('beam pipeline >')
            try:
                return run(*args, **kwargs)
            finally:
                mark('beam pipeline <')

        pipeline.run = timed_run
        return pipeline

    def imports(modules):
        modules = list(modules)
        if modules:
            mark('imports >')
        import_first(modules)
        if modules:
            mark('imports <')

    Executor.beam_pipeline, launcher.import_first = beam_pipeline, imports


def sample(interval: float, samples: list, stop: threading.Event) -> None:
    while not stop.is_set():
        _, cpu, _ = tree_sample(os.getpid())
        samples.append((now(), cpu))
        stop.wait(interval)


def role(pid: int) -> str:
    """The driver (this process), the zygote (its child; the workers it forks inherit its command
    line) or a worker."""
    if pid == os.getpid():
        return 'driver'
    try:
        with open(f'/proc/{pid}/stat', 'rb') as f:
            parent = int(f.read().rsplit(b')', 1)[1].split()[1])
        with open(f'/proc/{pid}/cmdline', 'rb') as f:
            return 'zygote' if parent == os.getpid() and b'--zygote' in f.read() else 'worker'
    except (OSError, ValueError, IndexError):
        return 'worker'  # ended: the zygote outlives the run's workers


def run_pipeline(scale: int, workers: int) -> str:
    from sluice import LocalDagRunner, Pipeline
    from sluice.orchestration.run import Progress

    class Marks(Progress):
        def node_started(self, index, total, node_id):
            mark('node >', node_id)
            super().node_started(index, total, node_id)

        def node_finished(self, index, total, result):
            mark('node <', result.node_id)
            super().node_finished(index, total, result)

    data = resample(scale)[0] if scale > 1 else os.path.join(TAXI_DIR, 'data')
    args = ['--direct_num_workers=1'] if workers == 1 else \
        ['--direct_running_mode=multi_processing', f'--direct_num_workers={workers}']
    root = tempfile.mkdtemp(prefix='sluice-bench-timeline-')
    return LocalDagRunner(progress=Marks(enabled=False)).run(Pipeline('timeline', root, data_components(data),
                                                                      beam_pipeline_args=args)).state


def report(samples: list, cores: int) -> None:
    keys = sorted({k for _, cpu in samples for k in cpu}, key=lambda k: (k[1], k[0]))  # by start time
    print('\n' + ' ' * 7 + ' '.join(f'{role(pid)[:6]:>6}' for pid, _ in keys) + '   idle')
    idle_at = []
    for (t0, before), (t1, after) in zip(samples, samples[1:]):
        used = {k: after[k] - before.get(k, after[k]) for k in after}
        idle = max(0.0, cores * (t1 - t0) - sum(used.values()))
        idle_at.append((t1, idle))
        print(f'{t1:6.1f} ' + ' '.join(f'{used[k]:6.2f}' if k in used else '     .' for k in keys) + f' {idle:6.2f}')
    last: dict = {}
    for _, cpu in samples:
        last.update(cpu)
    print('\nCPU s in all: ' + ', '.join(f'{role(pid)} {pid} {last[(pid, start)]:.1f}' for pid, start in keys))
    print('idle core-seconds between events:')
    bounds = [0.0] + [t for t, _, _ in sorted(events)] + [samples[-1][0]]
    for (a, b), (_, what, who) in zip(zip(bounds, bounds[1:]), [(0, 'start', '')] + sorted(events)):
        idle = sum(i for t, i in idle_at if a < t <= b)
        if idle >= 0.05:
            print(f'  {a:6.1f}-{b:5.1f} s after {what} {who}: {idle:.1f}')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--scale', type=int, default=10, help="the taxi data's rows times this")
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--interval', type=float, default=0.5, help='seconds between samples')
    args = parser.parse_args()
    print(machine())
    hook()
    samples: list = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample, args=(args.interval, samples, stop), daemon=True)
    sampler.start()
    state = run_pipeline(args.scale, args.workers)
    stop.set()
    sampler.join()
    print(f'run {state} in {now():.1f} s (from this script\'s start, imports of Sluice included)')
    for t, what, who in sorted(events):
        print(f'{t:6.1f} {what:<16} {who}')
    report(samples, len(os.sched_getaffinity(0)))


if __name__ == '__main__':
    main()
