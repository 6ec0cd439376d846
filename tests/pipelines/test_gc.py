"""`sluice gc`: deletes what no kept run and no production model needs; the cache and lineage stay true."""
from __future__ import annotations

import os

from sluice.metadata import MetadataStore
from sluice import LocalDagRunner
from sluice.ops import gc
from sluice.ui.cli import main
from test_production import gate


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
    assert main(['gc', '--keep-runs', '3', '--dry-run', '--metadata', url]) == 0
    out = capsys.readouterr().out
    assert out.startswith('Would delete ') and 'Nothing was deleted (--dry-run).' in out
    assert state(results[0], 'Source', 'text') == ('LIVE', True)

    assert main(['gc', '--keep-runs', '3', '--metadata', url]) == 0
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
    assert gc.plan(store, keep_runs=100).delete == []
    assert gc.plan(store, keep_runs=1, older_than_days=1).delete == []
    assert gc.plan(store, keep_runs=1).delete  # while the newest run alone leaves something to collect
    assert main(['gc', '--keep-runs', '0', '--metadata', url]) == 2
    assert 'keep at least the newest run' in capsys.readouterr().err
