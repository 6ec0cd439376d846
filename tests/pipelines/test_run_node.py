"""`sluice run-node`: one node of a run per process, as Airflow or KFP tasks (or several machines
sharing a store) run them; the same driver, cache, lease, fencing and resume as `sluice run`. The
penguin example node by node on PostgreSQL, compared with `sluice run` of it, is tests/pipelines/
test_export.py's Airflow test (Airflow starts one run-node process per node)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sluice.metadata import MetadataStore

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PIPELINE = '''
import sys
sys.path.insert(0, {tests!r})
from sluice import Pipeline, Retry
from dummies import Flaky, Source, Upper

def create_pipeline():
    source = Source(input_base={input!r})
    flaky = Flaky(counter={counter!r}, fail_times=1).with_retry(Retry(attempts=3, delay=0))
    upper = Upper(text=source.outputs['text'])
    shout = Upper(text=flaky.outputs['text'], suffix='!').with_id('Shout')
    return Pipeline('nodes', {root!r}, [source, flaky, upper, shout], metadata={url!r})
'''


def nodes_of(tmp_path, text_dir, url):
    path = tmp_path / 'nodes_pipeline.py'
    path.write_text(PIPELINE.format(tests=os.path.join(REPO, 'tests'), input=str(text_dir), url=url,
                                    counter=str(tmp_path / 'calls.txt'), root=str(tmp_path / 'root')))

    def run_node(node, run_id='r1', *extra, env=None):
        return subprocess.run([sys.executable, '-m', 'sluice.ui.cli', 'run-node', str(path), '--run-id', run_id,
                               '--node', node, *extra], capture_output=True, text=True, cwd=tmp_path,
                              env={**os.environ, **(env or {})})
    return run_node, MetadataStore(url)


@pytest.fixture
def setup(tmp_path, text_dir):
    return nodes_of(tmp_path, text_dir, f'sqlite:///{tmp_path}/m.db')


def states(store, run_id, node):
    return [r.state for r in store.executions(run_id) if r.node_id == node]


def test_nodes_of_one_run_in_separate_processes(setup):
    run_node, store = setup
    early = run_node('Upper')  # its upstream has not run in r1 yet (the run is created all the same)
    assert early.returncode == 2
    assert 'Upper needs Source (never started) to have completed in run r1 first; run sluice run-node' in early.stderr
    assert states(store, 'r1', 'Upper') == []

    for node in ('Source', 'Upper'):
        done = run_node(node)
        assert done.returncode == 0, done.stdout + done.stderr
    again = run_node('Source')  # a task retried after it succeeded: nothing runs twice
    assert again.returncode == 0 and states(store, 'r1', 'Source') == ['COMPLETE']
    assert 'reused from earlier in this run' in again.stdout

    # The caller retries (--no-retry): one attempt per process, whatever the node's policy says.
    first = run_node('Flaky', 'r1', '--no-retry')
    assert first.returncode == 1 and 'ConnectionError: worker blipped (call 1)' in first.stdout
    assert run_node('Flaky', 'r1', '--no-retry').returncode == 0
    assert states(store, 'r1', 'Flaky') == ['FAILED', 'COMPLETE']
    assert run_node('Shout').returncode == 0
    run = store.run('r1')
    assert run.state == 'COMPLETE' and run.properties['runner'] == 'run-node'
    # Same node set and the same cache as `sluice run`: a full run now reuses every node.
    full = subprocess.run([sys.executable, '-m', 'sluice.ui.cli', 'run', str(store.run('r1').properties['pipeline_file'])],
                          capture_output=True, text=True, cwd=os.path.dirname(store.url[len('sqlite:///'):]))
    assert full.returncode == 0 and '0 executed, 4 cached' in full.stdout, full.stdout + full.stderr


def test_a_killed_node_is_taken_over_by_the_next_attempt(setup):
    run_node, store = setup
    assert run_node('Source').returncode == 0
    killed = run_node('Upper', env={'SLUICE_KILL_AT': 'Upper:executor:0'})
    assert killed.returncode == -9
    assert states(store, 'r1', 'Upper') == ['RUNNING']
    again = run_node('Upper')  # its process is gone: the execution is abandoned, the node runs again
    assert again.returncode == 0, again.stdout + again.stderr
    [abandoned, done] = [r for r in store.executions('r1') if r.node_id == 'Upper']
    assert abandoned.state == 'FAILED' and abandoned.error.startswith('abandoned:') and done.state == 'COMPLETE'
    assert not os.path.exists(os.path.join(store.run('r1').properties['pipeline_root'], 'Upper', 'result',
                                           str(abandoned.id)))


def test_a_run_driven_by_run_node_and_killed_is_finished_by_resume(setup, tmp_path):
    run_node, store = setup
    assert run_node('Source').returncode == 0
    assert run_node('Upper', env={'SLUICE_KILL_AT': 'Upper:executor:0'}).returncode == -9
    resumed = subprocess.run([sys.executable, '-m', 'sluice.ui.cli', 'resume', 'r1', '--metadata', store.url],
                             capture_output=True, text=True, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert 'Source' in resumed.stdout and 'reuse' in resumed.stdout.split('Source', 1)[1].split('\n', 1)[0]
    run = store.run('r1')
    assert run.state == 'COMPLETE'
    assert [r.state for r in store.executions('r1') if r.node_id == 'Upper'] == ['FAILED', 'COMPLETE']


def test_unknown_node_and_help(setup):
    run_node, _ = setup
    bad = run_node('Uper')
    assert bad.returncode == 2 and "has no node 'Uper'; did you mean 'Upper'?" in bad.stderr
    usage = subprocess.run([sys.executable, '-m', 'sluice.ui.cli', 'run-node', '--help'], capture_output=True, text=True)
    assert '--run-id' in usage.stdout and '--no-retry' in usage.stdout


def test_two_machines_run_branches_of_one_run_at_once_on_postgresql(tmp_path, text_dir, postgres_url):
    """Independent nodes of one run, each in its own process at the same moment, sharing a PostgreSQL
    store and a pipeline root, as two machines (or two Airflow workers) would."""
    import uuid

    run_node, store = nodes_of(tmp_path, text_dir, postgres_url)
    run_id = f'pg-{uuid.uuid4().hex[:8]}'
    for wave in (('Source', 'Flaky'), ('Upper', 'Shout')):
        procs = [subprocess.Popen([sys.executable, '-m', 'sluice.ui.cli', 'run-node', str(tmp_path / 'nodes_pipeline.py'),
                                   '--run-id', run_id, '--node', node], cwd=tmp_path, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True) for node in wave]
        outs = [p.communicate(timeout=300)[0] for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outs
    run = store.run(run_id)
    assert run.state == 'COMPLETE' and set(run.node_ids) == {'Source', 'Flaky', 'Upper', 'Shout'}
    assert states(store, run_id, 'Flaky') == ['FAILED', 'COMPLETE']  # its own retry policy, in its process
    pids = {r.properties['pid'] for r in store.executions(run_id)}
    assert len(pids) == 4  # each node's executions came from its own process

