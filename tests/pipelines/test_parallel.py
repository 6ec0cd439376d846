"""Nodes the DAG does not order run at once (`sluice run --parallel N`, LocalDagRunner(parallel=N)):
they overlap in the store's own times, their downstream node waits for both, and Ctrl-C or a kill
with two nodes in flight leaves a run that `sluice resume` finishes. Real runs of small components
(tests/dummies.py), real ML-Metadata, the CLI as a user runs it."""
from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from dummies import read_text

from sluice import LocalDagRunner, load_pipeline
from sluice.metadata import MetadataStore
from sluice.orchestration.run import Progress

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TESTS = os.path.join(REPO, 'tests')


def branches_file(tmp_path, text_dir, a, b, until=''):
    """Source -> SlowA(a s) and SlowB(b s) (each ends early once the file ``until`` exists), both ->
    Join; its store is tmp_path/m.db."""
    path = tmp_path / 'branches.py'
    path.write_text(textwrap.dedent(f'''
        import sys
        sys.path.insert(0, {TESTS!r})
        from dummies import Join, Slow, Source
        from sluice import Pipeline

        def create_pipeline():
            src = Source(input_base={str(text_dir)!r})
            a = Slow(text=src.outputs['text'], seconds={a}, until={str(until)!r}).with_id('SlowA')
            b = Slow(text=src.outputs['text'], seconds={b}, until={str(until)!r}).with_id('SlowB')
            join = Join(left=a.outputs['result'], right=b.outputs['result'])
            return Pipeline('branches', {str(tmp_path / 'root')!r}, [src, a, b, join],
                            metadata={f"sqlite:///{tmp_path / 'm.db'}"!r})
        '''))
    return path, f"sqlite:///{tmp_path / 'm.db'}"


def sluice(args, cwd, **env):
    return subprocess.Popen([sys.executable, '-m', 'sluice.ui.cli', *args], cwd=cwd, text=True,
                            env={**os.environ, 'PYTHONPATH': REPO, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def executions(url, run_id):
    return MetadataStore(url, create=False).executions(run_id)


def latest(url, run_id):
    return {e.node_id: e for e in sorted(executions(url, run_id), key=lambda e: e.id)}


def wait_running(url, nodes, limit=120):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if os.path.exists(url[len('sqlite:///'):]):
            try:
                store = MetadataStore(url, create=False)
                runs = store.runs()
                if runs:
                    found = {e.node_id for e in store.executions(runs[0].run_id) if e.state == 'RUNNING'}
                    if set(nodes) <= found:
                        return runs[0].run_id
            except Exception:  # noqa: BLE001 - the store being created
                pass
        time.sleep(0.1)
    raise AssertionError(f'{nodes} never ran at the same time')


def test_nodes_the_dag_does_not_order_run_at_once_and_their_downstream_waits(tmp_path, text_dir):
    path, url = branches_file(tmp_path, text_dir, 2.0, 3.0)
    out = io.StringIO()
    result = LocalDagRunner(progress=Progress(stream=out), parallel=2).run(load_pipeline(str(path)))
    assert result.state == 'COMPLETE'
    ex = latest(url, result.run_id)
    a, b, join = ex['SlowA'], ex['SlowB'], ex['Join']
    assert a.create_time < b.update_time and b.create_time < a.update_time, 'SlowA and SlowB did not overlap'
    assert join.create_time >= max(a.update_time, b.update_time)
    assert read_text(result['Join'].outputs['result']) == 'dlrow olleh|dlrow olleh'
    # One line per event, each whole: both branches start before either ends.
    lines = out.getvalue().splitlines()
    events = [line.split()[1] + (' start' if 'running ...' in line else ' end') for line in lines if line.startswith('[')]
    assert events.index('SlowA start') < events.index('SlowB end') and events.index('SlowB start') < events.index(
        'SlowA end'), lines
    assert events[-2:] == ['Join start', 'Join end'], lines

    # One at a time: the same pipeline, in the pipeline's order, never overlapping.
    again = load_pipeline(str(path))
    again.enable_cache = False
    serial = LocalDagRunner(progress=False, parallel=1).run(again)
    ex = latest(url, serial.run_id)
    assert ex['SlowA'].update_time <= ex['SlowB'].create_time


@pytest.mark.parametrize('runner', ['local', 'beam'])
def test_ctrl_c_with_two_nodes_running_cancels_both_and_resume_finishes_the_run(tmp_path, text_dir, runner):
    go = tmp_path / 'go'
    path, url = branches_file(tmp_path, text_dir, 20, 20, until=go)
    proc = sluice(['run', str(path), '--parallel', '2', '--runner', runner], tmp_path)
    run_id = wait_running(url, ['SlowA', 'SlowB'])
    interrupted = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    # The process did not wait for the nodes' threads to end (each had 20 s to go).
    assert time.monotonic() - interrupted < 15
    assert f'Interrupted: run {run_id} stopped' in out and f'sluice resume {run_id}' in out
    ex = latest(url, run_id)
    assert (ex['SlowA'].state, ex['SlowB'].state) == ('CANCELED', 'CANCELED')
    assert 'Join' not in ex
    assert not [d for d in os.listdir(tmp_path / 'root' / '.sluice-tmp') if d.startswith('Slow')]
    go.touch()  # the resumed nodes need not take their 20 s
    resume = sluice(['resume', run_id, '--metadata', url, '--parallel', '2', '--runner', runner], tmp_path)
    out, err = resume.communicate(timeout=300)
    assert resume.returncode == 0, out + err
    ex = latest(url, run_id)
    assert {n: e.state for n, e in ex.items()} == dict.fromkeys(['Source', 'SlowA', 'SlowB', 'Join'], 'COMPLETE')


@pytest.mark.parametrize('runner', ['local', 'beam'])
def test_a_kill_with_two_nodes_running_then_resume_runs_both_again(tmp_path, text_dir, runner):
    path, url = branches_file(tmp_path, text_dir, 4, 4)
    killed = sluice(['run', str(path), '--parallel', '2', '--runner', runner], tmp_path,
                    SLUICE_KILL_AT='SlowB:executor:1.5')
    out, err = killed.communicate(timeout=300)
    assert killed.returncode == -9, out + err
    [run] = MetadataStore(url, create=False).runs()
    ex = latest(url, run.run_id)
    assert (ex['SlowA'].state, ex['SlowB'].state) == ('RUNNING', 'RUNNING')  # both in flight when killed
    resume = sluice(['resume', run.run_id, '--metadata', url, '--runner', runner], tmp_path)
    out, err = resume.communicate(timeout=300)
    assert resume.returncode == 0, out + err
    runs = [e for e in executions(url, run.run_id)]
    for node in ('SlowA', 'SlowB'):
        states = [e.state for e in sorted(runs, key=lambda e: e.id) if e.node_id == node]
        assert len(states) == 2 and states[-1] == 'COMPLETE' and states[0] != 'COMPLETE', (node, states)
    assert [e.state for e in runs if e.node_id == 'Source'] == ['COMPLETE']  # done before the kill: reused
    assert MetadataStore(url, create=False).run(run.run_id).state == 'COMPLETE'


def test_a_bound_below_one_is_a_usage_error(tmp_path, text_dir, capsys):
    from sluice.ui.cli import main

    path, url = branches_file(tmp_path, text_dir, 0, 0)
    assert main(['run', str(path), '--parallel', '0']) == 2
    assert capsys.readouterr().err == 'sluice: error: --parallel 0: give how many nodes may run at once, 1 or more.\n'
    assert not os.path.exists(url[len('sqlite:///'):])  # nothing started
    assert main(['resume', 'some-run', '--metadata', url, '--parallel', '-1']) == 2
    assert '--parallel -1: give how many nodes may run at once, 1 or more.' in capsys.readouterr().err
    assert main(['watch', str(path), '--parallel', '0']) == 2
    assert capsys.readouterr().err == 'sluice: error: --parallel 0: give how many nodes may run at once, 1 or more.\n'
    assert not os.path.exists(url[len('sqlite:///'):])


NOISY = '''
import sys, time
sys.path.insert(0, {tests!r})
from dummies import Source, Text, Upper, read_text, write_text
from sluice import Pipeline
from sluice.components import Component, Executor, Input, Output


class NoisyExecutor(Executor):
    def run(self, *, text: Text, result: Text) -> None:
        time.sleep(1.0)
        print('NOISE FROM A RUNNING NODE')
        write_text(result, read_text(text))


class Noisy(Component):
    text = Input(Text)
    result = Output(Text)
    executor = NoisyExecutor


def create_pipeline():
    src = Source(input_base={data!r})
    return Pipeline('noisy', {root!r}, [src, Noisy(text=src.outputs['text']), Upper(text=src.outputs['text'])],
                    metadata={url!r})
'''


def test_what_a_running_node_prints_stays_in_the_log_while_a_reused_node_beside_it_ends(tmp_path, text_dir):
    """A resume runs Noisy again and reuses Upper beside it: Upper's end must not hand the terminal
    back while Noisy still runs (what an executor prints goes to the run's log, not the terminal)."""
    url = f"sqlite:///{tmp_path / 'm.db'}"
    path = tmp_path / 'noisy.py'
    path.write_text(NOISY.format(tests=TESTS, data=str(text_dir), root=str(tmp_path / 'root'), url=url))
    killed = sluice(['run', str(path), '--parallel', '2'], tmp_path, SLUICE_KILL_AT='Noisy:executor:0.5')
    out, err = killed.communicate(timeout=300)
    assert killed.returncode == -9, out + err
    [run] = MetadataStore(url, create=False).runs()
    assert latest(url, run.run_id)['Upper'].state == 'COMPLETE'  # done beside Noisy before the kill
    resumed = sluice(['resume', run.run_id, '--metadata', url, '--parallel', '2'], tmp_path)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out + err
    assert re.search(r'^\[3/3\] Upper +COMPLETE .*reused', out, re.M), out
    assert 'NOISE' not in out + err, out
    log = (tmp_path / 'root' / '.sluice-logs' / f'{run.run_id}.log').read_text()
    assert 'NOISE FROM A RUNNING NODE' in log


def test_ast_parse_is_one_call_at_a_time_while_nodes_run_at_once():
    """CPython 3.11's AST builder keeps its recursion depth in state all threads share
    (python/cpython#106905): two drivers computing cache keys at once failed a node with
    'SystemError: AST constructor recursion depth mismatch' in a full run of the suite. While nodes
    run in threads, ``ast.parse`` holds a lock: a second thread waits for the first."""
    import ast
    import threading

    from sluice.orchestration.schedule import _AST_LOCK, serialise_ast_parse

    serialise_ast_parse()
    serialise_ast_parse()  # once only: not wrapped twice
    assert ast.parse.sluice_serialised and ast.parse.__wrapped__.__module__ == 'ast'
    parsed = threading.Event()
    with _AST_LOCK:  # as if another thread were parsing
        thread = threading.Thread(target=lambda: (ast.parse('x = 1'), parsed.set()))
        thread.start()
        assert not parsed.wait(0.5)
    assert parsed.wait(10)
    thread.join()


def test_the_onnx_export_runs_beside_the_evaluator(penguin_cli_run):
    """The penguin example as `sluice run` runs it (the cores available): the Trainer's ONNX export, a
    node of its own, starts once the Trainer ended and overlaps the Evaluator in the store's own times;
    the Pusher starts after both."""
    _, done = penguin_cli_run
    assert done['status'] == 0, done['stdout'][-3000:]
    run_id = re.search(r'^Run (\S+) of pipeline', done['stdout'], re.M).group(1)
    records = {r.node_id: r for r in MetadataStore(done['metadata']).executions(run_id)}
    trainer, export, evaluator, pusher = (records[n] for n in ('Trainer', 'Trainer.onnx', 'Evaluator', 'Pusher'))
    assert trainer.update_time <= export.create_time and trainer.update_time <= evaluator.create_time
    together = min(export.update_time, evaluator.update_time) - max(export.create_time, evaluator.create_time)
    assert together > 0.5, (export.create_time, export.update_time, evaluator.create_time, evaluator.update_time)
    assert pusher.create_time >= max(export.update_time, evaluator.update_time)
    assert export.outputs['onnx_model'][0].get('model_id') == trainer.outputs['model'][0].id


def test_the_beam_dag_runner_runs_a_wave_of_nodes_at_once_and_the_next_after_it(tmp_path, text_dir):
    """BeamDagRunner: the nodes of one depth in the DAG are one Beam stage, spread over the
    DirectRunner's worker threads (``parallel``); the next depth's stage runs after it."""
    from sluice import BeamDagRunner
    from sluice.runners.beam import waves

    path, url = branches_file(tmp_path, text_dir, 2.0, 3.0)
    pipeline = load_pipeline(str(path))
    assert waves(pipeline.components) == [['Source'], ['SlowA', 'SlowB'], ['Join']]
    result = BeamDagRunner(progress=False, parallel=2).run(pipeline)
    assert result.state == 'COMPLETE', {k: n.error for k, n in result.nodes.items() if n.error}
    ex = latest(url, result.run_id)
    a, b, join = ex['SlowA'], ex['SlowB'], ex['Join']
    assert a.create_time < b.update_time and b.create_time < a.update_time, 'SlowA and SlowB did not overlap'
    assert join.create_time >= max(a.update_time, b.update_time) >= ex['Source'].update_time
    assert read_text(result['Join'].outputs['result']) == 'dlrow olleh|dlrow olleh'

    again = load_pipeline(str(path))
    again.enable_cache = False
    serial = BeamDagRunner(progress=False, parallel=1).run(again)
    ex = latest(url, serial.run_id)
    first, second = sorted([ex['SlowA'], ex['SlowB']], key=lambda e: e.create_time)
    assert first.update_time <= second.create_time, 'parallel=1: one node at a time'
