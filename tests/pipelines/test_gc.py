"""`sluice gc`: deletes what no kept run and no production model needs; the cache and lineage stay true."""
from __future__ import annotations

import os
import re
import time

from dummies import Count, Source, Upper, read_text
from sluice.components.driver import Driver
from sluice.metadata import MetadataStore
from sluice import LocalDagRunner, Pipeline
from sluice.ops import gc
from sluice.ui.cli import main
from gate_stand_in import gate


def test_gc_keeps_what_is_needed_on_a_store_with_ten_runs(tmp_path, capsys):
    root, dest = tmp_path / 'root', tmp_path / 'serving'
    url = f'sqlite:///{tmp_path}/m.db'
    results = []
    for i in range(10):  # ten runs, each with new data and a better model, each pushed
        result = LocalDagRunner(progress=False).run(gate(root, dest, 0.50 + i / 100, metadata=url))
        assert result.state == 'COMPLETE' and result['Pusher'].outputs['pushed_model'].get('pushed') == 1
        results.append(result)
    store = MetadataStore(url)

    def state(result, node, key):
        [artifact] = store.artifacts([result[node].outputs[key].id])
        return artifact.state, os.path.exists(artifact.uri)

    capsys.readouterr()
    # From another directory, without --root: the runs' files are not gc's to delete there.
    assert main(['gc', '--keep-runs', '3', '--metadata', url]) == 0
    out = capsys.readouterr().out
    assert out.startswith('Deleted 0 artifacts of 0 runs') and re.search(
        rf'Left \d+ artifacts of old runs under {root}: outside the directories gc deletes in \(\S+\); run gc there '
        rf'or add --root {root}\.', out), out
    assert state(results[0], 'Source', 'text') == ('LIVE', True)
    assert main(['gc', '--keep-runs', '3', '--dry-run', '--root', str(root), '--metadata', url]) == 0
    out = capsys.readouterr().out
    assert out.startswith('Would delete ') and 'Nothing was deleted (--dry-run).' in out
    assert state(results[0], 'Source', 'text') == ('LIVE', True)

    assert main(['gc', '--keep-runs', '3', '--root', str(root), '--metadata', url]) == 0
    out = capsys.readouterr().out
    assert out.startswith('Deleted ') and 'Kept 3 runs and everything they use, and 10 models pushed to production' in out
    for old in results[:7]:
        assert state(old, 'Source', 'text') == ('DELETED', False)
        assert state(old, 'Score', 'evaluation') == ('DELETED', False)
        assert state(old, 'FakeModel', 'model') == ('LIVE', True)  # pushed to production: kept
    for kept in results[7:]:
        for node, key in (('Source', 'text'), ('FakeModel', 'model'), ('Score', 'evaluation')):
            assert state(kept, node, key) == ('LIVE', True)
    assert len(os.listdir(dest)) >= 10  # the destination's own copies are never touched

    # A run of a kept run's inputs is still fully cached; a run of a collected run's inputs recomputes.
    again = LocalDagRunner(progress=False).run(gate(root, dest, 0.59, metadata=url))
    assert set(again.node_states().values()) == {'CACHED'}, again.node_states()
    first = LocalDagRunner(progress=False).run(gate(root, dest, 0.50, metadata=url))
    assert first['Source'].state == 'COMPLETE' and first['Source'].outputs['text'].id != results[0]['Source'].outputs['text'].id

    # Lineage still shows what was deleted.
    capsys.readouterr()
    assert main(['lineage', str(results[0]['Score'].outputs['evaluation'].id), '--metadata', url]) == 0
    assert '(DELETED by sluice gc)' in capsys.readouterr().out
    # Keeping every run deletes nothing; --older-than keeps every recent run.
    assert gc.plan(store, keep_runs=100, roots=[root]).delete == []
    assert gc.plan(store, keep_runs=1, older_than_days=1, roots=[root]).delete == []
    assert gc.plan(store, keep_runs=1, roots=[root]).delete  # while the newest run alone leaves something to collect
    assert main(['gc', '--keep-runs', '0', '--metadata', url]) == 2
    assert 'keep at least the newest run' in capsys.readouterr().err


# -- what gc must never take --------------------------------------------------------------------------
def counted(tmp_path, text_dir, minimum=0):
    """Source -> Upper, and Count (which fails below ``minimum`` characters)."""
    source = Source(input_base=str(text_dir))
    upper = Upper(text=source.outputs['text'])
    count = Count(text=source.outputs['text'], minimum=minimum)
    return Pipeline('waits', str(tmp_path / 'root'), [source, upper, count], metadata=f'sqlite:///{tmp_path}/m.db')


def test_gc_keeps_unfinished_runs_until_they_are_abandoned(tmp_path, text_dir, capsys):
    def data(text):  # new input for each run: no run's Source is another's cache hit
        (text_dir / 'b.txt').write_text(text)

    runner = LocalDagRunner(progress=False)
    data('waiting')  # an orchestrator's run between two tasks: Source done, the rest to come
    waiting = runner.run_node(counted(tmp_path, text_dir), 'waits-orchestrated', 'Source')
    assert waiting.state == 'COMPLETE'
    data('failing')  # a failed run, to be resumed (or retried by Airflow) after a fix
    failed = runner.run(counted(tmp_path, text_dir, minimum=1000))
    assert failed.node_states()['Count'] == 'FAILED' and failed['Upper'].state == 'COMPLETE'
    data('partial')  # a partial run whose selection is done: finished
    partial = runner.run(counted(tmp_path, text_dir), to_nodes=['Source'])
    done = []
    for text in ('one', 'two', 'three'):
        data(text)
        done.append(runner.run(counted(tmp_path, text_dir)))
    store = MetadataStore(f'sqlite:///{tmp_path}/m.db')
    ids = {r.run_id: r for r in store.runs('waits')}
    assert (ids['waits-orchestrated'].state, ids[failed.run_id].state, ids[partial.run_id].state) == \
        ('INCOMPLETE', 'FAILED', 'INCOMPLETE')

    found = gc.plan(store, keep_runs=1, roots=[tmp_path])
    kept = {r.run_id for r in found.kept_runs}
    assert kept == {'waits-orchestrated', failed.run_id, done[-1].run_id}, kept
    deleted = {a.id for a, _, _ in found.delete}
    assert waiting.outputs['text'].id not in deleted and failed['Upper'].outputs['result'].id not in deleted
    assert partial['Source'].outputs['text'].id in deleted and done[0]['Upper'].outputs['result'].id in deleted
    assert ' of them unfinished: ' in '\n'.join(gc.describe(found, dry_run=True))

    # A week without a sign of life: abandoned, collected like any old run.
    later = gc.plan(store, keep_runs=1, roots=[tmp_path], now=time.time() + 8 * 86400)
    assert {r.run_id for r in later.kept_runs} == {done[-1].run_id}
    assert waiting.outputs['text'].id in {a.id for a, _, _ in later.delete}
    assert {r.run_id for r in gc.plan(store, keep_runs=1, roots=[tmp_path], now=time.time() + 8 * 86400,
                                      abandoned_after_days=10).kept_runs} == kept

    # The waiting run goes on after a gc: its Source output is still there for Upper.
    capsys.readouterr()
    assert main(['gc', '--keep-runs', '1', '--root', str(tmp_path), '--metadata', f'sqlite:///{tmp_path}/m.db']) == 0
    assert re.search(r'Kept 3 runs and everything they use \(2 of them unfinished: ', capsys.readouterr().out)
    assert runner.run_node(counted(tmp_path, text_dir), 'waits-orchestrated', 'Upper').state == 'COMPLETE'


def test_gc_deletes_only_under_its_roots_whatever_the_store_says(tmp_path, text_dir):
    project = tmp_path / 'project'
    precious = tmp_path / 'precious'
    precious.mkdir()
    (precious / 'thesis.txt').write_text('years of work')
    pipeline = counted(project, text_dir)
    first = LocalDagRunner(progress=False).run(pipeline)
    (text_dir / 'b.txt').write_text('again')
    LocalDagRunner(progress=False).run(counted(project, text_dir))
    # Whoever can write the store points an old run's root at / and an artifact at other files.
    store = MetadataStore(pipeline.metadata)
    [proto] = store.mlmd.get_artifacts_by_id([first['Upper'].outputs['result'].id])
    proto.uri = str(precious)
    store.mlmd.put_artifacts([proto])
    store.update_run(first.run_id, {'pipeline_root': '/'})

    found = gc.plan(store, keep_runs=1, roots=[project])
    assert found.delete == [] and found.outside == {'/': 3}, found.outside
    found = gc.plan(store, keep_runs=1, roots=['/'])  # told in so many words: then it is the user's call
    assert str(precious) in {a.uri for a, _, _ in found.delete}
    gc.collect(store, gc.plan(store, keep_runs=1, roots=[project]))
    assert (precious / 'thesis.txt').read_text() == 'years of work'


def test_a_cache_hit_taken_while_gc_runs_keeps_its_files(tmp_path, text_dir, monkeypatch):
    root = tmp_path / 'root'
    old = LocalDagRunner(progress=False).run(counted(tmp_path, text_dir))
    (text_dir / 'b.txt').write_text('newer')
    LocalDagRunner(progress=False).run(counted(tmp_path, text_dir))
    store = MetadataStore(f'sqlite:///{tmp_path}/m.db')
    (text_dir / 'b.txt').write_text('world')  # the old run's input again: its outputs are cache hits

    # gc plans, then a run takes the old outputs as cache hits, then gc deletes: it sees the run.
    found = gc.plan(store, keep_runs=1, roots=[root])
    assert old['Upper'].outputs['result'].id in {a.id for a, _, _ in found.delete}
    hit = LocalDagRunner(progress=False).run(counted(tmp_path, text_dir))
    assert hit.node_states() == {'Source': 'CACHED', 'Upper': 'CACHED', 'Count': 'CACHED'}
    gc.collect(store, found)
    assert {a.id for a in found.rescued} >= {old['Upper'].outputs['result'].id, old['Source'].outputs['text'].id}
    assert 'Kept 3 artifacts a run took as cache hits while gc ran: ' in '\n'.join(gc.describe(found, dry_run=False))
    for node, key in (('Source', 'text'), ('Upper', 'result')):
        [artifact] = store.artifacts([hit[node].outputs[key].id])
        assert artifact.state == 'LIVE' and os.path.exists(artifact.uri), node

    # gc marks and deletes between a run's cache lookup and its record: the run sees it and executes.
    (text_dir / 'b.txt').write_text('newer')
    LocalDagRunner(progress=False).run(counted(tmp_path, text_dir))  # now the 'world' runs are old
    (text_dir / 'b.txt').write_text('world')
    lookup = Driver.cached_outputs

    def gc_in_between(self, key):
        outputs = lookup(self, key)
        if outputs is not None and self.component.id == 'Source':
            gc.collect(store, gc.plan(store, keep_runs=1, roots=[root]))
        return outputs

    monkeypatch.setattr(Driver, 'cached_outputs', gc_in_between)
    again = LocalDagRunner(progress=False).run(counted(tmp_path, text_dir))
    assert again.node_states() == {'Source': 'COMPLETE', 'Upper': 'COMPLETE', 'Count': 'COMPLETE'}, {n: r.error for n, r in again.nodes.items()}
    withdrawn = [r for r in store.executions(again.run_id) if r.state == 'CANCELED']
    assert [(r.node_id, r.properties['error_type']) for r in withdrawn] == [('Source', 'CacheHitWithdrawn')]
    assert read_text(again['Upper'].outputs['result']) == 'HELLO WORLD'
