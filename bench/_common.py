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
from typing import Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAXI_DIR = os.path.join(REPO, 'pipelines', 'examples', 'taxi')


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


def _children_by_parent() -> dict[int, list[int]]:
    """pid -> its child pids, from /proc/<pid>/stat (field 4 after the command in parentheses)."""
    found: dict[int, list[int]] = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat', 'rb') as f:
                stat = f.read()
            parent = int(stat[stat.rindex(b')') + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        found.setdefault(parent, []).append(int(entry))
    return found


def tree_rss(pid: int) -> int:
    """Resident memory in bytes of a process and all its descendants now (psutil when installed,
    else /proc). Pages shared between processes of the tree are counted once per process."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total
    children, page = _children_by_parent(), os.sysconf('SC_PAGE_SIZE')
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            with open(f'/proc/{p}/statm') as f:
                total += int(f.read().split()[1]) * page
        except (OSError, ValueError, IndexError):
            pass
    return total


def run_python_sampled(args: Sequence[str], cwd: str | None = None, env: dict | None = None,
                       check: bool = True, interval: float = 0.2
                       ) -> tuple[float, subprocess.CompletedProcess, int]:
    """``run_python``, plus the peak resident memory of the process tree (the process and every
    process it starts), in bytes, sampled every ``interval`` seconds while it runs."""
    import tempfile
    import threading

    full_env = {**os.environ, 'PYTHONPATH': REPO, **(env or {})}
    with tempfile.TemporaryFile('w+') as out, tempfile.TemporaryFile('w+') as err:
        start = time.perf_counter()
        child = subprocess.Popen([sys.executable, *args], cwd=cwd, env=full_env, stdout=out, stderr=err, text=True)
        peak = 0
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, tree_rss(child.pid))
                done.wait(interval)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        returncode = child.wait()
        elapsed = time.perf_counter() - start
        done.set()
        sampler.join()
        out.seek(0)
        err.seek(0)
        proc = subprocess.CompletedProcess(child.args, returncode, out.read(), err.read())
    if check and proc.returncode != 0:
        sys.exit(f'python {" ".join(args)[:200]} failed with status {proc.returncode}:\n'
                 f'{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}')
    return elapsed, proc, peak
