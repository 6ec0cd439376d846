"""BeamDagRunner: the DAG as a Beam pipeline gives the same outcome and the same MLMD records as
LocalDagRunner, including failures, skips, cache hits and resume."""
from __future__ import annotations

import os

from dummies import ApplyModule, Count, Join, Source, Upper, read_text
from sluice.metadata import MetadataStore
from sluice import BeamDagRunner, LocalDagRunner, Pipeline
from sluice.ui.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build(root, text_dir, module, minimum=0):
    src = Source(input_base=str(text_dir))
    up = Upper(text=src.outputs['text'], suffix='!')
    mod = ApplyModule(text=src.outputs['text'], module_file=str(module))
    join = Join(left=up.outputs['result'], right=mod.outputs['result'])
    count = Count(text=src.outputs['text'], minimum=minimum)
    after = Upper(text=join.outputs['result']).with_id('AfterJoin')
    return Pipeline('same', str(root), [src, up, mod, join, count, after], metadata=f'sqlite:///{root}/m.db')


def records(store, run_id):
    """What MLMD says about a run, without ids and paths: per node its executions' type, state,
    cache key and the keys of their input and output events."""
    out = {}
    for r in store.executions(run_id):
        out.setdefault(r.node_id, []).append((r.component_type, r.state, r.cache_key, sorted(r.inputs),
                                              sorted(r.outputs)))
    return out


def test_beam_and_local_runners_record_the_same(tmp_path, text_dir):
    module = tmp_path / 'm.py'
    module.write_text('def transform(t):\n    return t[::-1]\n')
    local = LocalDagRunner(progress=False).run(build(tmp_path / 'local', text_dir, module, minimum=1000))
    beam = BeamDagRunner(progress=False).run(build(tmp_path / 'beam', text_dir, module, minimum=1000))
    assert local.node_states() == beam.node_states() == {
        'Source': 'COMPLETE', 'Upper': 'COMPLETE', 'ApplyModule': 'COMPLETE', 'Count': 'FAILED',
        'Join': 'COMPLETE', 'AfterJoin': 'COMPLETE'}
    local_store = MetadataStore(f'sqlite:///{tmp_path}/local/m.db')
    beam_store = MetadataStore(f'sqlite:///{tmp_path}/beam/m.db')
    assert records(local_store, local.run_id) == records(beam_store, beam.run_id)
    assert read_text(beam['AfterJoin'].outputs['result']) == 'HELLO WORLD!|DLROW OLLEH'
    assert beam_store.run(beam.run_id).properties['runner'] == 'beam'

    # Re-run: cache hits; resume after the fix: the same run completes, on both runners.
    again = BeamDagRunner(progress=False).run(build(tmp_path / 'beam', text_dir, module, minimum=1000))
    assert again.node_states()['Join'] == 'CACHED' and again.node_states()['Count'] == 'FAILED'
    fixed = build(tmp_path / 'beam', text_dir, module, minimum=0)
    resumed = BeamDagRunner(progress=False).resume(fixed, again.run_id)
    assert resumed.state == 'COMPLETE' and resumed['Join'].reused and not resumed['Count'].reused
    assert beam_store.run(again.run_id).state == 'COMPLETE'


def test_failed_node_skips_only_its_downstream_on_beam(tmp_path, text_dir):
    module = tmp_path / 'm.py'
    module.write_text('def transform(t):\n    raise RuntimeError("boom")\n')
    result = BeamDagRunner(progress=False).run(build(tmp_path / 'beam', text_dir, module))
    assert result.node_states() == {'Source': 'COMPLETE', 'Upper': 'COMPLETE', 'ApplyModule': 'FAILED',
                                    'Join': 'SKIPPED', 'Count': 'COMPLETE', 'AfterJoin': 'SKIPPED'}
    assert result['ApplyModule'].error == 'RuntimeError: boom'


def test_cli_runs_the_demo_on_the_beam_runner(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    demo = os.path.join(REPO, 'pipelines', 'examples', 'demo', 'demo_pipeline.py')
    assert main(['run', demo, '--runner', 'beam']) == 0
    assert '4 executed, 0 cached' in capsys.readouterr().out
    assert main(['run', demo, '--runner', 'local']) == 0
    assert '0 executed, 4 cached' in capsys.readouterr().out  # the two runners share the cache
