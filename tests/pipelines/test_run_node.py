"""`sluice run-node`: one node of a run per process, as Airflow or KFP tasks (or several machines
sharing a store) run them; the same driver, cache, lease, fencing and resume as `sluice run`."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from outputs import assert_same_columns, records, transformed_columns

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


PENGUIN_FILE = '''
import os
import sys
sys.path.insert(0, {penguin!r})
from penguin_pipeline import create_pipeline as penguin

def create_pipeline():
    pipeline = penguin(root={root!r}, train_steps=20, metadata={url!r})  # as conftest.py's penguin_run
    pipeline.name = {name!r}  # its own name: the store is shared with other tests
    return pipeline
'''


def test_the_penguin_pipeline_node_by_node_on_postgresql_equals_a_sluice_run(tmp_path, postgres_url, penguin_run):
    """What an orchestrator does with the penguin pipeline: each node a `sluice run-node` process of
    its own, started as soon as its upstream nodes have completed, at most two at a time, on a shared
    PostgreSQL store. Compared with `sluice run` of the same file: afterwards on the same store it
    reuses every node, and an independent run on a store of its own produced the same outputs (the
    session's run of the penguin example with the same parameters, conftest.py's penguin_run: the
    same LocalDagRunner `sluice run` drives, with a SQLite store and a root of its own)."""
    import time
    import uuid

    from sluice.components.evaluator import load_metrics_summary
    from sluice.components.statistics_gen import load_statistics
    from sluice.integrations.tasks import node_tasks
    from sluice.dsl.pipeline import load_pipeline

    name = f'penguin-{uuid.uuid4().hex[:8]}'
    path = tmp_path / 'penguin_nodes.py'
    path.write_text(PENGUIN_FILE.format(penguin=os.path.join(REPO, 'pipelines', 'examples', 'penguin'), name=name,
                                        root=str(tmp_path / 'root'), url=postgres_url))
    cli = [sys.executable, '-m', 'sluice.ui.cli']

    upstream = {t.node_id: set(t.upstream) for t in node_tasks(load_pipeline(str(path)))}
    run_id = f'nodes-{uuid.uuid4().hex[:8]}'
    running, spans, done = {}, {}, set()
    machines = [tmp_path / 'machine-a', tmp_path / 'machine-b']  # each process starts in a directory of its own
    for m in machines:
        m.mkdir()
    while len(done) < len(upstream):
        for node in [n for n in upstream if n not in done and n not in running and upstream[n] <= done]:
            if len(running) < 2:
                running[node] = subprocess.Popen([*cli, 'run-node', str(path), '--run-id', run_id, '--node', node],
                                                 cwd=machines[len(spans) % 2], text=True, stdout=subprocess.PIPE,
                                                 stderr=subprocess.STDOUT)
                spans[node] = [time.monotonic(), None]
        time.sleep(0.1)
        for node, proc in list(running.items()):
            if proc.poll() is not None:
                out = proc.communicate()[0]
                assert proc.returncode == 0, f'{node}:\n{out}'
                spans[node][1] = time.monotonic()
                done.add(node)
                del running[node]
    # The DAG lets CsvExampleGen and ImportSchemaGen run at once, and they did, in processes of their own.
    [(a0, a1), (b0, b1)] = spans['CsvExampleGen'], spans['ImportSchemaGen']
    assert max(a0, b0) < min(a1, b1)

    store = MetadataStore(postgres_url)
    run = store.run(run_id)
    assert run.state == 'COMPLETE' and sorted(run.node_ids) == sorted(upstream)
    by_node = {r.node_id: r for r in store.executions(run_id)}
    assert {r.state for r in by_node.values()} == {'COMPLETE'} and len(by_node) == len(upstream) == 9
    assert len({r.properties['pid'] for r in by_node.values()}) == 9  # one process per node
    assert os.listdir(tmp_path / 'root' / 'serving')  # the model went to production

    # `sluice run` of the same file now reuses every node, each the artifacts run-node recorded.
    again = subprocess.run([*cli, 'run', str(path)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and '0 executed, 9 cached' in again.stdout, again.stdout + again.stderr
    cached_run = again.stdout.split()[1]
    for r in store.executions(cached_run):
        assert r.state == 'CACHED'
        assert {k: [a.id for a in v] for k, v in r.outputs.items()} == \
            {k: [a.id for a in v] for k, v in by_node[r.node_id].outputs.items()}

    # The independent run: the same nodes and outputs, the same examples byte for byte, the same
    # statistics, schema and transformed values, and a model trained and judged the same.
    _, reference = penguin_run
    assert reference['state'] == 'COMPLETE' and reference['node_states'] == dict.fromkeys(upstream, 'COMPLETE'), \
        reference
    ref_store = MetadataStore(reference['metadata'])
    ref = {r.node_id: r for r in ref_store.executions(reference['run_id'])}
    assert {n: sorted(r.outputs) for n, r in ref.items()} == {n: sorted(r.outputs) for n, r in by_node.items()}

    def output(records_of, node, key):
        [artifact] = records_of[node].outputs[key]
        return artifact
    for split in ('train', 'eval'):
        assert sorted(records(output(by_node, 'CsvExampleGen', 'examples'), split)) == \
            sorted(records(output(ref, 'CsvExampleGen', 'examples'), split))
        assert load_statistics(output(by_node, 'StatisticsGen', 'statistics'), split) == \
            load_statistics(output(ref, 'StatisticsGen', 'statistics'), split)
        assert_same_columns(transformed_columns(output(by_node, 'Transform', 'transformed_examples'), split),
                            transformed_columns(output(ref, 'Transform', 'transformed_examples'), split))
    schemas = [os.path.join(output(x, 'ImportSchemaGen', 'schema').uri, 'schema.pbtxt') for x in (by_node, ref)]
    with open(schemas[0]) as a, open(schemas[1]) as b:
        assert a.read() == b.read()
    metrics = [load_metrics_summary(output(x, 'Evaluator', 'evaluation')) for x in (by_node, ref)]
    for summary in metrics:  # each store's own ids and each run's own destination; no baseline (a first push)
        assert summary.pop('push_destination').endswith('/serving') and summary['baseline_model'] is None
        assert summary.pop('candidate_model_id') > 0 and summary['slices']
    # The same model (seeded training) measured the same, up to float summation order.
    slices = [summary.pop('slices') for summary in metrics]
    assert metrics[0] == metrics[1]
    flat = [{(name, metric): value for name, s in x.items() for metric, value in s['candidate'].items()} for x in slices]
    assert len(flat[0]) >= 8 and flat[0] == pytest.approx(flat[1], rel=1e-5)  # 4 slices, loss and accuracy
    assert [output(x, 'ModelValidator', 'blessing').get('blessed') for x in (by_node, ref)] == [1, 1]
