"""Partial runs (``sluice run --from/--to/--only``), tried as users would: the nodes a selection
consumes come from one earlier run, what changed since is said, and Beam workers in other processes
keep to the selection."""
from __future__ import annotations

import os
import re
import shutil

import pytest

from dummies import Source, Upper, read_text
from sluice import BeamDagRunner, LocalDagRunner, Pipeline, PipelineError
from sluice.metadata import MetadataStore
from sluice.ui.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PENGUIN = os.path.join(REPO, 'pipelines', 'examples', 'penguin', 'penguin_pipeline.py')


def node_executions(store, run_id, node_id):
    return [r for r in store.executions(run_id) if r.node_id == node_id]


def test_partial_runs_on_small_pipeline(tmp_path, text_dir):
    source = Source(input_base=str(text_dir))
    upper = Upper(text=source.outputs['text'])
    second = Upper(text=upper.outputs['result'], suffix='!').with_id('Second')
    pipeline = Pipeline('parts', str(tmp_path / 'root'), [source, upper, second], metadata=f'sqlite:///{tmp_path}/m.db')
    with pytest.raises(PipelineError, match=r"Second needs Upper, which has never produced an output.*--from Upper"):
        LocalDagRunner(progress=False).run(pipeline, only=['Second'])
    full = LocalDagRunner(progress=False).run(pipeline, to_nodes=['Upper'])
    assert list(full.nodes) == ['Source', 'Upper'] and full.state == 'COMPLETE'
    store = MetadataStore(pipeline.metadata)
    assert store.run(full.run_id).state == 'INCOMPLETE'  # Second was not selected

    part = LocalDagRunner(progress=False).run(pipeline, from_nodes=['Second'])
    assert part.state == 'COMPLETE' and list(part.nodes) == ['Upper', 'Second']
    assert part['Upper'].reused_from == full.run_id and part['Second'].state == 'COMPLETE'
    [reuse] = node_executions(store, part.run_id, 'Upper')
    assert reuse.state == 'CACHED' and reuse.properties['reused_from_run'] == full.run_id
    assert reuse.outputs['result'][0].id == full['Upper'].outputs['result'].id
    # Resuming a partial run keeps to its selection: nothing left to do.
    assert LocalDagRunner(progress=False).resume(None, part.run_id, metadata=pipeline.metadata).state == 'COMPLETE'
    with pytest.raises(PipelineError, match='cannot be combined'):
        pipeline.select(from_nodes=['Upper'], only=['Second'])
    with pytest.raises(PipelineError, match="has no node 'Secnd'; did you mean 'Second'"):
        pipeline.select(only=['Secnd'])


def test_partial_run_of_the_penguin_pipeline_from_trainer(tmp_path, monkeypatch, capsys, penguin_cli_run):
    monkeypatch.chdir(tmp_path)
    url = f'sqlite:///{tmp_path}/m.db'
    assert main(['run', PENGUIN, '--metadata', url, '--from', 'Trainer']) == 2
    err = capsys.readouterr().err
    assert "Trainer, Trainer.onnx needs Transform, which has never produced an output" in err and 'pipeline \'penguin\'' in err
    # `sluice run PENGUIN --metadata URL` from a directory of its own: the session's (conftest.py), whose
    # store and root no other test runs anything on.
    where, full = penguin_cli_run
    assert full['status'] == 0, full['stdout'][-3000:]
    first = re.search(r'^Run (\S+) of pipeline', full['stdout'], re.M).group(1)
    monkeypatch.chdir(where)
    url = full['metadata']
    assert main(['run', PENGUIN, '--metadata', url, '--from', 'Trainer', '--no-cache', 'Trainer']) == 0
    out = capsys.readouterr().out
    second = re.search(r'^Run (\S+) of pipeline', out, re.M).group(1)
    store = MetadataStore(url)
    records = {r.node_id: r for r in store.executions(second)}
    # Trainer consumes Transform and the schema, the Evaluator CsvExampleGen: those come from the first run.
    reused = {n for n, r in records.items() if r.properties.get('reused_from_run') == first}
    assert reused == {'CsvExampleGen', 'ImportSchemaGen', 'Transform'}  # the example's curated schema
    assert all(records[n].state == 'CACHED' for n in reused)
    assert set(records) == reused | {'Trainer', 'Trainer.onnx', 'Evaluator', 'ModelValidator', 'Pusher'}
    assert records['Trainer'].state == 'COMPLETE'  # --no-cache Trainer: executed again
    assert records['Evaluator'].state == 'COMPLETE'  # a new model to measure
    assert re.search(r'Transform\s+CACHED.*reused from run ' + first, out)
    assert store.run(second).state == 'INCOMPLETE'  # StatisticsGen and ExampleValidator were not selected


def joined(tmp_path, text_dir, suffix=''):
    """Source -> Upper, and Join of both: Join needs Source's and Upper's outputs from one run."""
    # The classes as `dummies` is imported now: loading a pipeline file beside tests/ (another test, in
    # this process) drops and re-imports it, and a class that is no longer its module's own would be
    # shipped to Beam workers by value.
    from dummies import Join, Source, Upper
    source = Source(input_base=str(text_dir))
    upper = Upper(text=source.outputs['text'], suffix=suffix)
    join = Join(left=source.outputs['text'], right=upper.outputs['result'])
    return Pipeline('mix', str(tmp_path / 'root'), [source, upper, join], metadata=f'sqlite:///{tmp_path}/m.db')


def test_a_partial_run_takes_what_it_consumes_from_one_run_and_says_what_changed(tmp_path, text_dir, capsys):
    first = LocalDagRunner(progress=False).run(joined(tmp_path, text_dir))
    assert read_text(first['Join'].outputs['result']) == 'hello world|HELLO WORLD'
    (text_dir / 'b.txt').write_text('there')
    newer = LocalDagRunner(progress=False).run(joined(tmp_path, text_dir), only=['Source'])
    assert read_text(newer['Source'].outputs['text']) == 'hello there'

    # Join alone: Source's newest output (run `newer`) never met Upper; both come from `first`.
    capsys.readouterr()
    part = LocalDagRunner().run(joined(tmp_path, text_dir), only=['Join'])
    out = capsys.readouterr().out
    assert part['Source'].reused_from == part['Upper'].reused_from == first.run_id
    assert read_text(part['Join'].outputs['result']) == 'hello world|HELLO WORLD'
    assert re.search(rf'^Partial run: Source reused from run {first.run_id} \(execution #\d+\); changed since: '
                     rf'input files changed \(--from Source runs it again\); Source has a newer output \(run {newer.run_id}\) that is not used: that run '
                     r'did not produce Upper with it$', out, re.M), out
    assert 'Partial run: Upper' not in out  # nothing to say: same code, same inputs
    # Join's inputs are exactly the first run's: its execution there is a cache hit.
    assert re.search(rf'^Run \S+ COMPLETE in .*: 0 executed, 1 cached, 0 failed, 0 skipped, 2 reused from run '
                     rf'{first.run_id}$', out, re.M), out

    # Upper's code changed since: reused all the same (a partial run asks for it), and said.
    capsys.readouterr()
    LocalDagRunner().run(joined(tmp_path, text_dir, suffix='!'), only=['Join'])
    out = capsys.readouterr().out
    assert re.search(r"^Partial run: Upper reused from run \S+ \(execution #\d+\); changed since: parameter "
                     r'suffix: "" -> "!" \(--from Upper runs it again\)$', out, re.M), out

    # No run holds both with their files: refused, with the newest of each named.
    shutil.rmtree(first['Source'].outputs['text'].uri)
    with pytest.raises(PipelineError, match=rf"needs the outputs of Source, Upper from one earlier run .* no run "
                       rf"of pipeline 'mix' .* has them all .*\(the newest: Source in run {newer.run_id}; Upper in "
                       r"run \S+\)\. Include Source in the run \(e\.g\. --from Source\)"):
        LocalDagRunner(progress=False).run(joined(tmp_path, text_dir), only=['Join'])


def test_a_partial_run_on_beam_workers_in_other_processes_runs_only_its_selection(tmp_path, text_dir, monkeypatch):
    first = LocalDagRunner(progress=False).run(joined(tmp_path, text_dir))
    assert first.state == 'COMPLETE'
    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    monkeypatch.setenv('PYTHONPATH', os.pathsep.join([tests, REPO]))  # the workers import the dummies
    # As after a module file that imports `dummies` was loaded in this process: its classes are shipped
    # to the workers by value (sluice.components.module_file.pickle_by_value), so the workers' artifact
    # classes are not their module's own; nothing of them may travel back through Beam's pickling.
    import cloudpickle
    import dummies
    cloudpickle.register_pickle_by_value(dummies)
    runner = BeamDagRunner(progress=False, dag_pipeline_args=[
        '--runner=DirectRunner', '--direct_running_mode=multi_processing', '--direct_num_workers=2',
        '--pickle_library=cloudpickle'])
    try:
        part = runner.run(joined(tmp_path, text_dir, suffix='?'), only=['Upper'])
    finally:
        cloudpickle.unregister_pickle_by_value(dummies)
    store = MetadataStore(f'sqlite:///{tmp_path}/m.db')
    records = {r.node_id: r for r in store.executions(part.run_id)}
    assert sorted(records) == ['Source', 'Upper'], records  # Join was not selected: no worker ran it
    assert records['Source'].properties['reused_from_run'] == first.run_id
    assert records['Upper'].state == 'COMPLETE' and records['Upper'].properties['pid'] != os.getpid()
    assert read_text(part['Upper'].outputs['result']) == 'HELLO WORLD?'
    assert list(part.nodes) == ['Source', 'Upper']  # Join: not part of this run's outcome
