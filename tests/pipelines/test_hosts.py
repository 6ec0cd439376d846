"""The guarantees across hosts: several processes on one machine, started at one instant, stand in for
the tasks of an orchestrator on several machines sharing one store (SQLite here, PostgreSQL for real)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

from sluice.metadata import MetadataStore

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TESTS = os.path.join(REPO, 'tests')

# N source nodes with no upstream: the first task of a run on each of N workers is one of them.
SOURCES = '''
import sys
sys.path.insert(0, {tests!r})
from sluice import Pipeline
from dummies import Source

def create_pipeline():
    return Pipeline('first-tasks', {root!r}, [Source(input_base={input!r}).with_id(f'S{{i}}') for i in range({n})],
                    metadata={url!r})
'''

# One worker: everything imported first, then the node at the agreed instant (process start-up jitter
# would otherwise spread the starts over a second or more).
AT_ONCE = textwrap.dedent('''\
    import sys, time
    from sluice.runners.run_node import run_node
    from sluice.runners.local import LocalDagRunner
    import sluice.components, sluice.orchestration.core
    path, run_id, node, at = sys.argv[1:5]
    time.sleep(max(0.0, float(at) - time.time()))
    sys.exit(run_node(path, run_id, node))
    ''')


def start_at_once(tmp_path, url, text_dir, n, run_id='r1'):
    path = tmp_path / 'first_tasks.py'
    path.write_text(SOURCES.format(tests=TESTS, root=str(tmp_path / 'root'), input=str(text_dir), n=n, url=url))
    at = time.time() + 6  # time enough for every process to import Sluice before the instant
    procs = [subprocess.Popen([sys.executable, '-c', AT_ONCE, str(path), run_id, f'S{i}', str(at)], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(n)]
    return [(p, *p.communicate(timeout=300)) for p in procs]


def test_first_tasks_of_a_run_started_at_one_instant_all_join_it(tmp_path, text_dir, store_url):
    """#23.3: every worker finds no run yet and creates it; the losers of that race join the winner's run
    (before: ML-Metadata's AlreadyExistsError from the parent-context link, a traceback, status 1)."""
    n = 6
    for round_ in range(3):
        run_id = f'r{round_}'
        done = start_at_once(tmp_path, store_url, text_dir, n, run_id)
        for proc, out, err in done:
            assert proc.returncode == 0 and 'Traceback' not in err, out + err[-3000:]
        store = MetadataStore(store_url)
        assert [r.run_id for r in store.runs('first-tasks')].count(run_id) == 1
        records = store.executions(run_id)
        assert sorted(r.node_id for r in records) == [f'S{i}' for i in range(n)]
        assert {r.state for r in records} <= {'COMPLETE', 'CACHED'}
