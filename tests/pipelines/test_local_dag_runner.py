"""LocalDagRunner on dummy components and a real in-memory ML-Metadata store: the launch sequence,
the failure path, and exactly which nodes execute or are reused in each cache scenario."""
from __future__ import annotations

import os

import pytest

from sluice.components.driver import PipelineInfo
from dummies import ApplyModule, Count, Join, Probe, ProbeExecutor, Source, Upper, UpperExecutor, read_text
from sluice import LocalDagRunner, Pipeline, launch


def executed(store, run_id):
    return sorted(r.node_id for r in store.executions(run_id) if r.state == 'COMPLETE')


def cached(store, run_id):
    return sorted(r.node_id for r in store.executions(run_id) if r.state == 'CACHED')


@pytest.fixture
def module_file(tmp_path):
    code = tmp_path / 'code'
    code.mkdir()
    (code / 'helpers.py').write_text('def reverse(t):\n    return t[::-1]\n')
    module = code / 'module.py'
    module.write_text('from helpers import reverse\n\ndef transform(text):\n    return reverse(text)\n')
    return module


def build(root, text_dir, module_file, suffix='!', enable_cache=True):
    src = Source(input_base=str(text_dir))
    up = Upper(text=src.outputs['text'], suffix=suffix)
    mod = ApplyModule(text=src.outputs['text'], module_file=str(module_file))
    join = Join(left=up.outputs['result'], right=mod.outputs['result'])
    count = Count(text=src.outputs['text'])
    return Pipeline(name='dummy', pipeline_root=str(root), components=[join, count, mod, up, src],
                    metadata=':memory:', enable_cache=enable_cache)


def run(pipeline, store):
    return LocalDagRunner(progress=False).run(pipeline, store=store)


def test_pipeline_runs_in_topological_order_and_records_everything(store, tmp_path, text_dir, module_file):
    pipeline = build(tmp_path / 'root', text_dir, module_file)
    assert pipeline.node_ids == ['Source', 'Count', 'ApplyModule', 'Upper', 'Join']
    result = run(pipeline, store)
    assert result.state == 'COMPLETE'
    assert result.node_states() == dict.fromkeys(pipeline.node_ids, 'COMPLETE')
    assert read_text(result['Join'].outputs['result']) == 'HELLO WORLD!|dlrow olleh'
    assert result['Source'].outputs['text'].get('chars') == 11

    records = {r.node_id: r for r in store.executions(result.run_id)}
    assert set(records) == set(pipeline.node_ids)
    for node_id, record in records.items():
        assert record.state == 'COMPLETE' and record.run_id == result.run_id
        assert record.component_type == node_id and len(record.cache_key) == 64
        for key, [artifact] in record.outputs.items():
            # Output URIs are <root>/<node_id>/<key>/<execution_id>/ and the artifact is LIVE there.
            assert artifact.uri == os.path.join(pipeline.pipeline_root, node_id, key, str(record.id))
            assert artifact.state == 'LIVE' and os.path.isdir(artifact.uri)
        settled = store.mlmd.get_context_type('sluice_settlement').id
        ctxs = {c.name for c in store.mlmd.get_contexts_by_execution(record.id) if c.type_id != settled}
        assert ctxs == {'dummy', result.run_id, f'dummy.{node_id}'}
    # Join's INPUT events point at exactly the artifacts Upper and ApplyModule published.
    assert records['Join'].inputs['left'][0].id == records['Upper'].outputs['result'][0].id
    assert records['Join'].inputs['right'][0].id == records['ApplyModule'].outputs['result'][0].id
    assert store.run(result.run_id).state == 'COMPLETE'


def test_executor_runs_after_a_running_execution_with_input_events(store, tmp_path, text_dir):
    seen = {}

    def hook(executor, text, result):
        [probe] = [r for r in store.executions(run_id) if r.node_id == 'Probe']
        seen['state'] = probe.state
        seen['inputs'] = {k: [a.id for a in v] for k, v in probe.inputs.items()}
        seen['outputs'] = probe.outputs
        seen['live_results'] = [a for a in store.mlmd.get_artifacts() if a.uri == result.uri]
        seen['dir'] = os.path.isdir(result.uri)

    src = Source(input_base=str(text_dir))
    probe = Probe(text=src.outputs['text'])
    pipeline = Pipeline('probe', str(tmp_path / 'root'), [src, probe])
    run_id = 'run-probe'
    ProbeExecutor.hook = hook
    try:
        result = LocalDagRunner(progress=False).run(pipeline, run_id=run_id, store=store)
    finally:
        ProbeExecutor.hook = None
    source_artifact = result['Source'].outputs['text']
    assert seen == {'state': 'RUNNING', 'inputs': {'text': [source_artifact.id]}, 'outputs': {},
                    'live_results': [], 'dir': True}
    assert result['Probe'].state == 'COMPLETE'


def test_failed_node_records_error_removes_outputs_and_stops_only_its_downstream(store, tmp_path, text_dir):
    module = tmp_path / 'bad_module.py'
    module.write_text('def transform(text):\n    raise ValueError("no transform for " + text[:5])\n')
    src = Source(input_base=str(text_dir))
    bad = ApplyModule(text=src.outputs['text'], module_file=str(module))
    after_bad = Upper(text=bad.outputs['result']).with_id('AfterBad')
    independent = Upper(text=src.outputs['text']).with_id('Independent')
    pipeline = Pipeline('fails', str(tmp_path / 'root'), [src, bad, after_bad, independent])
    result = run(pipeline, store)

    assert result.state == 'FAILED'
    assert result.node_states() == {'Source': 'COMPLETE', 'ApplyModule': 'FAILED', 'AfterBad': 'SKIPPED',
                                    'Independent': 'COMPLETE'}
    assert result['ApplyModule'].error == 'ValueError: no transform for hello'
    assert result['AfterBad'].error == 'not run: upstream ApplyModule did not succeed'

    [failed] = [r for r in store.executions(result.run_id) if r.node_id == 'ApplyModule']
    assert failed.state == 'FAILED' and failed.outputs == {}
    assert failed.properties['error_type'] == 'ValueError'
    assert failed.error == 'ValueError: no transform for hello'
    assert 'raise ValueError' in failed.properties['error_details']  # the traceback is kept
    # The output directory is gone and no artifact was ever written for it.
    assert not os.path.exists(os.path.join(pipeline.pipeline_root, 'ApplyModule', 'result', str(failed.id)))
    assert not [a for a in store.mlmd.get_artifacts() if '/ApplyModule/' in a.uri]
    # AfterBad never started: no execution at all.
    assert 'AfterBad' not in {r.node_id for r in store.executions(result.run_id)}
    assert store.run(result.run_id).state == 'FAILED'


def test_rerun_with_nothing_changed_executes_nothing(store, tmp_path, text_dir, module_file):
    pipeline = build(tmp_path / 'root', text_dir, module_file)
    first = run(pipeline, store)
    artifacts_before = len(store.mlmd.get_artifacts())
    calls_before = len(UpperExecutor.calls)
    second = run(build(tmp_path / 'root', text_dir, module_file), store)

    assert second.node_states() == dict.fromkeys(pipeline.node_ids, 'CACHED')
    assert executed(store, second.run_id) == [] and len(cached(store, second.run_id)) == 5
    assert len(store.mlmd.get_artifacts()) == artifacts_before and len(UpperExecutor.calls) == calls_before
    for record in store.executions(second.run_id):
        # The CACHED execution's OUTPUT events point at the LIVE artifacts of the first run.
        [old] = [r for r in store.executions(first.run_id) if r.node_id == record.node_id]
        assert {k: [a.id for a in v] for k, v in record.outputs.items()} == \
               {k: [a.id for a in v] for k, v in old.outputs.items()}
        assert record.cache_key == old.cache_key
        ctxs = {c.name for c in store.mlmd.get_contexts_by_execution(record.id)}
        assert second.run_id in ctxs
    assert store.run(second.run_id).state == 'COMPLETE'


def test_changing_one_parameter_reruns_that_node_and_its_downstream(store, tmp_path, text_dir, module_file):
    run(build(tmp_path / 'root', text_dir, module_file), store)
    result = run(build(tmp_path / 'root', text_dir, module_file, suffix='?'), store)
    assert executed(store, result.run_id) == ['Join', 'Upper']
    assert cached(store, result.run_id) == ['ApplyModule', 'Count', 'Source']
    assert read_text(result['Join'].outputs['result']) == 'HELLO WORLD?|dlrow olleh'


def test_changing_a_module_file_or_a_local_file_it_imports_reruns_its_node(store, tmp_path, text_dir, module_file):
    run(build(tmp_path / 'root', text_dir, module_file), store)
    helpers = module_file.parent / 'helpers.py'
    helpers.write_text('def reverse(t):\n    return "<" + t[::-1] + ">"\n')
    result = run(build(tmp_path / 'root', text_dir, module_file), store)
    assert executed(store, result.run_id) == ['ApplyModule', 'Join']
    assert read_text(result['Join'].outputs['result']) == 'HELLO WORLD!|<dlrow olleh>'

    # A comment or a docstring cannot change the output: still a cache hit.
    module_file.write_text('"""Reverses text."""\n' + module_file.read_text() + '\n# one more line\n')
    result = run(build(tmp_path / 'root', text_dir, module_file), store)
    assert executed(store, result.run_id) == []
    module_file.write_text(module_file.read_text() + '\nUNUSED = 1\n')
    result = run(build(tmp_path / 'root', text_dir, module_file), store)
    assert executed(store, result.run_id) == ['ApplyModule', 'Join']
    # Moving back to known code is a cache hit again.
    result = run(build(tmp_path / 'root', text_dir, module_file), store)
    assert executed(store, result.run_id) == []


def test_changing_or_adding_an_input_file_reruns_everything_that_reads_it(store, tmp_path, text_dir, module_file):
    run(build(tmp_path / 'root', text_dir, module_file), store)
    (text_dir / 'b.txt').write_text('there')
    result = run(build(tmp_path / 'root', text_dir, module_file), store)
    assert executed(store, result.run_id) == ['ApplyModule', 'Count', 'Join', 'Source', 'Upper']
    assert read_text(result['Join'].outputs['result']) == 'HELLO THERE!|ereht olleh'
    os.utime(text_dir / 'b.txt')  # touching a file is not a change
    result = run(build(tmp_path / 'root', text_dir, module_file), store)
    assert executed(store, result.run_id) == []
    (text_dir / 'c.txt').write_text('!')
    result = run(build(tmp_path / 'root', text_dir, module_file), store)
    assert executed(store, result.run_id) == ['ApplyModule', 'Count', 'Join', 'Source', 'Upper']


def test_cached_artifact_whose_files_were_deleted_is_not_reused(store, tmp_path, text_dir, module_file):
    import shutil
    first = run(build(tmp_path / 'root', text_dir, module_file), store)
    shutil.rmtree(first['Upper'].outputs['result'].uri)
    result = run(build(tmp_path / 'root', text_dir, module_file), store)
    # Upper recomputes the same content under a new URI; its fingerprint is unchanged, so Join,
    # whose files are intact, is still reused.
    assert executed(store, result.run_id) == ['Upper']
    new = result['Upper'].outputs['result']
    assert new.id != first['Upper'].outputs['result'].id and read_text(new) == 'HELLO WORLD!'
    assert new.fingerprint == first['Upper'].outputs['result'].fingerprint


def test_enable_cache_false_executes_every_node(store, tmp_path, text_dir, module_file):
    run(build(tmp_path / 'root', text_dir, module_file), store)
    result = run(build(tmp_path / 'root', text_dir, module_file, enable_cache=False), store)
    assert len(executed(store, result.run_id)) == 5


def test_a_different_pipeline_name_does_not_share_cache(store, tmp_path, text_dir, module_file):
    run(build(tmp_path / 'root', text_dir, module_file), store)
    other = build(tmp_path / 'root2', text_dir, module_file)
    other.name = 'other'
    result = run(other, store)
    assert len(executed(store, result.run_id)) == 5


def test_unresolvable_input_is_a_failed_execution_with_a_clear_message(store, tmp_path, text_dir):
    src = Source(input_base=str(text_dir))
    up = Upper(text=src.outputs['text'])
    store.register_run('p', 'r1', {'node_ids': '["Source", "Upper"]'})
    info = PipelineInfo(name='p', root=str(tmp_path), run_id='r1')
    result = launch(up, store, info)
    assert result.state == 'FAILED'
    assert result.error == ("Upper: input 'text' comes from Source.outputs['text'], which has no published "
                            'output in run r1; run Source first.')
    assert store.execution(result.execution_id).state == 'FAILED'


def test_existing_output_directory_is_never_overwritten(store, tmp_path, text_dir):
    root = tmp_path / 'root'
    foreign = root / 'Source' / 'text' / '1'
    foreign.mkdir(parents=True)
    (foreign / 'precious.txt').write_text('from another store')
    pipeline = Pipeline('p', str(root), [Source(input_base=str(text_dir))])
    result = run(pipeline, store)
    assert result['Source'].state == 'FAILED'
    assert 'already exists and is not empty' in result['Source'].error
    assert 'Use a fresh pipeline_root' in result['Source'].error
    assert (foreign / 'precious.txt').read_text() == 'from another store'
    assert store.mlmd.get_artifacts() == []


def test_keyboard_interrupt_cancels_the_execution_and_propagates(store, tmp_path, text_dir):
    def hook(executor, text, result):
        raise KeyboardInterrupt

    src = Source(input_base=str(text_dir))
    pipeline = Pipeline('p', str(tmp_path / 'root'), [src, Probe(text=src.outputs['text'])])
    ProbeExecutor.hook = hook
    try:
        with pytest.raises(KeyboardInterrupt):
            LocalDagRunner(progress=False).run(pipeline, run_id='r-int', store=store)
    finally:
        ProbeExecutor.hook = None
    [probe] = [r for r in store.executions('r-int') if r.node_id == 'Probe']
    assert probe.state == 'CANCELED' and probe.outputs == {}
    assert not os.path.exists(os.path.join(pipeline.pipeline_root, 'Probe', 'result', str(probe.id)))


def test_sqlite_store_cache_survives_across_processes_worth_of_connections(tmp_path, text_dir, module_file):
    from sluice.metadata import MetadataStore
    url = f'sqlite:///{tmp_path}/m.db'
    pipeline = build(tmp_path / 'root', text_dir, module_file)
    pipeline.metadata = url
    LocalDagRunner(progress=False).run(pipeline)
    again = build(tmp_path / 'root', text_dir, module_file)
    again.metadata = url
    result = LocalDagRunner(progress=False).run(again)
    assert result.node_states() == dict.fromkeys(again.node_ids, 'CACHED')
    assert MetadataStore(url).run(result.run_id).state == 'COMPLETE'


def test_ctrl_c_while_the_end_of_a_run_is_reported_says_the_run_ended_and_stopped_nothing(tmp_path, text_dir, capsys):
    """A Ctrl-C that lands after the run's last node ended (here: while its on_success callback runs) stops
    no node: the message says how the run ended, not that a node was recorded CANCELED."""
    def interrupted(notice):
        raise KeyboardInterrupt

    src = Source(input_base=str(text_dir))
    up = Upper(text=src.outputs['text'])
    url = f'sqlite:///{tmp_path}/m.db'
    pipeline = Pipeline(name='ends', pipeline_root=str(tmp_path / 'root'), components=[src, up], metadata=url,
                        on_success=[interrupted])
    with pytest.raises(KeyboardInterrupt):
        LocalDagRunner().run(pipeline)
    out = capsys.readouterr().out
    from sluice.metadata import MetadataStore
    [run] = MetadataStore(url).runs('ends')
    assert run.state == 'COMPLETE'
    assert f'Interrupted after run {run.run_id} ended COMPLETE: nothing was stopped' in out, out
    assert 'recorded CANCELED' not in out
