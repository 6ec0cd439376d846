"""Retries with backoff, timeouts and per-node cache control, tried as users would: components that
fail and recover, hang, or get killed while waiting (partial runs: test_partial_runs.py)."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from sluice.components.component import WiringError
from sluice.metadata import MetadataStore
from sluice import BeamDagRunner, LocalDagRunner, Pipeline, PipelineError, Retry
from sluice.ui.cli import main
from dummies import Flaky, Hang, Source, Upper, read_text

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def flaky_pipeline(tmp_path, fail_times, retry=None, node_retry=None, runner_root='root'):
    flaky = Flaky(counter=str(tmp_path / 'calls.txt'), fail_times=fail_times)
    if node_retry is not None:
        flaky.with_retry(node_retry)
    upper = Upper(text=flaky.outputs['text'])
    return Pipeline('flaky', str(tmp_path / runner_root), [flaky, upper], metadata=f'sqlite:///{tmp_path}/m.db',
                    retry=retry)


def node_executions(store, run_id, node_id):
    return [r for r in store.executions(run_id) if r.node_id == node_id]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f'/proc/{pid}/stat') as f:  # a zombie waiting for its parent is not running
        return f.read().split(')')[-1].split()[0] != 'Z'


# -- the API ---------------------------------------------------------------------------------------
def test_retry_policy_waits_and_rejects_nonsense():
    policy = Retry(attempts=5, delay=1.0, backoff=2.0, max_delay=3.0)
    assert [policy.wait_before(n) for n in range(1, 6)] == [0.0, 1.0, 2.0, 3.0, 3.0]
    with pytest.raises(ValueError, match='attempts counts every try'):
        Retry(attempts=0)
    with pytest.raises(ValueError, match='backoff'):
        Retry(backoff=0.5)
    with pytest.raises(WiringError, match=r'with_retry\(\) takes a Retry'):
        Upper(text=Source(input_base='x').outputs['text']).with_retry(3)
    with pytest.raises(WiringError, match=r'with_timeout\(\) takes a number of seconds above 0'):
        Upper(text=Source(input_base='x').outputs['text']).with_timeout(0)
    with pytest.raises(PipelineError, match='retry takes a Retry'):
        Pipeline('p', 'root', [Source(input_base='x')], retry=2)


# -- retries ---------------------------------------------------------------------------------------
@pytest.mark.parametrize('runner', [LocalDagRunner, BeamDagRunner])
def test_transient_failures_are_retried_with_backoff(tmp_path, runner, capsys):
    pipeline = flaky_pipeline(tmp_path, fail_times=2, retry=Retry(attempts=3, delay=0.3, backoff=2.0))
    result = runner().run(pipeline)
    out = capsys.readouterr().out
    assert result.state == 'COMPLETE', result.nodes
    assert result['Flaky'].attempt == 3
    store = MetadataStore(pipeline.metadata)
    attempts = node_executions(store, result.run_id, 'Flaky')
    assert [(r.state, r.properties['attempt']) for r in attempts] == [('FAILED', 1), ('FAILED', 2), ('COMPLETE', 3)]
    assert all('ConnectionError: worker blipped' in r.error for r in attempts[:2])
    # The waits: 0.3 s before attempt 2, 0.6 s before attempt 3 (from one execution's end to the next's start).
    gaps = [b.create_time - a.update_time for a, b in zip(attempts, attempts[1:])]
    assert gaps[0] >= 0.3 and gaps[1] >= 0.6, gaps
    assert 'attempt 1/3 FAILED' in out and 'retrying in 0.3s' in out and 'retrying in 0.6s' in out
    # Failed attempts leave nothing behind; downstream sees exactly one LIVE artifact, the good one.
    for failed in attempts[:2]:
        assert not os.path.exists(os.path.join(pipeline.pipeline_root, 'Flaky', 'text', str(failed.id)))
    [upper] = node_executions(store, result.run_id, 'Upper')
    [consumed] = upper.inputs['text']
    assert consumed.uri.endswith(f'/Flaky/text/{attempts[2].id}') and consumed.state == 'LIVE'
    assert read_text(result['Upper'].outputs['result']) == 'ATTEMPT 3'
    live = [a for r in attempts for group in r.outputs.values() for a in group if a.state == 'LIVE']
    assert len(live) == 1
    assert main(['show', result.run_id, '--metadata', pipeline.metadata]) == 0
    shown = capsys.readouterr().out
    assert re.search(r'Flaky \[Flaky\] FAILED .* \(attempt 1\)\n', shown)
    assert re.search(r'Flaky \[Flaky\] COMPLETE .* \(attempt 3\)\n', shown)


def test_a_node_policy_overrides_the_pipeline_and_runs_out(tmp_path):
    pipeline = flaky_pipeline(tmp_path, fail_times=5, retry=Retry(attempts=5, delay=0),
                              node_retry=Retry(attempts=2, delay=0))
    result = LocalDagRunner(progress=False).run(pipeline)
    assert result.state == 'FAILED'
    assert result['Flaky'].error.endswith('(attempt 2 of 2)') and result['Upper'].state == 'SKIPPED'
    assert len(node_executions(MetadataStore(pipeline.metadata), result.run_id, 'Flaky')) == 2


def test_bad_input_is_not_retried(tmp_path):
    from sluice.components import CsvExampleGen

    data = tmp_path / 'data'
    data.mkdir()
    (data / 'bad.csv').write_text('a,b\n1,2\n3\n')
    pipeline = Pipeline('bad', str(tmp_path / 'root'), [CsvExampleGen(input_base=str(data))],
                        metadata=f"sqlite:///{tmp_path}/m.db", retry=Retry(attempts=3, delay=300))
    start = time.monotonic()
    result = LocalDagRunner(progress=False).run(pipeline)
    assert time.monotonic() - start < 120  # no 300 s wait: it was never retried
    node = result['CsvExampleGen']
    assert node.state == 'FAILED' and node.attempt == 1
    assert 'DataError' in node.error and 'not retried: with the same input and code it would fail the same way' in node.error
    assert len(node_executions(MetadataStore(pipeline.metadata), result.run_id, 'CsvExampleGen')) == 1


# -- timeouts --------------------------------------------------------------------------------------
@pytest.mark.parametrize('workers', ['in this process', 'pool'])
def test_a_node_past_its_timeout_is_stopped_with_its_workers(tmp_path, workers):
    """Its executor's process (a new one; forked by the warm pool's zygote when the run asks for
    worker processes) and what that process started are stopped a second past the limit at most."""
    from sluice.components import beam_pool

    args = ['--direct_running_mode=multi_processing', '--direct_num_workers=1'] if workers == 'pool' else []
    hang = Hang(pids=str(tmp_path / 'pids.txt')).with_timeout(2)
    pipeline = Pipeline('hang', str(tmp_path / 'root'), [hang], metadata=f'sqlite:///{tmp_path}/m.db',
                        beam_pipeline_args=args)
    beam_pool.shutdown()
    try:
        if args:  # warm beforehand: the zygote's import of TensorFlow is not the node's to wait for here
            zygote = beam_pool.worker_pool(1, warm=True).zygote.process.pid
        result = LocalDagRunner(progress=False).run(pipeline)
        if args:
            assert beam_pool.current_pool().zygote.process.pid == zygote
    finally:
        beam_pool.shutdown()
    node = result['Hang']
    assert node.state == 'FAILED' and 'timed out after 2s' in node.error
    [record] = node_executions(MetadataStore(pipeline.metadata), result.run_id, 'Hang')
    assert record.state == 'FAILED' and record.properties['error_type'] == 'NodeTimeout'
    took = record.update_time - record.create_time
    assert 2.0 <= took <= 3.0, took  # stopped within a second of the limit
    executor_pid, worker_pid, parent = map(int, (tmp_path / 'pids.txt').read_text().split())
    assert parent == (zygote if args else os.getpid())
    assert not alive(executor_pid) and not alive(worker_pid)  # the executor and the process it started
    assert not os.listdir(os.path.join(pipeline.pipeline_root, 'Hang', 'text'))


KILLED_DRIVER = """
import sys
sys.path.insert(0, {repo!r})
sys.path.insert(0, {tests!r})
from sluice import LocalDagRunner, Pipeline
from dummies import Hang
hang = Hang(pids={pids!r}).with_timeout(600)
LocalDagRunner(progress=False).run(Pipeline('hang', {root!r}, [hang], metadata={url!r},
                                            beam_pipeline_args=['--direct_running_mode=multi_processing',
                                                                '--direct_num_workers=1']))
"""


def test_an_executor_forked_by_the_zygote_ends_when_its_run_is_killed(tmp_path):
    """kill -9 of the run: the executor the warm pool's zygote forked for it (with_timeout, on a run
    asking for worker processes) ends with the zygote, which ends with the run, and the process the
    executor started ends with it; nothing is left running."""
    pids = tmp_path / 'pids.txt'
    script = tmp_path / 'driver.py'
    script.write_text(KILLED_DRIVER.format(repo=REPO, tests=os.path.join(REPO, 'tests'), pids=str(pids),
                                           root=str(tmp_path / 'root'), url=f'sqlite:///{tmp_path}/m.db'))
    log = tmp_path / 'driver.log'
    with open(log, 'w') as out:  # a file, not a pipe: what the processes left behind would hold a pipe open
        driver = subprocess.Popen([sys.executable, str(script)], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not (pids.exists() and len(pids.read_text().split()) == 3) and driver.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pids.exists(), log.read_text()[-4000:]
        executor, started, zygote = map(int, pids.read_text().split())
        with open(f'/proc/{zygote}/stat') as f:  # the executor's parent: the zygote, the run's child
            assert int(f.read().split(')')[-1].split()[1]) == driver.pid
        assert alive(executor) and alive(zygote) and alive(started)
    finally:
        driver.kill()
        driver.wait(timeout=30)
    deadline = time.monotonic() + 20
    while any(alive(pid) for pid in (executor, zygote, started)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(executor) and not alive(zygote)
    assert not alive(started)  # what the executor started: its process group went with it


def test_a_timed_out_attempt_is_retried(tmp_path):
    flaky = Flaky(counter=str(tmp_path / 'calls.txt'), sleep_first=60.0).with_timeout(3)
    flaky.with_retry(Retry(attempts=2, delay=0))
    pipeline = Pipeline('slow', str(tmp_path / 'root'), [flaky, Upper(text=flaky.outputs['text'])],
                        metadata=f'sqlite:///{tmp_path}/m.db')
    result = LocalDagRunner(progress=False).run(pipeline)
    assert result.state == 'COMPLETE'
    attempts = node_executions(MetadataStore(pipeline.metadata), result.run_id, 'Flaky')
    assert [r.state for r in attempts] == ['FAILED', 'COMPLETE']
    assert 'timed out after 3s' in attempts[0].error
    # The executor ran in its own process: what it set on its output came back and was published.
    assert result['Flaky'].outputs['text'].get('chars') == len('attempt 2')
    assert read_text(result['Upper'].outputs['result']) == 'ATTEMPT 2'


# -- kill -9 while waiting to retry, then resume ---------------------------------------------------------
PIPELINE_FILE = '''
import sys
sys.path.insert(0, {repo!r})
sys.path.insert(0, {tests!r})
from sluice import Pipeline, Retry
from dummies import Flaky, Upper

def create_pipeline():
    flaky = Flaky(counter={counter!r}, fail_times=1).with_retry(Retry(attempts=3, delay=60))
    return Pipeline('killed', {root!r}, [flaky, Upper(text=flaky.outputs['text'])], metadata={url!r})
'''


def test_kill_during_a_retry_wait_then_resume(tmp_path):
    path = tmp_path / 'killed_pipeline.py'
    url = f'sqlite:///{tmp_path}/m.db'
    path.write_text(PIPELINE_FILE.format(repo=REPO, tests=os.path.join(REPO, 'tests'), counter=str(tmp_path / 'calls.txt'), root=str(tmp_path / 'root'),
                                         url=url))
    sluice = [sys.executable, '-m', 'sluice.ui.cli']
    proc = subprocess.Popen([*sluice, 'run', str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=tmp_path)
    seen = []
    for line in proc.stdout:  # the first attempt fails, then the run waits 60 s before the second
        seen.append(line)
        if 'retrying in 60.0s' in line:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    run_id = re.search(r'^Run (\S+) of pipeline', ''.join(seen), re.M).group(1)
    store = MetadataStore(url)
    assert [r.state for r in node_executions(store, run_id, 'Flaky')] == ['FAILED']

    done = subprocess.run([*sluice, 'resume', run_id, '--metadata', url], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r'Flaky\s+run\s+FAILED', done.stdout)
    attempts = node_executions(store, run_id, 'Flaky')
    assert [r.state for r in attempts] == ['FAILED', 'COMPLETE']
    assert store.run(run_id).state == 'COMPLETE'
    [upper] = [r for r in node_executions(store, run_id, 'Upper') if r.state == 'COMPLETE']
    assert upper.inputs['text'][0].id == attempts[1].outputs['text'][0].id

    # One trace across the kill: the killed process stored the run's span context with the run, its
    # failed attempt's span was exported as it ended (its run span never was: it was killed), and the
    # resume's spans continue the same trace under the same parent.
    with open(tmp_path / 'root' / '.sluice-logs' / f'{run_id}.trace.jsonl') as f:
        spans = [json.loads(line) for line in f]
    trace_id, parent = store.run(run_id).properties['trace_context'].split('-')[1:3]
    assert [(s['name'], s['attributes'].get('sluice.state')) for s in spans] == [
        ('Flaky', 'FAILED'), ('Flaky', 'COMPLETE'), ('Upper', 'COMPLETE'), ('sluice resume', 'COMPLETE')]
    assert {s['context']['trace_id'] for s in spans} == {f'0x{trace_id}'}
    resume = spans[-1]
    assert spans[0]['parent_id'] == resume['parent_id'] == f'0x{parent}'
    assert spans[1]['parent_id'] == spans[2]['parent_id'] == resume['context']['span_id']
    assert spans[0]['attributes']['sluice.run_id'] == run_id and spans[0]['status']['status_code'] == 'ERROR'


# -- per-node cache control ----------------------------------------------------------------------------
def test_with_cache_false_and_no_cache_node(tmp_path, text_dir, capsys):
    source = Source(input_base=str(text_dir))
    upper = Upper(text=source.outputs['text'])
    second = Upper(text=upper.outputs['result'], suffix='!').with_id('Second').with_cache(False)
    pipeline = Pipeline('cache', str(tmp_path / 'root'), [source, upper, second], metadata=f'sqlite:///{tmp_path}/m.db')
    LocalDagRunner(progress=False).run(pipeline)
    again = LocalDagRunner(progress=False).run(pipeline)
    assert again.node_states() == {'Source': 'CACHED', 'Upper': 'CACHED', 'Second': 'COMPLETE'}

    file = tmp_path / 'cache_pipeline.py'
    file.write_text(textwrap.dedent(f'''
        import sys
        sys.path.insert(0, {REPO!r})
        from sluice import Pipeline
        sys.path.insert(0, {os.path.join(REPO, 'tests')!r})
        from dummies import Source, Upper
        source = Source(input_base={str(text_dir)!r})
        upper = Upper(text=source.outputs['text'])
        pipeline = Pipeline('cache', {str(tmp_path / 'root')!r}, [source, upper, Upper(text=upper.outputs['result'],
                            suffix='!').with_id('Second')], metadata='sqlite:///{tmp_path}/m.db')
    '''))
    assert main(['run', '--no-cache', 'Upper', str(file)]) == 0
    out = capsys.readouterr().out
    assert re.search(r'Source\s+CACHED', out) and re.search(r'Upper\s+COMPLETE', out)
    # Downstream stays cached: an output's fingerprint comes from its execution's key, which is the same.
    assert re.search(r'Second\s+CACHED', out)
    assert main(['run', '--no-cache', 'Uper', str(file)]) == 2
    assert "has no node 'Uper'; did you mean 'Upper'?" in capsys.readouterr().err
    assert main(['run', '--no-cache', str(file)]) == 0  # the old form: every node
    assert '3 executed, 0 cached' in capsys.readouterr().out
    [last] = [r for r in MetadataStore(f'sqlite:///{tmp_path}/m.db').runs()][-1:]
    assert MetadataStore(f'sqlite:///{tmp_path}/m.db').run(last.run_id).properties['enable_cache'] == 0
