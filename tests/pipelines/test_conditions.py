"""Conditional nodes (``with Cond(predicate):``, TFX's ``tfx.dsl.Cond``): a false condition skips the
node and what takes its outputs, recorded in the store; the run completes; resume keeps the skip; the
next run decides again on its own data."""
from __future__ import annotations

import pytest

from dummies import Flaky, Join, Source, Upper
from sluice import LocalDagRunner, Pipeline
from sluice.components.conditions import Cond
from sluice.metadata import MetadataStore
from sluice.tfx import v1 as tfx


def build(root, text_dir, counter, fail_times=0, threshold=100):
    src = Source(input_base=str(text_dir))
    chars = src.outputs['text'].future()[0].custom_property('chars')
    with Cond(chars > threshold):
        long_text = Upper(text=src.outputs['text'], suffix='!').with_id('long')
    joined = Join(left=long_text.outputs['result'], right=src.outputs['text'])  # takes a conditional node's output
    with Cond(chars <= threshold):
        with Cond(chars >= 1):  # nested: both must hold
            short_text = Upper(text=src.outputs['text']).with_id('short')
    flaky = Flaky(counter=str(counter), fail_times=fail_times)
    return Pipeline('cond', str(root), [src, long_text, joined, short_text, flaky],
                    metadata=f'sqlite:///{root}/metadata.db')


def executions(store, run_id):
    out = {}
    for record in sorted(store.executions(run_id), key=lambda r: r.id):
        out.setdefault(record.node_id, []).append((record.state, record.properties.get('skipped', '')))
    return out


def test_a_false_condition_skips_the_node_and_its_consumers_and_the_run_completes(tmp_path, text_dir, capsys):
    root = tmp_path / 'root'
    result = LocalDagRunner().run(build(root, text_dir, tmp_path / 'counter'))
    assert result.state == 'COMPLETE'
    states = result.node_states()
    assert states == {'Source': 'COMPLETE', 'long': 'SKIPPED', 'Join': 'SKIPPED', 'short': 'COMPLETE',
                      'Flaky': 'COMPLETE'}
    assert result['long'].error == ("condition Source.outputs['text'].future()[0].custom_property('chars') > 100 is "
                                    'false (11 > 100)')
    assert result['Join'].error == "input 'left' comes from long, which was skipped"
    out = capsys.readouterr().out
    assert 'long                 SKIPPED' in out and '0 failed, 2 skipped' in out

    store = MetadataStore(f'sqlite:///{root}/metadata.db')
    recorded = executions(store, result.run_id)
    assert recorded['long'] == [('COMPLETE', result['long'].error)]  # a skip, without outputs
    assert not store.node_outputs(result.run_id, 'long')
    assert store.run(result.run_id).state == 'COMPLETE'

    # Decided again on each run: with more text, the long branch runs and the short one is skipped.
    (text_dir / 'c.txt').write_text('x' * 200)
    again = LocalDagRunner().run(build(root, text_dir, tmp_path / 'counter'))
    assert again.node_states() == {'Source': 'COMPLETE', 'long': 'COMPLETE', 'Join': 'COMPLETE',
                                   'short': 'SKIPPED', 'Flaky': 'CACHED'}
    assert again['short'].error.endswith("custom_property('chars') <= 100 is false (211 <= 100)")


def test_resume_keeps_the_skip_and_runs_only_what_failed(tmp_path, text_dir):
    root = tmp_path / 'root'
    failed = LocalDagRunner().run(build(root, text_dir, tmp_path / 'counter', fail_times=1))
    assert failed.state == 'FAILED' and failed['Flaky'].state == 'FAILED' and failed['long'].state == 'SKIPPED'
    resumed = LocalDagRunner().resume(build(root, text_dir, tmp_path / 'counter', fail_times=1), failed.run_id)
    assert resumed.state == 'COMPLETE'
    assert resumed['long'].state == 'SKIPPED' and resumed['long'].reused
    store = MetadataStore(f'sqlite:///{root}/metadata.db')
    recorded = executions(store, failed.run_id)
    assert [s for s, _ in recorded['long']] == ['COMPLETE'] and [s for s, _ in recorded['Join']] == ['COMPLETE']
    assert [s for s, _ in recorded['Flaky']] == ['FAILED', 'COMPLETE']


def test_predicates_are_checked_when_written():
    src = Source(input_base='/d')
    future = src.outputs['text'].future()
    with pytest.raises(TypeError, match=r'has no truth value before the run: compare it'):
        bool(future[0].custom_property('chars'))
    with pytest.raises(TypeError, match=r'is decided at run time; use it in `with Cond\(...\)`, not in an if'):
        if future[0].custom_property('chars') == 1:
            pass
    with pytest.raises(TypeError, match=r'Cond\(\) takes a predicate such as'):
        Cond(True)
    with pytest.raises(IndexError, match=r'holds one artifact per run; use \[0\]'):
        future[1]
    assert tfx.dsl.Cond is Cond
    with tfx.dsl.Cond(future[0].value == 'yes'):
        inside = Upper(text=src.outputs['text'])
    outside = Upper(text=src.outputs['text']).with_id('outside')
    assert [repr(p) for p in inside.conditions] == ["Source.outputs['text'].future()[0].value == 'yes'"]
    assert outside.conditions == [] and inside.upstream == [src]
