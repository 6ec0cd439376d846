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
