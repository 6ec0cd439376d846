"""Resume after a failure, an abandoned execution or a SIGKILL at any point of a launch."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest

from dummies import ApplyModule, Count, Slow, Source, Upper, read_text
from sluice.metadata import MetadataStore, MetadataStoreError
from sluice import LocalDagRunner, Pipeline
from sluice.ui.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TESTS = os.path.join(REPO, 'tests')


def build(root, text_dir, module, suffix='!', url=None, slow=0.0):
    src = Source(input_base=str(text_dir))
    mod = ApplyModule(text=src.outputs['text'], module_file=str(module))
    up = Upper(text=mod.outputs['result'], suffix=suffix)
    count = Count(text=src.outputs['text'])
    comps = [src, mod, up, count]
    if slow:
        comps.append(Slow(text=up.outputs['result'], seconds=slow))
    return Pipeline('resumable', str(root), comps, metadata=url or f'sqlite:///{root}/metadata.db')


def executions_by_node(store, run_id):
    out = {}
    for r in store.executions(run_id):
        out.setdefault(r.node_id, []).append(r.state)
    return out


@pytest.fixture
def module(tmp_path):
    path = tmp_path / 'module.py'
    path.write_text('def transform(text):\n    raise ValueError("not fixed yet")\n')
    return path


def test_resume_after_a_failure_reruns_only_what_did_not_finish(tmp_path, text_dir, module, capsys):
    pipeline = build(tmp_path / 'root', text_dir, module)
    runner = LocalDagRunner()
    first = runner.run(pipeline)
    assert first.node_states() == {'Source': 'COMPLETE', 'ApplyModule': 'FAILED', 'Upper': 'SKIPPED',
                                   'Count': 'COMPLETE'}
    module.write_text('def transform(text):\n    return text.title()\n')
    capsys.readouterr()
    resumed = runner.resume(pipeline, first.run_id)
    out = capsys.readouterr().out
    assert resumed.run_id == first.run_id and resumed.state == 'COMPLETE'
    assert re.search(r'Source\s+reuse\s+COMPLETE in this run \(execution #1\)', out)
    assert re.search(r'ApplyModule\s+run\s+FAILED: ValueError: not fixed yet', out)
    assert re.search(r'Upper\s+run\s+never started', out)
    assert out.index('Resume plan') < out.index('[2/4] ApplyModule')  # the plan comes first
    store = MetadataStore(pipeline.metadata)
    assert executions_by_node(store, first.run_id) == {
        'Source': ['COMPLETE'], 'Count': ['COMPLETE'], 'ApplyModule': ['FAILED', 'COMPLETE'], 'Upper': ['COMPLETE']}
    assert read_text(resumed['Upper'].outputs['result']) == 'HELLO WORLD!'
    assert store.run(first.run_id).state == 'COMPLETE'
    assert resumed['Source'].reused and not resumed['Upper'].reused

    capsys.readouterr()
    again = runner.resume(pipeline, first.run_id)
    assert f'Run {first.run_id} is already COMPLETE; nothing to resume.' in capsys.readouterr().out
    assert again.state == 'COMPLETE' and len(store.executions(first.run_id)) == 5


def test_changed_code_of_a_finished_node_reruns_it_and_its_downstream(tmp_path, text_dir, module, capsys):
    module.write_text('def transform(text):\n    return text\n')
    (text_dir / 'c.txt').write_text('')  # Count fails: fewer than minimum characters? no: see below
    pipeline = build(tmp_path / 'root', text_dir, module)
    pipeline.node('Count').parameters['minimum'] = 1000  # make an independent branch fail
    first = LocalDagRunner(progress=False).run(pipeline)
    assert first['Count'].state == 'FAILED' and first['Upper'].state == 'COMPLETE'
    changed = build(tmp_path / 'root', text_dir, module, suffix='?')  # Upper's parameter changed since
    capsys.readouterr()
    resumed = LocalDagRunner().resume(changed, first.run_id)
    # The plan says which part of the key changed, not only that it did.
    assert re.search(r'Upper\s+run\s+changed since: parameter suffix: "!" -> "\?"', capsys.readouterr().out)
    store = MetadataStore(pipeline.metadata)
    assert executions_by_node(store, first.run_id) == {
        'Source': ['COMPLETE'], 'ApplyModule': ['COMPLETE'], 'Upper': ['COMPLETE', 'COMPLETE'],
        'Count': ['FAILED', 'COMPLETE']}
    assert read_text(resumed['Upper'].outputs['result']).endswith('?')


def test_unknown_run_and_still_running_executions_are_clear_errors(tmp_path, text_dir, module):
    pipeline = build(tmp_path / 'root', text_dir, module)
    first = LocalDagRunner(progress=False).run(pipeline)
    with pytest.raises(MetadataStoreError, match=rf"No run 'nope' in the metadata store .* Known runs: {first.run_id}"):
        LocalDagRunner(progress=False).resume(pipeline, 'nope')
    store = MetadataStore(pipeline.metadata)
    store.register_execution('Upper', 'resumable', first.run_id, 'Upper', {}, {'cache_key': 'x'})  # this live process
    with pytest.raises(MetadataStoreError, match=r'Upper is still running \(execution #\d+, process \d+ on .*\); '
                                                 r'wait for it to finish or stop that process, then resume'):
        LocalDagRunner(progress=False).resume(pipeline, first.run_id)


def test_running_execution_of_a_dead_process_is_abandoned_then_rerun(tmp_path, text_dir, module):
    module.write_text('def transform(text):\n    return text\n')
    pipeline = build(tmp_path / 'root', text_dir, module)
    pipeline.node('Count').parameters['minimum'] = 1000
    first = LocalDagRunner(progress=False).run(pipeline)
    store = MetadataStore(pipeline.metadata)
    dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True)
    ex_id = store.register_execution('Count', 'resumable', first.run_id, 'Count', {},
                                     {'cache_key': 'x', 'pid': int(dead.stdout), 'pid_start': '1'})
    partial = tmp_path / 'root' / 'Count' / 'count' / str(ex_id)
    partial.mkdir(parents=True)
    (partial / 'value.txt').write_text('half')
    pipeline.node('Count').parameters['minimum'] = 0
    LocalDagRunner(progress=False).resume(pipeline, first.run_id)
    abandoned = store.execution(ex_id)
    assert abandoned.state == 'FAILED' and abandoned.properties['error_type'] == 'Abandoned'
    assert abandoned.error.startswith(f"abandoned: its process (pid {int(dead.stdout)} on ")
    assert not partial.exists()
    assert executions_by_node(store, first.run_id)['Count'] == ['FAILED', 'FAILED', 'COMPLETE']


RUN_SCRIPT = textwrap.dedent('''
    import sys
    sys.path.insert(0, {tests!r})
    from sluice import LocalDagRunner, load_pipeline
    # One node at a time, so that the run's state at each kill point is known (test_parallel.py kills
    # with two nodes in flight).
    LocalDagRunner(parallel=1).run(load_pipeline({pipe!r}), run_id='killed-run')
''')


def write_pipeline_file(tmp_path, text_dir, module):
    pipe = tmp_path / 'pipe.py'
    pipe.write_text(textwrap.dedent(f'''
        import sys
        sys.path.insert(0, {TESTS!r})
        sys.path.insert(0, {os.path.join(TESTS, 'pipelines')!r})
        from test_resume import build
        def create_pipeline():
            return build({str(tmp_path / 'root')!r}, {str(text_dir)!r}, {str(module)!r}, slow=1.5)
    '''))
    return pipe


def live_without_files(store):
    return [a for a in store.mlmd.get_artifacts() if a.state == 2 and not os.path.exists(a.uri)]  # 2 = LIVE


@pytest.mark.parametrize('kill_at', ['ApplyModule:start', 'ApplyModule:published', 'Slow:executor:0.5',
                                     'Upper:publish', 'Slow:published', 'Count:publish'])
def test_sigkill_at_any_point_then_resume_gives_the_uninterrupted_result(tmp_path, text_dir, module, kill_at, capsys):
    module.write_text('def transform(text):\n    return text.title()\n')
    pipe = write_pipeline_file(tmp_path, text_dir, module)
    env = {**os.environ, 'PYTHONPATH': REPO, 'SLUICE_KILL_AT': kill_at}
    proc = subprocess.run([sys.executable, '-c', RUN_SCRIPT.format(tests=TESTS, pipe=str(pipe))], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]  # really killed
    url = f'sqlite:///{tmp_path}/root/metadata.db'
    store = MetadataStore(url)
    # Killed mid-launch the run shows RUNNING; between nodes INCOMPLETE; after the last publish COMPLETE.
    assert store.run('killed-run').state == {'start': 'RUNNING', 'executor': 'RUNNING', 'publish': 'RUNNING'}.get(
        kill_at.split(':')[1], 'COMPLETE' if kill_at == 'Slow:published' else 'INCOMPLETE')

    code = main(['resume', 'killed-run', '--metadata', url])
    out = capsys.readouterr().out
    assert code == 0, out
    assert 'Resume plan for run killed-run' in out
    node = kill_at.split(':')[0]
    if not kill_at.endswith('published'):
        assert re.search(rf'{node}\s+run\s+(abandoned: its process|never started)', out)
    records = store.executions('killed-run')
    assert not [r for r in records if r.state == 'RUNNING']
    assert not live_without_files(store)
    assert store.run('killed-run').state == 'COMPLETE'
    outputs = store.node_outputs('killed-run', 'Slow')
    assert read_text(outputs['result'][0]) == '!DLROW OLLEH'  # as an uninterrupted run computes
    # Each node finished exactly once in the run.
    done = [r.node_id for r in records if r.state in ('COMPLETE', 'CACHED')]
    assert sorted(done) == sorted(['Source', 'ApplyModule', 'Upper', 'Count', 'Slow'])
