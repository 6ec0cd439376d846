"""One source of truth for what is in production: the destination.

The gate (measure, decide, act) on small stand-in models, with the real EvaluatorDriver (the baseline
is the model in production at the destination), the ModelValidator's blessing identity, the real
Pusher, a real SQLite ML-Metadata store and real files: the jams of a store-side baseline (a push
killed before its record, a rollback by hand, two stores sharing a destination, a cached push whose
version was deleted, a baseline found in another destination), rollback, promote, and
``sluice production``. A stand-in
model is a SavedModel-shaped directory whose ``saved_model.pb`` says its accuracy; ``Score`` measures
it with the Evaluator's driver and metrics.json format, and ``Judge`` blesses a strictly better one
with the ModelValidator's blessing format. The last test runs the real Evaluator (TFMA) on a
SavedModel pushed by hand.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

from gate_stand_in import gate
from sluice import LocalDagRunner
from sluice.components import Model, ModelEvaluation
from sluice.components.production.destination import PUSH_RECORD, content_fingerprint, production, versions
from sluice.components.production.record import store_identity
from sluice.metadata import MetadataStore
from sluice.ui.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TESTS = os.path.join(REPO, 'tests')


def run(root, dest, acc, **kwargs):
    pipeline = gate(root, dest, acc, **kwargs)
    result = LocalDagRunner(progress=False).run(pipeline)
    assert result.state == 'COMPLETE', {k: n.error for k, n in result.nodes.items() if n.error}
    return result, MetadataStore(pipeline.metadata)


def pushed(result):
    return result['Pusher'].outputs['pushed_model']


def blessing(result):
    return result['Judge'].outputs['blessing']


def read_json(*path):
    with open(os.path.join(*path)) as f:
        return json.load(f)


def current(dest):
    return production(str(dest)).current


def listing(dest):
    return sorted((os.path.relpath(d, dest), sorted(f)) for d, _, f in os.walk(dest))


def sluice(*args, capsys=None):
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_pipeline_gives_the_evaluator_the_pushers_destination(tmp_path):
    pipeline = gate(tmp_path / 'root', tmp_path / 'serving', 0.8)
    assert pipeline.node('Score').parameters['push_destination'] == str(tmp_path / 'serving')


def test_an_unchanged_rerun_after_a_push_stays_fully_cached(tmp_path, capsys):
    root, dest = tmp_path / 'root', tmp_path / 'serving'
    first, store = run(root, dest, 0.8)
    assert pushed(first).get('pushed') == 1 and blessing(first).get('baseline_version') == ''
    v1 = current(dest)
    assert v1.record['model']['store_id'] == store_identity(store) and v1.record['model']['pipeline'] == 'gate'
    assert v1.record['model']['run_id'] == first.run_id
    second, _ = run(root, dest, 0.8)
    assert set(second.node_states().values()) == {'CACHED'}
    assert versions(str(dest)) == [v1.number]

    code, out, _ = sluice('production', dest, capsys=capsys)
    assert code == 0
    assert out.startswith(f'Production at {dest}: version {v1.number}\n  kind:        push, ')
    assert f"  model:       artifact #{v1.record['model']['artifact_id']} of store {store_identity(store)[:8]}, " \
           f'pipeline gate, run {first.run_id}\n' in out
    assert f'  fingerprint: {v1.fingerprint}\n' in out and '  measured against: no baseline\n' in out
    assert '  blessing:    BLESSED' in out and '  metric:      accuracy = 0.8000\n' in out
    assert 'History (oldest first):' in out and 'current' in out


def test_a_push_killed_before_its_record_then_a_new_run_with_a_better_model_pushes(tmp_path):
    root, dest = tmp_path / 'root', tmp_path / 'serving'
    script = textwrap.dedent(f'''
        import sys
        sys.path[:0] = [{TESTS!r}, {os.path.join(TESTS, 'pipelines')!r}]
        from pathlib import Path
        from test_production import gate
        from sluice import LocalDagRunner
        LocalDagRunner(progress=False).run(gate(Path({str(root)!r}), Path({str(dest)!r}), 0.8))
    ''')
    proc = subprocess.run([sys.executable, '-c', script], env={**os.environ, 'PYTHONPATH': REPO,
                                                              'SLUICE_KILL_AT': 'Pusher:publish'},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stdout[-2000:] + proc.stderr[-2000:]
    v1 = current(dest)  # renamed into place, never recorded in the store
    assert v1 is not None and v1.record['kind'] == 'push'
    store = MetadataStore(f'sqlite:///{root}/metadata.db')
    assert not [a for a in store.mlmd.get_artifacts_by_type('PushedModel') if a.state == 2]

    better, _ = run(root, dest, 0.9)  # a NEW run, not a resume
    assert blessing(better).get('blessed') == 1 and blessing(better).get('baseline_version') == str(v1.number)
    assert pushed(better).get('pushed') == 1 and int(pushed(better).get('pushed_version')) > v1.number
    assert current(dest).record['baseline'] == v1.ref()

    again, _ = run(root, dest, 0.8)  # the killed run's model: measured against production, refused
    assert blessing(again).get('blessed') == 0 and pushed(again).get('pushed') == 0


def test_the_model_of_a_push_killed_before_its_record_is_already_in_production_for_a_new_run(tmp_path):
    root, dest = tmp_path / 'root', tmp_path / 'serving'
    first, store = run(root, dest, 0.8)
    v1 = current(dest)
    # What a kill between the rename and the record leaves: the version, and no PushedModel in the store.
    shutil.rmtree(pushed(first).uri)
    new, _ = run(root, dest, 0.8)
    assert new['Pusher'].state == 'COMPLETE' and new['Score'].state == 'CACHED'
    assert pushed(new).get('pushed') == 1 and pushed(new).get('reason') == \
        f'already in production as version {v1.number} (pushed earlier; nothing copied)'
    assert versions(str(dest)) == [v1.number]


def test_a_rollback_by_hand_does_not_jam_the_gate(tmp_path):
    root, dest = tmp_path / 'root', tmp_path / 'serving'
    run(root, dest, 0.8)
    v1 = current(dest)
    second, _ = run(root, dest, 0.9)
    v2 = current(dest)
    assert v2.number > v1.number
    shutil.rmtree(dest / str(v2.number))  # rolled back by hand: version 1 serves again
    third, _ = run(root, dest, 0.85)  # better than what is in production (0.8), worse than the deleted 0.9
    assert blessing(third).get('baseline_version') == str(v1.number) and blessing(third).get('blessed') == 1
    assert pushed(third).get('pushed') == 1 and int(pushed(third).get('pushed_version')) > v2.number


def test_two_stores_sharing_one_destination(tmp_path):
    dest = tmp_path / 'serving'
    first, store1 = run(tmp_path / 'one', dest, 0.8, label='one', name='one')
    second, store2 = run(tmp_path / 'two', dest, 0.9, label='two', name='two')
    model1, model2 = (r['FakeModel'].outputs['model'] for r in (first, second))
    assert model1.id == model2.id  # same integer id in two stores: ids alone cannot tell the models apart
    assert blessing(second).get('baseline_version') == pushed(first).get('pushed_version')
    assert pushed(second).get('pushed') == 1
    assert pushed(second).get('pushed_version') != pushed(first).get('pushed_version')
    records = [read_json(dest, pushed(r).get('pushed_version'), PUSH_RECORD)['model'] for r in (first, second)]
    assert [r['store_id'] for r in records] == [store_identity(store1), store_identity(store2)]
    assert store_identity(store1) != store_identity(store2)

    worse, _ = run(tmp_path / 'one', dest, 0.85, label='one', name='one')  # measured against store two's model
    assert blessing(worse).get('baseline_version') == pushed(second).get('pushed_version')
    assert blessing(worse).get('blessed') == 0 and pushed(worse).get('pushed') == 0
    best, _ = run(tmp_path / 'one', dest, 0.95, label='one', name='one')
    assert pushed(best).get('pushed') == 1
    assert current(dest).record['model']['store_id'] == store_identity(store1)


def test_a_cached_push_whose_version_was_deleted_pushes_again(tmp_path, capsys):
    root, dest = tmp_path / 'root', tmp_path / 'serving'
    run(root, dest, 0.8)
    v1 = current(dest)
    second, _ = run(root, dest, 0.9)
    v2 = current(dest)
    shutil.rmtree(dest / str(v2.number))
    capsys.readouterr()
    again, _ = run(root, dest, 0.9)  # same model, same production (version 1) as when it was measured
    states = again.node_states()
    assert states['Score'] == states['Judge'] == 'CACHED' and states['Pusher'] == 'COMPLETE'
    assert f'but {dest / str(v2.number)} is gone; pushing again' in capsys.readouterr().out
    assert pushed(again).get('pushed') == 1 and int(pushed(again).get('pushed_version')) > v2.number
    assert current(dest).fingerprint == v2.fingerprint and current(dest).record['baseline'] == v1.ref()


def test_the_baseline_is_production_at_the_pushers_destination_only(tmp_path):
    root = tmp_path / 'root'
    run(root, tmp_path / 'serving-a', 0.8)
    # The same pipeline (name, store) now pushes elsewhere: nothing is in production there.
    elsewhere, _ = run(root, tmp_path / 'serving-b', 0.7)
    assert blessing(elsewhere).get('baseline_model_id') == 0 and blessing(elsewhere).get('blessed') == 1
    assert pushed(elsewhere).get('pushed') == 1 and versions(str(tmp_path / 'serving-b'))


def test_a_corrupt_newest_version_is_skipped_with_a_message(tmp_path, capsys):
    root, dest = tmp_path / 'root', tmp_path / 'serving'
    run(root, dest, 0.8)
    v1 = current(dest)
    run(root, dest, 0.9)
    v2 = current(dest)
    (dest / str(v2.number) / 'saved_model.pb').write_text('accuracy=0.99\ntampered')
    capsys.readouterr()
    third, _ = run(root, dest, 0.85)
    out = capsys.readouterr().out
    assert f'Score: version {v2.number} at {dest} is incomplete (its files do not match the fingerprint in its push ' \
           'record' in out
    assert f'): Sluice measures against version {v1.number} ({v1.fingerprint[:19]}); note that a server serving the ' \
           "highest version (TF Serving's default policy) would try to load version " \
           f'{v2.number}: fix or remove it' in out
    assert f'Pusher: version {v2.number} at {dest} is incomplete' in out
    assert blessing(third).get('baseline_version') == str(v1.number) and pushed(third).get('pushed') == 1
    code, out, _ = sluice('production', dest, capsys=capsys)
    assert code == 0 and f'Production at {dest}: version {pushed(third).get("pushed_version")}' in out


def test_a_savedmodel_pushed_by_hand_is_the_baseline(tmp_path):
    root, dest = tmp_path / 'root', tmp_path / 'serving'
    (dest / '5').mkdir(parents=True)
    (dest / '5' / 'saved_model.pb').write_text('accuracy=0.85\nby hand')
    worse, store = run(root, dest, 0.8)
    assert blessing(worse).get('baseline_version') == '5' and blessing(worse).get('blessed') == 0
    evaluation = worse['Score'].outputs['evaluation']
    metrics = read_json(evaluation.uri, 'metrics.json')
    assert metrics['baseline_fingerprint'] == content_fingerprint(str(dest / '5'))
    assert metrics['push_destination'] == str(dest) and metrics['baseline_model']['kind'] == 'hand-pushed'
    # The Evaluator's execution has an INPUT event for it: an external artifact for the version directory.
    [execution] = [r for r in store.executions(worse.run_id) if r.node_id == 'Score']
    [base] = execution.inputs['baseline_model']
    assert base.uri == str(dest / '5') and base.fingerprint == metrics['baseline_fingerprint']
    [proto] = store.mlmd.get_artifacts_by_id([base.id])
    assert proto.custom_properties['external_id'].string_value == f'{dest}@5#{base.fingerprint}'
    better, _ = run(root, dest, 0.9)
    assert better['Score'].outputs['evaluation'].get('baseline_model_id') == base.id  # the same artifact, reused
    assert pushed(better).get('pushed') == 1 and int(pushed(better).get('pushed_version')) > 5


def test_rollback_then_a_better_candidate_is_pushed_and_a_worse_one_refused(tmp_path, capsys):
    root, dest = tmp_path / 'root', tmp_path / 'serving'
    url = f'sqlite:///{root}/metadata.db'
    run(root, dest, 0.8)
    v1 = current(dest)
    run(root, dest, 0.9)
    v2 = current(dest)
    code, out, err = sluice('rollback', dest, '--metadata', url, '--reason', 'v2 misbehaves', capsys=capsys)
    assert code == 0, err
    v3 = current(dest)
    assert v3.number > v2.number and v3.kind == 'rollback' and v3.fingerprint == v1.fingerprint
    assert out.startswith(f'Rolled back {dest}: version {v3.number} is now in production, a copy of version '
                          f'{v1.number} (')
    assert f'it replaces version {v2.number} (' in out and 'Recorded in' in out

    # Recorded in the store with lineage: target version -> Rollback -> PushedModel.
    store = MetadataStore(url)
    [execution] = store.mlmd.get_executions_by_type('Rollback')
    events = store.mlmd.get_events_by_execution_ids([execution.id])
    inputs = store.artifacts([e.artifact_id for e in events if e.type == 3])  # INPUT
    outputs = store.artifacts([e.artifact_id for e in events if e.type == 4])  # OUTPUT
    assert [a.uri for a in inputs] == [str(dest / str(v1.number))] and inputs[0].type_name() == 'Model'
    assert [(a.type_name(), a.uri, a.get('pushed')) for a in outputs] == \
        [('PushedModel', str(dest / str(v3.number)), 1)]
    contexts = {(store.mlmd.get_context_types_by_id([c.type_id])[0].name, c.name)
                for c in store.mlmd.get_contexts_by_execution(execution.id)}
    assert contexts == {('push_destination', str(dest)), ('pipeline', 'gate')}
    assert execution.custom_properties['reason'].string_value == 'v2 misbehaves'
    code, out, _ = sluice('lineage', outputs[0].id, '--metadata', url, capsys=capsys)
    assert code == 0 and f'[Rollback] execution #{execution.id}' in out

    before = listing(dest)
    worse, _ = run(root, dest, 0.75)  # measured against the rolled-back model (0.8)
    assert blessing(worse).get('baseline_version') == str(v3.number) and blessing(worse).get('blessed') == 0
    assert pushed(worse).get('pushed') == 0 and listing(dest) == before
    better, _ = run(root, dest, 0.85)
    assert blessing(better).get('baseline_version') == str(v3.number) and blessing(better).get('blessed') == 1
    assert pushed(better).get('pushed') == 1 and int(pushed(better).get('pushed_version')) > v3.number

    code, out, _ = sluice('production', dest, capsys=capsys)
    history = out.split('History (oldest first):')[1]
    assert [line.split()[2] for line in history.strip().splitlines()[1:]] == ['push', 'push', 'rollback', 'push']
    assert 'to version' in history and 'reason: v2 misbehaves' in history


def test_after_a_rollback_a_candidate_measured_before_is_measured_again(tmp_path, capsys):
    """A rollback copies the old model into a new version: same content, another version. The
    evaluation made against the old version is not reused, so the blessing names the version the
    Pusher finds in production, and the cached push of the rolled-back model is not reported."""
    root, dest = tmp_path / 'root', tmp_path / 'serving'
    url = f'sqlite:///{root}/metadata.db'
    run(root, dest, 0.8)
    v1 = current(dest)
    first, _ = run(root, dest, 0.85)
    assert sluice('rollback', dest, '--metadata', url, capsys=capsys)[0] == 0
    v3 = current(dest)
    assert v3.fingerprint == v1.fingerprint and v3.number > int(pushed(first).get('pushed_version'))
    again, _ = run(root, dest, 0.85)
    assert again['Score'].state == 'COMPLETE' and blessing(again).get('baseline_version') == str(v3.number)
    assert pushed(again).get('pushed') == 1 and int(pushed(again).get('pushed_version')) > v3.number


def test_rollback_refusals_are_clear_errors(tmp_path, capsys):
    root, dest = tmp_path / 'root', tmp_path / 'serving'
    url = f'sqlite:///{root}/metadata.db'
    run(root, dest, 0.8)
    v1 = current(dest)
    code, _, err = sluice('rollback', dest, '--metadata', url, capsys=capsys)
    assert code == 2 and err.startswith(f'sluice: error: rollback refused: version {v1.number} '
                                        f'({v1.fingerprint[:19]}) at {dest} is the first model in production there')
    code, _, err = sluice('rollback', dest, '--to', '12', '--metadata', url, capsys=capsys)
    assert code == 2 and err.startswith(f'sluice: error: rollback refused: version 12 is not at {dest} (deleted?)')
    code, _, err = sluice('rollback', dest, '--to', v1.number, '--metadata', url, capsys=capsys)
    assert code == 2 and 'is already in production' in err
    code, _, err = sluice('rollback', tmp_path / 'nowhere', '--metadata', url, capsys=capsys)
    assert code == 2 and err.startswith('sluice: error: rollback refused: No push destination at')
    assert versions(str(dest)) == [v1.number]


def test_promote_needs_a_reason_and_is_recorded(tmp_path, capsys):
    root, dest = tmp_path / 'root', tmp_path / 'serving'
    url = f'sqlite:///{root}/metadata.db'
    run(root, dest, 0.9)
    v1 = current(dest)
    worse, store = run(root, dest, 0.7)
    assert pushed(worse).get('pushed') == 0
    model = worse['FakeModel'].outputs['model']
    before = listing(dest)
    code, _, err = sluice('promote', model.id, dest, '--metadata', url, capsys=capsys)
    assert code == 2 and err.startswith('sluice: error: promote needs --reason TEXT')
    code, _, err = sluice('promote', pushed(worse).id, dest, '--reason', 'x', '--metadata', url, capsys=capsys)
    assert code == 2 and f'sluice: error: Artifact {pushed(worse).id} is a PushedModel, not a Model' in err
    assert listing(dest) == before

    code, out, err = sluice('promote', model.id, dest, '--reason', 'incident 42: roll forward', '--metadata', url,
                            capsys=capsys)
    assert code == 0, err
    now = current(dest)
    assert now.kind == 'promote' and now.record['reason'] == 'incident 42: roll forward'
    assert now.record['model'] == {'store_id': store_identity(store), 'artifact_id': model.id, 'pipeline': 'gate',
                                   'run_id': worse.run_id, 'uri': model.uri}
    assert now.record['previous'] == v1.ref() and now.record['blessing'] is None
    [execution] = store.mlmd.get_executions_by_type('Promote')
    events = store.mlmd.get_events_by_execution_ids([execution.id])
    assert [e.artifact_id for e in events if e.type == 3] == [model.id]
    code, out, _ = sluice('production', dest, '--metadata', url, capsys=capsys)
    assert '  kind:        promote' in out and '  reason:      incident 42: roll forward' in out
    assert '  blessing:    none (promoted without a blessing)' in out
    assert f'Lineage of model #{model.id} (store {store.url}):' in out and '<- FakeModel [FakeModel]' in out
    code, _, err = sluice('promote', model.id, dest, '--reason', 'again', '--metadata', url, capsys=capsys)
    assert code == 2 and 'already in production' in err

    # The promoted model is now the baseline, and an unchanged re-run pushes nothing new.
    again, _ = run(root, dest, 0.7)
    assert pushed(again).get('pushed') == 1 and pushed(again).get('pushed_version') == str(now.number)


def test_sluice_production_needs_no_store_and_no_tensorflow(tmp_path):
    root, dest = tmp_path / 'root', tmp_path / 'serving'
    run(root, dest, 0.8)
    script = ('import sys; from sluice.ui.cli import main; code = main(["production", sys.argv[1]]); '
              'assert "tensorflow" not in sys.modules; sys.exit(code)')
    proc = subprocess.run([sys.executable, '-c', script, str(dest)], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, 'PYTHONPATH': REPO}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f'Production at {dest}: version ') and 'Lineage' not in proc.stdout
    proc = subprocess.run([sys.executable, '-m', 'sluice.ui.cli', 'production', str(tmp_path / 'nothing')],
                          capture_output=True, text=True, env={**os.environ, 'PYTHONPATH': REPO}, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith('sluice: error: No push destination at')


# -- versions made or copied by hand, promoting destination versions, incomplete destinations --------
def history_rows(out):
    """The history table of ``sluice production``: {version: (kind, model, replaced, note)}."""
    table = out.split('History (oldest first):\n')[1].split('\n\n')[0].splitlines()
    header = table[0]
    cols = [header.index(c) for c in ('TIME', 'VERSION', 'KIND', 'MODEL', 'FINGERPRINT', 'REPLACED', 'NOTE')]
    rows = {}
    for line in table[1:]:
        cells = [line[a:b].strip() for a, b in zip(cols, cols[1:] + [None])]
        rows[int(cells[1])] = (cells[2], cells[3], cells[5], cells[6])
    return rows


def baseline_input(store, result):
    [execution] = [r for r in store.executions(result.run_id) if r.node_id == 'Score']
    [base] = execution.inputs['baseline_model']
    return base


def test_a_version_copied_by_hand_to_a_new_number_is_shown_as_a_copy_and_rolled_back_from(tmp_path, capsys):
    root, dest = tmp_path / 'root', tmp_path / 'serving'
    url = f'sqlite:///{root}/metadata.db'
    first, store = run(root, dest, 0.8)
    v1 = current(dest)
    run(root, dest, 0.9)
    v2 = current(dest)
    copy = v2.number + 23
    shutil.copytree(dest / str(v1.number), dest / str(copy))  # cp -r serving/V1 serving/COPY
    code, out, _ = sluice('production', dest, capsys=capsys)
    assert code == 0 and out.startswith(f'Production at {dest}: version {copy}\n'
                                        f'  kind:        copied (a copy of version {v1.number}, made by hand)\n')
    model1 = first['FakeModel'].outputs['model']
    assert f'  model:       artifact #{model1.id} of store {store_identity(store)[:8]}, pipeline gate, run ' \
           f'{first.run_id} (as recorded for version {v1.number})\n' in out
    assert f'  replaced:    {v2.describe()}, the complete version below it\n' in out
    assert 'measured against' not in out and 'blessing:' not in out  # version 1's push, not this version's
    rows = history_rows(out)
    assert max(rows) == copy and rows[copy][0] == 'copied' and rows[copy][2] == str(v2.number)
    assert rows[copy][3] == f'current; copy of version {v1.number}' and rows[v1.number][3] == ''

    code, out, err = sluice('rollback', dest, '--metadata', url, capsys=capsys)  # back to what the copy replaced
    assert code == 0, err
    now = current(dest)
    assert out.startswith(f'Rolled back {dest}: version {now.number} is now in production, a copy of '
                          f'{v2.describe()} (') and f'it replaces version {copy} (' in out
    assert now.fingerprint == v2.fingerprint and now.record['previous'] == {'version': copy,
                                                                           'fingerprint': v1.fingerprint}
    shutil.rmtree(dest / str(copy))  # logged by the rollback: remembered once deleted
    code, out, _ = sluice('production', dest, capsys=capsys)
    rows = history_rows(out)
    assert rows[copy][0] == 'copied' and rows[copy][3] == f'deleted; copy of version {v1.number}'
    assert rows[now.number][0] == 'rollback' and rows[now.number][2] == str(copy)


def test_the_evaluator_measures_against_a_copy_and_knows_where_its_model_came_from(tmp_path):
    root, dest = tmp_path / 'root', tmp_path / 'serving'
    first, store = run(root, dest, 0.8)
    v1 = current(dest)
    run(root, dest, 0.9)
    copy = current(dest).number + 5
    shutil.copytree(dest / str(v1.number), dest / str(copy))
    better, _ = run(root, dest, 0.85)  # better than the copy (0.8) now in production
    assert blessing(better).get('baseline_version') == str(copy) and pushed(better).get('pushed') == 1
    metrics = read_json(better['Score'].outputs['evaluation'].uri, 'metrics.json')
    assert metrics['baseline_model'] == {'store_id': store_identity(store),
                                         'artifact_id': first['FakeModel'].outputs['model'].id, 'pipeline': 'gate',
                                         'run_id': first.run_id, 'kind': 'copied'}
    assert current(dest).record['previous'] == {'version': copy, 'fingerprint': v1.fingerprint}


def test_promoting_a_destination_version_records_where_its_model_came_from(tmp_path, capsys):
    dest = tmp_path / 'serving'
    other, other_store = run(tmp_path / 'two', dest, 0.8, label='two', name='other')
    pushed_by_other = current(dest)
    gate_run, store = run(tmp_path / 'one', dest, 0.9, label='one', name='gate')
    base = baseline_input(store, gate_run)  # the Model artifact standing for the version pushed by 'other'
    assert base.uri == str(dest / str(pushed_by_other.number))
    url = f'sqlite:///{tmp_path}/one/metadata.db'
    code, out, err = sluice('promote', base.id, dest, '--reason', 'back to the other model', '--metadata', url,
                            capsys=capsys)
    assert code == 0, err
    now = current(dest)
    assert now.fingerprint == pushed_by_other.fingerprint
    assert now.record['model'] == {
        'store_id': store_identity(other_store), 'artifact_id': other['FakeModel'].outputs['model'].id,
        'pipeline': 'other', 'run_id': other.run_id, 'uri': base.uri,
        'from_version': {'destination': str(dest), 'version': pushed_by_other.number,
                         'fingerprint': pushed_by_other.fingerprint, 'kind': 'push', 'artifact_id': base.id}}
    [execution] = store.mlmd.get_executions_by_type('Promote')
    contexts = {store.mlmd.get_context_types_by_id([c.type_id])[0].name
                for c in store.mlmd.get_contexts_by_execution(execution.id)}
    assert contexts == {'push_destination'}  # not the pipeline that only measured against it
    code, out, _ = sluice('production', dest, capsys=capsys)
    assert f"  model:       artifact #{other['FakeModel'].outputs['model'].id} of store " \
           f'{store_identity(other_store)[:8]}, pipeline other, run {other.run_id} (promoted from version ' \
           f'{pushed_by_other.number} at {dest})\n' in out


def test_promoting_a_version_made_by_hand_with_its_savedmodel_at_the_root(tmp_path, capsys):
    root, dest = tmp_path / 'root', tmp_path / 'serving'
    url = f'sqlite:///{root}/metadata.db'
    (dest / '5').mkdir(parents=True)
    (dest / '5' / 'saved_model.pb').write_text('accuracy=0.85\nby hand')
    better, store = run(root, dest, 0.9)
    assert pushed(better).get('pushed') == 1
    base = baseline_input(store, better)
    assert base.uri == str(dest / '5')
    code, out, err = sluice('promote', base.id, dest, '--reason', 'the hand-made model was better', '--metadata', url,
                            capsys=capsys)
    assert code == 0, err
    now = current(dest)
    assert (dest / str(now.number) / 'saved_model.pb').is_file()  # where the Evaluator and TF Serving read it
    assert not (dest / str(now.number) / 'Format-Serving').exists()
    assert now.fingerprint == content_fingerprint(str(dest / '5'))
    assert now.record['model']['from_version'] == {'destination': str(dest), 'version': 5, 'artifact_id': base.id,
                                                   'fingerprint': now.fingerprint, 'kind': 'hand-pushed'}
    assert now.record['model']['artifact_id'] is None and now.record['model']['pipeline'] is None
    code, out, _ = sluice('production', dest, capsys=capsys)
    assert f'  model:       unknown: no push record says where it came from (promoted from version 5 at {dest})\n' \
           in out
    again, _ = run(root, dest, 0.87)  # measured against the promoted copy (0.85)
    assert blessing(again).get('baseline_version') == str(now.number) and blessing(again).get('blessed') == 1
    (dest / '5' / 'saved_model.pb').write_text('accuracy=0.5\nedited since')
    code, _, err = sluice('promote', base.id, dest, '--reason', 'again', '--metadata', url, capsys=capsys)
    assert code == 2 and err.startswith(f'sluice: error: promote refused: {base!r} stands for version 5 at {dest} as '
                                        f'it was ({now.fingerprint[:19]}), but its files have changed since')


def test_a_destination_whose_versions_are_all_incomplete(tmp_path, capsys):
    root, dest = tmp_path / 'root', tmp_path / 'serving'
    url = f'sqlite:///{root}/metadata.db'
    run(root, dest, 0.8)
    v1 = current(dest)
    (dest / str(v1.number) / 'saved_model.pb').write_text('accuracy=0.1\ntruncated')
    code, out, _ = sluice('production', dest, capsys=capsys)
    assert code == 0 and out.startswith(
        f'Production at {dest}: nothing (no complete version: version {v1.number} is incomplete)\n'
        f'  skipped:     version {v1.number} at {dest} is incomplete (its files do not match the fingerprint in its '
        'push record')
    assert "Sluice sees nothing in production (no complete version); note that a server serving the highest version " \
           f"(TF Serving's default policy) would try to load version {v1.number}: fix or remove it" in out
    assert history_rows(out)[v1.number][3] == 'incomplete'
    code, _, err = sluice('rollback', dest, '--metadata', url, capsys=capsys)
    assert code == 2 and err.startswith(f'sluice: error: rollback refused: Nothing is in production at {dest} (version '
                                        f'{v1.number} is incomplete); nothing to roll back. Fix or remove')


# -- the real Evaluator (TFMA) on a SavedModel pushed by hand -------------------------------------------
def _tiny_savedmodel(path, weight):
    """serving_default: serialized tf.Examples -> a probability from feature x (logistic, ``weight``)."""
    import tensorflow as tf

    class Tiny(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
        def serve(self, examples):
            x = tf.io.parse_example(examples, {'x': tf.io.FixedLenFeature([1], tf.float32)})['x']
            return {'probabilities': tf.sigmoid(weight * x)}

    module = Tiny()
    tf.saved_model.save(module, str(path), signatures={'serving_default': module.serve})


def test_the_real_evaluator_measures_against_a_savedmodel_pushed_by_hand(tmp_path):
    import tensorflow as tf

    from sluice.components.evaluator import EvaluatorExecutor
    from sluice.metadata import Examples

    split = tmp_path / 'examples' / 'Split-eval'
    split.mkdir(parents=True)
    with tf.io.TFRecordWriter(str(split / 'data_tfrecord-00000.gz'), options='GZIP') as writer:
        for i in range(40):
            x, y = (i - 20) / 10.0, int(i >= 20)
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                'x': tf.train.Feature(float_list=tf.train.FloatList(value=[x])),
                'y': tf.train.Feature(int64_list=tf.train.Int64List(value=[y]))})).SerializeToString())
    _tiny_savedmodel(tmp_path / 'candidate' / 'Format-Serving', 5.0)  # right
    _tiny_savedmodel(tmp_path / 'serving' / '7', -5.0)                 # wrong, saved_model.pb at the root
    candidate = Model(uri=str(tmp_path / 'candidate'))
    candidate.id = 1
    baseline = Model(uri=str(tmp_path / 'serving' / '7'),
                     fingerprint=content_fingerprint(str(tmp_path / 'serving' / '7')))
    baseline.id = 2
    baseline.set('version', '7')
    baseline.set('content_fingerprint', baseline.fingerprint)
    evaluation = ModelEvaluation(uri=str(tmp_path / 'evaluation'))
    os.makedirs(evaluation.uri)
    EvaluatorExecutor(beam_pipeline_args=['--direct_num_workers=1']).run(
        examples=Examples(uri=str(tmp_path / 'examples'), split_names='["eval"]'), model=candidate,
        baseline_model=baseline, evaluation=evaluation,
        eval_config={'label_key': 'y', 'metrics': ['BinaryAccuracy'], 'slices': [[]]}, eval_split='eval',
        push_destination=str(tmp_path / 'serving'))
    summary = read_json(evaluation.uri, 'metrics.json')
    overall = summary['slices']['Overall']
    assert overall['candidate']['binary_accuracy'] > 0.9 and overall['baseline']['binary_accuracy'] < 0.1
    assert (summary['baseline_version'], summary['baseline_fingerprint'], summary['push_destination']) == \
        ('7', baseline.fingerprint, str(tmp_path / 'serving'))
    assert evaluation.get('baseline_version') == '7' and evaluation.get('baseline_model_id') == 2
