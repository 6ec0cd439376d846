"""Shared helpers for the bench scripts: repeated measurements and how their spread is printed.

Every figure a bench prints is the median of its repeats, followed by the range (min-max) over the
repeats and their number, e.g. ``2.93 s [2.85-3.10, n=3]`` (``[-0.40 to -0.28, n=3]`` when a bound is
negative). A ratio between two sides is computed per
repeat from the two sides measured in that repeat (a pair), then summarised the same way.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAXI_DIR = os.path.join(REPO, 'pipelines', 'examples', 'taxi')
OUT = os.path.join(REPO, 'bench', 'out')


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float], fmt: str = '.2f', unit: str = '') -> str:
    """``median unit [min-max, n=N]``; a single value says n=1 (no spread measured)."""
    values = list(values)
    mid = statistics.median(values)
    if len(values) == 1:
        return f'{mid:{fmt}}{unit} [n=1]'
    low, high = min(values), max(values)
    sep = ' to ' if low < 0 or high < 0 else '-'  # [-0.40 to -0.28], not [-0.40--0.28]
    return f'{mid:{fmt}}{unit} [{low:{fmt}}{sep}{high:{fmt}}, n={len(values)}]'


def ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """Per-repeat ratios of paired measurements."""
    assert len(numerators) == len(denominators)
    return [a / b for a, b in zip(numerators, denominators)]


def ratio_of_medians(numerators: Sequence[float], denominators: Sequence[float], fmt: str = '.1f') -> str:
    """For two sides measured separately (not in pairs): ratio of the medians, with the widest range
    the repeats allow [min / max - max / min]."""
    mid = statistics.median(numerators) / statistics.median(denominators)
    low, high = min(numerators) / max(denominators), max(numerators) / min(denominators)
    return f'{mid:{fmt}}x [{low:{fmt}}-{high:{fmt}}x, n={len(numerators)}/{len(denominators)}]'


def run_python(args: Sequence[str], cwd: str | None = None, env: dict | None = None,
               check: bool = True) -> tuple[float, subprocess.CompletedProcess]:
    """Run ``python ARGS`` (this interpreter) as a whole process; wall seconds measured here with
    perf_counter from before the process starts to after it exits."""
    full_env = {**os.environ, 'PYTHONPATH': REPO, **(env or {})}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=full_env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if check and proc.returncode != 0:
        sys.exit(f'python {" ".join(args)[:200]} failed with status {proc.returncode}:\n'
                 f'{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}')
    return elapsed, proc


def turns(names: Sequence[str], repeat_index: int) -> list[str]:
    """The order in which the sides of a comparison run in repeat ``repeat_index``: as given in even
    repeats, reversed in odd ones, so that neither side always goes first."""
    return list(names) if repeat_index % 2 == 0 else list(names)[::-1]


def machine() -> str:
    """What the figures were measured on: cores seen by this process, memory, load before starting."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
    try:
        with open('/proc/meminfo') as f:
            kib = int(f.readline().split()[1])
        memory = f', {kib / 1024 / 1024:.0f} GiB'
    except (OSError, ValueError, IndexError):
        memory = ''
    load = os.getloadavg()[0] if hasattr(os, 'getloadavg') else float('nan')
    return f'{cores} cores{memory}, load average {load:.2f} at start, Python {sys.version.split()[0]}'


def resample(times: int) -> tuple[str, int]:
    """taxi.csv with ``times`` as many rows (sampled with replacement, fixed seed per size), written once
    under bench/out/taxi_x<times>/ (kept out of git) and reused. Returns (directory, rows)."""
    import csv
    import random

    directory = os.path.join(OUT, f'taxi_x{times}')
    path = os.path.join(directory, 'taxi.csv')
    with open(os.path.join(TAXI_DIR, 'data', 'taxi.csv'), newline='') as f:
        reader = csv.reader(f)
        header, rows = next(reader), list(reader)
    n = len(rows) * times
    if not os.path.isfile(path):
        os.makedirs(directory, exist_ok=True)
        rng = random.Random(times)
        with open(path + '.partial', 'w', newline='') as f:
            writer = csv.writer(f)
            writer.writerow(header)
            for _ in range(n):
                writer.writerow(rng.choice(rows))
        os.replace(path + '.partial', path)
    return directory, n


def _proc_stats() -> dict[int, list[bytes]]:
    """pid -> the fields of /proc/<pid>/stat after the command in parentheses (field 3 onwards)."""
    found: dict[int, list[bytes]] = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat', 'rb') as f:
                stat = f.read()
            found[int(entry)] = stat[stat.rindex(b')') + 2:].split()
        except (OSError, ValueError):
            continue  # gone meanwhile
    return found


def tree_sample(pid: int, pss: bool = False) -> tuple[int, dict[tuple[int, int], float], int]:
    """The process tree under ``pid`` now, from /proc: its resident memory in bytes (pages shared
    between processes counted once per process), each live process's own CPU seconds so far
    (user + system, keyed by (pid, start time) so that a reused pid is another process), and with
    ``pss`` its proportional memory in bytes (each shared page split among the processes sharing it,
    from smaps_rollup: what processes forked from one that loaded a library use together), else 0."""
    stats = _proc_stats()
    children: dict[int, list[int]] = {}
    for p, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(p)
    page, tick = os.sysconf('SC_PAGE_SIZE'), os.sysconf('SC_CLK_TCK')
    rss, proportional, cpu, todo = 0, 0, {}, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        fields = stats.get(p)
        if fields is None:
            continue
        try:  # fields 14, 15 (utime, stime), 22 (starttime) and 24 (rss, pages) of proc(5)
            cpu[(p, int(fields[19]))] = (int(fields[11]) + int(fields[12])) / tick
            rss += int(fields[21]) * page
        except (ValueError, IndexError):
            pass
        if pss:
            proportional += _pss(p)
    return rss, cpu, proportional


def _pss(pid: int) -> int:
    try:
        with open(f'/proc/{pid}/smaps_rollup', 'rb') as f:
            for line in f:
                if line.startswith(b'Pss:'):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass  # gone meanwhile
    return 0


@dataclass
class Measured:
    """One whole child process, measured from here."""
    seconds: float  # wall, perf_counter from before the start to after the exit
    proc: subprocess.CompletedProcess
    peak: int  # bytes: the largest resident memory of the process tree among the samples
    cpu: float  # user + system seconds of the process and every descendant reaped below it (getrusage delta)
    cpu_seen: float  # the same summed over every process the /proc samples saw in the tree (a lower bound:
    #                  what a process spent after its last sample is missed)
    peak_pss: int = 0  # bytes: the largest proportional memory (PSS) of the tree, sampled every 2 s


def run_measured(args: Sequence[str], cwd: str | None = None, env: dict | None = None,
                 check: bool = True, interval: float = 0.2) -> Measured:
    """Run ``python ARGS`` (this interpreter) as a whole process: wall time, peak resident memory of
    its process tree (sampled every ``interval`` s), and CPU seconds of the tree two ways: the
    getrusage(RUSAGE_CHILDREN) delta here (counts the descendants that were waited for, down the
    tree) and the sum of the /proc samples (counts every process seen, reaped or not). Children must
    run one at a time in this process for the delta to be this child's alone."""
    import resource
    import tempfile
    import threading

    full_env = {**os.environ, 'PYTHONPATH': REPO, **(env or {})}
    with tempfile.TemporaryFile('w+') as out, tempfile.TemporaryFile('w+') as err:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        child = subprocess.Popen([sys.executable, *args], cwd=cwd, env=full_env, stdout=out, stderr=err, text=True)
        peak, peak_pss, seen = 0, 0, {}
        done = threading.Event()

        def sample() -> None:
            nonlocal peak, peak_pss
            samples = 0
            while not done.is_set():  # PSS every 2 s: reading it costs the kernel ~10 ms per TensorFlow process
                rss, cpu, pss = tree_sample(child.pid, pss=samples % max(1, round(2.0 / interval)) == 0)
                samples += 1
                peak, peak_pss = max(peak, rss), max(peak_pss, pss)
                seen.update(cpu)
                done.wait(interval)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        returncode = child.wait()
        elapsed = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        done.set()
        sampler.join()
        out.seek(0)
        err.seek(0)
        proc = subprocess.CompletedProcess(child.args, returncode, out.read(), err.read())
    if check and proc.returncode != 0:
        sys.exit(f'python {" ".join(args)[:200]} failed with status {proc.returncode}:\n'
                 f'{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}')
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Measured(elapsed, proc, peak, cpu, sum(seen.values()), peak_pss)


def run_python_sampled(args: Sequence[str], cwd: str | None = None, env: dict | None = None,
                       check: bool = True, interval: float = 0.2
                       ) -> tuple[float, subprocess.CompletedProcess, int]:
    """``run_python``, plus the peak resident memory of the process tree (the process and every
    process it starts), in bytes, sampled every ``interval`` seconds while it runs."""
    m = run_measured(args, cwd, env, check, interval)
    return m.seconds, m.proc, m.peak


def data_components(data: str) -> list:
    """CsvExampleGen, StatisticsGen, ImportSchemaGen and Transform on the taxi CSV files in ``data``,
    with the example's curated schema and module file: what beam_workers.py and timeline.py run."""
    from sluice.components import CsvExampleGen, ImportSchemaGen, StatisticsGen, Transform

    gen = CsvExampleGen(input_base=data)
    schema = ImportSchemaGen(schema_file=os.path.join(TAXI_DIR, 'schema', 'schema.pbtxt'))
    return [gen, StatisticsGen(examples=gen.outputs['examples']), schema,
            Transform(examples=gen.outputs['examples'], schema=schema.outputs['schema'],
                      module_file=os.path.join(TAXI_DIR, 'taxi_module.py'))]
