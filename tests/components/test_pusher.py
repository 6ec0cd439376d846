"""Pusher and the destination format on hand-made models and blessings: atomic versions, push records,
what is current (complete versions only), compare-and-swap by version and content, races, rollback
and promotion."""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil

import pytest

from sluice.components.production.changes import (ProductionError, PushError, destination_lock, new_record, promote,
                                                  rollback, write_version)
from sluice.components.production.destination import (HISTORY_FILE, content_fingerprint, history, inspect_version,
                                                       model_fingerprint, onnx_path, production, serving_path, versions)
from sluice.components.production.identity import holds_model
from sluice.components.pusher import PusherExecutor
from sluice.metadata import Model, ModelBlessing, PushedModel
from sluice.metadata.artifact import OnnxModel


def make_model(tmp_path, model_id, content='weights'):
    d = tmp_path / f'model-{model_id}'
    (d / 'Format-Serving' / 'variables').mkdir(parents=True, exist_ok=True)
    (d / 'Format-Serving' / 'saved_model.pb').write_text(content)
    (d / 'Format-ONNX').mkdir(exist_ok=True)
    (d / 'Format-ONNX' / 'model.onnx').write_text(content + '-onnx')
    model = Model(uri=str(d))
    model.id = model_id
    return model


def make_blessing(tmp_path, model_id, blessed, against=None, destination=''):
    """A blessing of model ``model_id`` measured against ``against`` (a Version, or None: nothing in production)."""
    d = tmp_path / f'blessing-{model_id}-{blessed}-{against.number if against else 0}'
    d.mkdir(exist_ok=True)
    (d / 'reasons.json').write_text(json.dumps({'checks': [{'metric': 'accuracy', 'slice': 'Overall', 'passed': blessed,
                                                            'reason': 'a reason'}],
                                                'overall_metrics': {'candidate': {'accuracy': 0.5}}}))
    b = ModelBlessing(uri=str(d), blessed=int(blessed), current_model_id=model_id, baseline_model_id=0,
                      push_destination=destination, baseline_version=str(against.number) if against else '',
                      baseline_fingerprint=against.fingerprint if against else '')
    b.id = 100 + model_id
    return b


def push(tmp_path, model, blessing, destination, onnx_model=None):
    out = tmp_path / f'pushed-{len(list(tmp_path.iterdir()))}'
    out.mkdir()
    pushed = PushedModel(uri=str(out))
    PusherExecutor().run(model=model, blessing=blessing, pushed_model=pushed, push_destination=str(destination),
                         onnx_model=onnx_model)
    return pushed


def current(destination):
    return production(str(destination)).current


def test_push_is_a_new_version_with_both_formats_and_a_record(tmp_path):
    dest = tmp_path / 'serving'
    model = make_model(tmp_path, 1)
    first = push(tmp_path, model, make_blessing(tmp_path, 1, True), dest)
    version = first.get('pushed_version')
    # As in TFX: pushed_destination is the version's directory (the destination itself: push_destination).
    assert first.get('pushed') == 1 and first.get('pushed_destination') == str(dest / version)
    assert first.get('push_destination') == str(dest)
    assert first.get('reason') == f'pushed as version {version} (the first model at this destination)'
    assert versions(str(dest)) == [int(version)]
    target = dest / version
    # The SavedModel at the version's root (where TF Serving loads it), the ONNX model beside it.
    assert sorted(os.listdir(target)) == ['model.onnx', 'saved_model.pb', 'sluice_push.json', 'variables']
    assert (target / 'saved_model.pb').read_text() == 'weights'
    assert (target / 'model.onnx').read_text() == 'weights-onnx'
    record = json.loads((target / 'sluice_push.json').read_text())
    assert record['kind'] == 'push' and record['version'] == int(version)
    assert record['model']['artifact_id'] == 1 and record['model']['uri'] == model.uri
    assert record['fingerprint'] == model_fingerprint(model.uri) == content_fingerprint(str(target))
    assert record['fingerprint'] == first.get('pushed_fingerprint')
    assert record['previous'] is None and record['baseline'] is None
    assert record['blessing']['verdict'] == 'BLESSED' and record['blessing']['checks'][0]['metric'] == 'accuracy'
    assert record['metrics'] == {'candidate': {'accuracy': 0.5}}
    assert (tmp_path / os.path.basename(first.uri) / 'saved_model.pb').exists()  # the copy
    assert not [n for n in os.listdir(dest) if n.startswith('.staging')]
    [logged] = [json.loads(line) for line in (dest / HISTORY_FILE).read_text().splitlines()]
    assert logged == record

    v1 = current(dest)
    second = push(tmp_path, make_model(tmp_path, 2, 'better'), make_blessing(tmp_path, 2, True, v1), dest)
    assert second.get('pushed') == 1 and int(second.get('pushed_version')) > int(version)
    now = current(dest)
    assert now.number == int(second.get('pushed_version')) and now.record['model']['artifact_id'] == 2
    assert now.record['previous'] == now.record['baseline'] == {'version': v1.number, 'fingerprint': v1.fingerprint}


def test_not_blessed_leaves_the_destination_untouched(tmp_path):
    dest = tmp_path / 'serving'
    push(tmp_path, make_model(tmp_path, 1), make_blessing(tmp_path, 1, True), dest)
    before = sorted(os.walk(dest))
    pushed = push(tmp_path, make_model(tmp_path, 2, 'other'), make_blessing(tmp_path, 2, False, current(dest)), dest)
    assert pushed.get('pushed') == 0 and 'NOT_BLESSED' in pushed.get('reason')
    assert sorted(os.walk(dest)) == before
    assert (tmp_path / os.path.basename(pushed.uri) / 'NOT_PUSHED').exists()


def test_blessing_against_a_stale_baseline_is_not_pushed(tmp_path):
    dest = tmp_path / 'serving'
    push(tmp_path, make_model(tmp_path, 1), make_blessing(tmp_path, 1, True), dest)
    v1 = current(dest)
    push(tmp_path, make_model(tmp_path, 2, 'two'), make_blessing(tmp_path, 2, True, v1), dest)
    v2 = current(dest)
    # Model 3 was measured against version 1, but model 2 went to production meanwhile.
    stale = push(tmp_path, make_model(tmp_path, 3, 'three'), make_blessing(tmp_path, 3, True, v1), dest)
    assert stale.get('pushed') == 0
    assert stale.get('reason') == (
        f'the model in production changed since this model was evaluated (it was measured against version '
        f'{v1.number} ({v1.fingerprint[:19]}), production at {dest} is now version {v2.number} '
        f'({v2.fingerprint[:19]})); '
        f'run the pipeline again (a new run or sluice resume) to measure it against version {v2.number} '
        f'({v2.fingerprint[:19]})')
    assert current(dest).number == v2.number


def test_same_version_number_with_other_content_is_not_the_baseline(tmp_path):
    """The compare-and-swap is on version AND content: a version directory replaced by other files
    (same number) is not what the blessing was measured against."""
    dest = tmp_path / 'serving'
    push(tmp_path, make_model(tmp_path, 1), make_blessing(tmp_path, 1, True), dest)
    v1 = current(dest)
    replaced = dest / str(v1.number)
    shutil.rmtree(replaced)
    replaced.mkdir()
    (replaced / 'saved_model.pb').write_text('put there by hand')
    pushed = push(tmp_path, make_model(tmp_path, 2, 'two'), make_blessing(tmp_path, 2, True, v1), dest)
    assert pushed.get('pushed') == 0 and 'pushed by hand or by another tool' in pushed.get('reason')


def test_pushing_the_model_already_in_production_is_idempotent(tmp_path):
    dest = tmp_path / 'serving'
    first = push(tmp_path, make_model(tmp_path, 1), make_blessing(tmp_path, 1, True), dest)
    # Even measured against nothing (as after a crash that cut off the push's record in the store).
    again = push(tmp_path, make_model(tmp_path, 1), make_blessing(tmp_path, 1, True), dest)
    assert again.get('pushed') == 1 and again.get('pushed_version') == first.get('pushed_version')
    assert again.get('reason') == f"already in production as version {first.get('pushed_version')} (pushed earlier; " \
                                  'nothing copied)'
    assert len(versions(str(dest))) == 1


def test_unwritable_destination_is_a_clear_error(tmp_path):
    blocker = tmp_path / 'a-file'
    blocker.write_text('')
    with pytest.raises(PushError, match=r'Cannot write to the push destination .*/a-file/serving: Not a directory\. '
                                        r'Choose a writable push_destination'):
        push(tmp_path, make_model(tmp_path, 1), make_blessing(tmp_path, 1, True), blocker / 'serving')


def test_blessing_of_another_model_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r'blesses model #2, not Model\(#1'):
        push(tmp_path, make_model(tmp_path, 1), make_blessing(tmp_path, 2, True), tmp_path / 'serving')


def test_blessing_measured_at_another_destination_is_an_error(tmp_path):
    blessing = make_blessing(tmp_path, 1, True, destination=str(tmp_path / 'elsewhere'))
    with pytest.raises(ValueError, match=r'measured against the model in production at .*/elsewhere, but this Pusher '
                                         r"pushes to .*/serving; give the Evaluator push_destination="):
        push(tmp_path, make_model(tmp_path, 1), blessing, tmp_path / 'serving')
    assert not (tmp_path / 'serving').exists()


_START = None  # each racing worker's barrier (given when the pool starts)


def _hold(barrier):
    global _START
    _START = barrier


def _race(args):
    tmp, model_id, dest, against = args
    from pathlib import Path

    from sluice.components.production.destination import inspect_version
    base = inspect_version(dest, against)
    _START.wait()
    work = Path(tmp) / f'w{model_id}'
    model = make_model(work, model_id, f'model {model_id}')
    pushed = push(work, model, make_blessing(work, model_id, True, base), dest)
    return model_id, pushed.get('pushed'), pushed.get('reason')


def test_two_processes_pushing_over_the_same_baseline_exactly_one_wins(tmp_path):
    dest = tmp_path / 'serving'
    push(tmp_path, make_model(tmp_path, 1), make_blessing(tmp_path, 1, True), dest)
    v1 = current(dest)
    for name in ('w2', 'w3', 'w4'):
        (tmp_path / name).mkdir()
    # A barrier handed to the workers as they start, not a Manager's: Beam, once imported in this
    # process (by a BulkInferrer test), replaces multiprocessing.managers.AutoProxy, and a spawned
    # Manager can then no longer be pickled.
    ctx = multiprocessing.get_context('spawn')
    with ctx.Pool(3, initializer=_hold, initargs=(ctx.Barrier(3),)) as pool:
        results = pool.map(_race, [(str(tmp_path), i, str(dest), v1.number) for i in (2, 3, 4)], chunksize=1)
    winners = [r for r in results if r[1] == 1]
    losers = [r for r in results if r[1] == 0]
    assert len(winners) == 1 and len(losers) == 2
    assert all('the model in production changed' in r[2] for r in losers)
    assert current(dest).record['model']['artifact_id'] == winners[0][0]
    assert len(versions(str(dest))) == 2


# -- what is current ----------------------------------------------------------------------------------
def test_a_corrupt_newest_version_is_skipped_and_said_so(tmp_path, capsys):
    dest = tmp_path / 'serving'
    push(tmp_path, make_model(tmp_path, 1), make_blessing(tmp_path, 1, True), dest)
    v1 = current(dest)
    push(tmp_path, make_model(tmp_path, 2, 'two'), make_blessing(tmp_path, 2, True, v1), dest)
    v2 = current(dest)
    (dest / str(v2.number) / 'model.onnx').write_text('truncated')
    now = production(str(dest))
    assert now.current.number == v1.number
    [note] = now.notes()
    assert note.startswith(f'version {v2.number} at {dest} is incomplete (its files do not match the fingerprint in '
                           'its push record (changed, added or removed since it was pushed: ')
    # Sluice takes version 1, but says that a server serving the highest version would not.
    assert note.endswith(f'): Sluice measures against version {v1.number} ({v1.fingerprint[:19]}); note that a server '
                         "serving the highest version (TF Serving's default policy) would try to load version "
                         f'{v2.number}: fix or remove it')
    # A model measured against version 1 (the real production) is pushed, above the corrupt version.
    capsys.readouterr()
    pushed = push(tmp_path, make_model(tmp_path, 3, 'three'), make_blessing(tmp_path, 3, True, v1), dest)
    assert pushed.get('pushed') == 1 and int(pushed.get('pushed_version')) > v2.number
    assert f'Pusher: {note}' in capsys.readouterr().out


def test_what_counts_as_a_complete_version(tmp_path):
    dest = tmp_path / 'serving'
    (dest / '1').mkdir(parents=True)
    (dest / '1' / 'saved_model.pb').write_text('by hand')            # a SavedModel, no record: complete
    (dest / '2' / 'Format-Serving').mkdir(parents=True)
    (dest / '2' / 'Format-Serving' / 'saved_model.pb').write_text('by another tool')  # complete too
    (dest / '3').mkdir()
    (dest / '3' / 'notes.txt').write_text('no model here')           # incomplete
    (dest / '4').mkdir()
    (dest / '4' / 'saved_model.pb').write_text('x')
    (dest / '4' / 'sluice_push.json').write_text('{"kind": "pu')     # a record cut off: incomplete
    (dest / 'not-a-version').mkdir()
    one = inspect_version(str(dest), 1)
    assert one.complete and one.kind == 'hand-pushed' and one.fingerprint == content_fingerprint(str(dest / '1'))
    assert inspect_version(str(dest), 2).complete
    assert inspect_version(str(dest), 3).problem == \
        'no push record (sluice_push.json) and no SavedModel (saved_model.pb)'
    assert inspect_version(str(dest), 4).problem.startswith('its push record sluice_push.json is unreadable')
    assert inspect_version(str(dest), 5) is None
    now = production(str(dest))
    assert now.current.number == 2 and [v.number for v in now.skipped] == [4, 3]


def test_content_fingerprint_is_over_relative_paths_and_bytes(tmp_path):
    for name in ('a', 'b'):
        (tmp_path / name / 'Format-Serving').mkdir(parents=True)
        (tmp_path / name / 'Format-Serving' / 'saved_model.pb').write_text('same')
    (tmp_path / 'b' / 'sluice_push.json').write_text('{}')  # the record is not content
    assert content_fingerprint(str(tmp_path / 'a')) == content_fingerprint(str(tmp_path / 'b'))
    (tmp_path / 'b' / 'Format-Serving' / 'saved_model.pb').write_text('Same')
    assert content_fingerprint(str(tmp_path / 'a')) != content_fingerprint(str(tmp_path / 'b'))
    (tmp_path / 'c').mkdir()
    (tmp_path / 'c' / 'saved_model.pb').write_text('same')  # same bytes, another path
    assert content_fingerprint(str(tmp_path / 'c')) != content_fingerprint(str(tmp_path / 'a'))


def test_versions_always_increase_even_after_the_newest_is_deleted(tmp_path):
    dest = tmp_path / 'serving'
    push(tmp_path, make_model(tmp_path, 1), make_blessing(tmp_path, 1, True), dest)
    v1 = current(dest)
    push(tmp_path, make_model(tmp_path, 2, 'two'), make_blessing(tmp_path, 2, True, v1), dest)
    v2 = current(dest)
    shutil.rmtree(dest / str(v2.number))  # a rollback by hand
    (dest / f'.staging-{"0" * 32}').mkdir()  # left by a push that was killed
    pushed = push(tmp_path, make_model(tmp_path, 3, 'three'), make_blessing(tmp_path, 3, True, v1), dest)
    assert pushed.get('pushed') == 1 and int(pushed.get('pushed_version')) > v2.number
    assert not [n for n in os.listdir(dest) if n.startswith('.staging')]


# -- rollback and promote (the destination side; the CLI and the store are in tests/pipelines) ------
def three_versions(tmp_path):
    dest = tmp_path / 'serving'
    made = []
    for i in (1, 2, 3):
        push(tmp_path, make_model(tmp_path, i, f'model {i}'), make_blessing(tmp_path, i, True, current(dest)), dest)
        made.append(current(dest))
    return dest, made


def test_rollback_copies_the_previous_version_into_a_new_one_and_goes_back_step_by_step(tmp_path):
    dest, (v1, v2, v3) = three_versions(tmp_path)
    new, target, replaced = rollback(str(dest), reason='v3 is slow')
    assert (target.number, replaced.number) == (v2.number, v3.number) and new.number > v3.number
    now = current(dest)
    assert now.number == new.number and now.fingerprint == v2.fingerprint and now.kind == 'rollback'
    assert now.record['target']['version'] == v2.number and now.record['previous']['version'] == v3.number
    assert now.record['model']['artifact_id'] == 2 and now.record['reason'] == 'v3 is slow'
    assert (dest / str(new.number) / 'saved_model.pb').read_text() == 'model 2'

    second, target, _ = rollback(str(dest))  # continues from the target: two steps back
    assert target.number == v1.number and current(dest).fingerprint == v1.fingerprint and second.number > new.number
    with pytest.raises(ProductionError, match=r'is the first model in production there: there is no earlier version'):
        rollback(str(dest))
    kinds = [json.loads(line)['kind'] for line in (dest / HISTORY_FILE).read_text().splitlines()]
    assert kinds == ['push', 'push', 'push', 'rollback', 'rollback']


def test_rollback_refusals_leave_the_destination_unchanged(tmp_path):
    dest, (v1, v2, v3) = three_versions(tmp_path)
    shutil.rmtree(dest / str(v1.number))
    (dest / str(v2.number) / 'model.onnx').write_text('damaged')
    before = sorted(os.walk(dest))
    with pytest.raises(ProductionError, match=rf'version {v1.number} is not at {dest} \(deleted\?\)'):
        rollback(str(dest), to=v1.number)
    with pytest.raises(ProductionError, match=rf'version {v2.number} at {dest} is incomplete \(its files do not match'):
        rollback(str(dest), to=v2.number)
    with pytest.raises(ProductionError, match=rf'version {v3.number} is already in production at {dest}; nothing'):
        rollback(str(dest), to=v3.number)
    assert sorted(os.walk(dest)) == before


def test_promote_needs_a_reason_and_records_it(tmp_path):
    dest, (v1, v2, v3) = three_versions(tmp_path)
    model = make_model(tmp_path, 9, 'hotfix')
    with pytest.raises(ProductionError, match=r'a promotion needs a reason'):
        promote(str(dest), model.uri, {'artifact_id': 9}, '  ')
    new, replaced = promote(str(dest), model.uri, {'artifact_id': 9, 'store_id': 's'}, 'incident 42')
    now = current(dest)
    assert replaced.number == v3.number and now.number == new.number and now.kind == 'promote'
    assert now.record['reason'] == 'incident 42' and now.record['blessing'] is None
    assert now.fingerprint == model_fingerprint(model.uri)
    with pytest.raises(ProductionError, match=r'already in production'):
        promote(str(dest), model.uri, {'artifact_id': 9}, 'again')


# -- versions made or copied by hand, the history log, incomplete versions ------------------------------
def logged(dest):
    return [json.loads(line) for line in (dest / HISTORY_FILE).read_text().splitlines()]


def test_a_version_copied_by_hand_to_a_new_number_is_a_copy_not_the_version_it_names(tmp_path):
    dest, (v1, v2, v3) = three_versions(tmp_path)
    copy = v3.number + 10
    shutil.copytree(dest / str(v1.number), dest / str(copy))  # cp -r serving/V1 serving/COPY
    found = inspect_version(str(dest), copy)
    assert found.complete and found.record is None and found.kind == 'copied'
    assert found.copy_of == {'version': v1.number, 'fingerprint': v1.fingerprint, 'destination': str(dest)}
    assert found.fingerprint == v1.fingerprint and found.origin['artifact_id'] == 1
    assert found.copied_from() == f'a copy of version {v1.number}'
    assert current(dest).number == copy
    [*_, last] = history(str(dest))
    assert (last['version'], last['kind'], last['copy_of']['version']) == (copy, 'copied', v1.number)
    assert last['previous'] == v3.ref() and 'baseline' not in last and 'blessing' not in last
    # What was in production before the copy took over: version 3, not version 1's own record's previous.
    new, target, replaced = rollback(str(dest))
    assert (target.number, replaced.number) == (v3.number, copy) and current(dest).fingerprint == v3.fingerprint
    assert logged(dest)[-2]['kind'] == 'copied' and logged(dest)[-1]['kind'] == 'rollback'


def test_a_copy_of_the_model_in_production_rolls_back_to_the_one_before_it(tmp_path):
    dest, (v1, v2, v3) = three_versions(tmp_path)
    shutil.copytree(dest / str(v3.number), dest / str(v3.number + 10))
    new, target, replaced = rollback(str(dest))  # going back to version 3 would change nothing
    assert target.number == v2.number and current(dest).fingerprint == v2.fingerprint


def test_a_record_naming_another_version_or_destination_is_not_its_record(tmp_path):
    dest, (v1, v2, v3) = three_versions(tmp_path)
    changed = dest / str(v3.number + 1)
    shutil.copytree(dest / str(v1.number), changed)
    (changed / 'saved_model.pb').write_text('edited after the copy')
    found = inspect_version(str(dest), changed.name)
    assert found.complete and found.kind == 'hand-pushed' and found.copy_of is None and found.origin == {}
    assert found.copied_from() == f'holds the push record of version {v1.number}, but not its files: not taken as ' \
                                  'its record'
    other = tmp_path / 'elsewhere'
    shutil.copytree(dest / str(v2.number), other / str(v2.number))  # same number, another destination
    there = inspect_version(str(other), v2.number)
    assert there.record is None and there.kind == 'copied'
    assert there.copied_from() == f'a copy of version {v2.number} at {dest}'
    (other / str(v2.number) / 'saved_model.pb').unlink()
    (other / str(v2.number) / 'variables').rmdir()
    assert inspect_version(str(other), v2.number).problem == \
        f"no SavedModel (saved_model.pb), and its push record is version {v2.number}'s, not its own"


def test_versions_the_history_log_misses_are_logged_by_the_next_change(tmp_path):
    dest, (v1, v2, v3) = three_versions(tmp_path)
    (dest / '1').mkdir()
    (dest / '1' / 'saved_model.pb').write_text('an old one, by hand')
    by_hand = dest / str(v3.number + 1)
    by_hand.mkdir()
    (by_hand / 'saved_model.pb').write_text('by hand')
    copied = dest / str(v3.number + 2)
    shutil.copytree(dest / str(v1.number), copied)
    killed = dest / str(v3.number + 3)  # a push killed after its rename, before appending to the log
    shutil.copytree(dest / str(v2.number), killed)
    record = json.loads((killed / 'sluice_push.json').read_text())
    (killed / 'sluice_push.json').write_text(json.dumps({**record, 'version': int(killed.name)}))
    (dest / str(v3.number + 4)).mkdir()  # incomplete: not logged
    assert [e['kind'] for e in logged(dest)] == ['push', 'push', 'push']

    new, _ = promote(str(dest), make_model(tmp_path, 9, 'hotfix').uri, {'artifact_id': 9}, 'incident 7')
    entries = logged(dest)
    assert [(e['version'], e['kind']) for e in entries[3:]] == [
        (1, 'hand-pushed'), (int(by_hand.name), 'hand-pushed'), (int(copied.name), 'copied'),
        (int(killed.name), 'push'), (new.number, 'promote')]
    first = entries[3]
    assert first['fingerprint'] == content_fingerprint(str(dest / '1')) and first['first_seen'] and first['time']
    assert first['previous'] is None and entries[4]['previous'] == v3.ref()
    assert entries[5]['copy_of']['version'] == v1.number and entries[5]['model']['artifact_id'] == 1
    assert entries[6]['model'] == record['model'] and entries[6]['first_seen']
    # Deleted, they stay in the history; the versions recorded after them name them as replaced.
    shutil.rmtree(by_hand)
    shutil.rmtree(copied)
    rows = {e['version']: e for e in history(str(dest))}
    assert rows[v3.number + 4]['problem'] and rows[v3.number + 4]['previous'] is None  # replaced nothing
    assert rows[int(by_hand.name)]['kind'] == 'hand-pushed' and not rows[int(by_hand.name)].get('present')
    assert rows[int(copied.name)]['kind'] == 'copied' and not rows[int(copied.name)].get('present')
    push(tmp_path, make_model(tmp_path, 10, 'ten'), make_blessing(tmp_path, 10, True, current(dest)), dest)
    assert [e['kind'] for e in logged(dest)].count('hand-pushed') == 2  # logged once


def test_promote_takes_a_savedmodel_at_the_root_of_its_directory(tmp_path):
    dest, (v1, v2, v3) = three_versions(tmp_path)
    model = tmp_path / 'by-hand'
    (model / 'variables').mkdir(parents=True)
    (model / 'saved_model.pb').write_text('a SavedModel at the root')
    (model / 'variables' / 'variables.index').write_text('index')
    new, replaced = promote(str(dest), str(model), {}, 'incident 8')
    assert replaced.number == v3.number and current(dest).number == new.number
    # At the root of the new version, as the original was (where a TF Serving version directory holds it).
    assert (dest / str(new.number) / 'saved_model.pb').read_text() == 'a SavedModel at the root'
    assert new.fingerprint == content_fingerprint(str(model)) == current(dest).fingerprint
    with pytest.raises(ProductionError, match=r'already in production'):
        promote(str(dest), str(model), {}, 'again')
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(ProductionError, match=r'holds no SavedModel \(saved_model\.pb at its root or under '
                                              r'Format-Serving/\)'):
        promote(str(dest), str(empty), {}, 'nothing there')


def test_every_version_incomplete(tmp_path):
    dest = tmp_path / 'serving'
    for number in (3, 4):
        (dest / str(number)).mkdir(parents=True)
        (dest / str(number) / 'notes.txt').write_text('no model')
    now = production(str(dest))
    assert now.current is None and now.notes() == [
        f'version 4 at {dest} is incomplete (no push record (sluice_push.json) and no SavedModel (saved_model.pb)): '
        "Sluice sees nothing in production (no complete version); note that a server serving the highest version "
        "(TF Serving's default policy) would try to load version 4: fix or remove it",
        f'version 3 at {dest} is incomplete too (no push record (sluice_push.json) and no SavedModel (saved_model.pb))']
    with pytest.raises(ProductionError, match=rf'Nothing is in production at {dest} \(versions 3, 4 are all '
                                              r'incomplete\); nothing to roll back\. Fix or remove'):
        rollback(str(dest))


def test_rollback_when_the_only_older_versions_are_incomplete(tmp_path):
    dest, (v1, v2, v3) = three_versions(tmp_path)
    (dest / str(v2.number) / 'model.onnx').write_text('damaged')
    shutil.rmtree(dest / str(v1.number))
    with pytest.raises(ProductionError) as e:
        rollback(str(dest))
    assert str(e.value) == (
        f'version {v2.number} (in production before version {v3.number} took over) at {dest} is incomplete (its '
        f'files do not match the fingerprint in its push record (changed, added or removed since it was pushed: '
        f'{inspect_version(str(dest), v2.number).fingerprint[:19]} instead of {v2.fingerprint[:19]})); it cannot be '
        'made current again. No other complete version with another model is there to roll back to.')
    by_hand = dest / str(v3.number + 1)
    by_hand.mkdir()
    (by_hand / 'saved_model.pb').write_text('by hand')
    shutil.rmtree(dest / str(v3.number))
    with pytest.raises(ProductionError, match=rf'version {by_hand.name} \(sha256:[0-9a-f]{{12}}\) at {dest} has no '
                                              rf'complete version below it to roll back to \(every older version is '
                                              rf'incomplete: version {v2.number}: its files do not match'):
        rollback(str(dest))


def test_a_destination_in_the_earlier_layout_keeps_working(tmp_path, capsys):
    """Versions pushed before the SavedModel moved to the version's root (``Format-Serving/`` and
    ``Format-ONNX/`` inside the version) are read as they are; new pushes use the new layout."""
    dest = tmp_path / 'serving'
    model = make_model(tmp_path, 1)

    def earlier_push(staging):  # what a push copied then
        for part in ('Format-Serving', 'Format-ONNX'):
            shutil.copytree(os.path.join(model.uri, part), os.path.join(staging, part))

    with destination_lock(str(dest)):
        old = write_version(str(dest), earlier_push, new_record('push', {'artifact_id': 1}, None))
    assert sorted(os.listdir(old.path)) == ['Format-ONNX', 'Format-Serving', 'sluice_push.json']
    assert current(dest).number == old.number and current(dest).complete
    assert serving_path(old.path) == os.path.join(old.path, 'Format-Serving')
    assert onnx_path(old.path) == os.path.join(old.path, 'Format-ONNX', 'model.onnx')

    # The same model again: recognised in its earlier layout, nothing copied.
    again = push(tmp_path, model, make_blessing(tmp_path, 1, True, old), dest)
    assert again.get('pushed_version') == str(old.number)
    assert again.get('reason') == f'already in production as version {old.number} (pushed earlier; nothing copied)'
    # A new model: the new layout, over the old version.
    new = push(tmp_path, make_model(tmp_path, 2, 'two'), make_blessing(tmp_path, 2, True, old), dest)
    target = dest / new.get('pushed_version')
    assert sorted(os.listdir(target)) == ['model.onnx', 'saved_model.pb', 'sluice_push.json', 'variables']
    assert serving_path(str(target)) == str(target) and onnx_path(str(target)) == str(target / 'model.onnx')
    # A rollback to the old version copies it as it is (its record's fingerprint is over those paths).
    back, target_version, _ = rollback(str(dest), reason='back')
    assert target_version.number == old.number and current(dest).fingerprint == old.fingerprint
    assert sorted(os.listdir(back.path)) == ['Format-ONNX', 'Format-Serving', 'sluice_push.json']


# -- the ONNX copy from the OnnxExporter's artifact ---------------------------------------------------
def make_onnx(tmp_path, model_id, content):
    d = tmp_path / f'onnx-{model_id}-{content}'
    d.mkdir()
    (d / 'model.onnx').write_text(content)
    (d / 'serving_samples.json').write_text('{}')
    (d / '.hidden').write_text('not pushed')
    return OnnxModel(uri=str(d), model_id=model_id)


def test_a_push_puts_the_onnx_model_beside_the_saved_model_and_compares_both(tmp_path):
    """A Model holds the SavedModel alone; its OnnxModel's files land beside it in the version. The
    Pusher's 'already in production' compares both; the Evaluator's (saved_model_only) the SavedModel."""
    model = make_model(tmp_path, 7)
    shutil.rmtree(os.path.join(model.uri, 'Format-ONNX'))
    onnx = make_onnx(tmp_path, 7, 'onnx-a')
    dest = tmp_path / 'serving'
    first = push(tmp_path, model, None, dest, onnx)
    version = current(dest)
    assert first.get('pushed') == 1 and str(version.number) == first.get('pushed_version')
    assert sorted(os.listdir(version.path)) == ['model.onnx', 'saved_model.pb', 'serving_samples.json',
                                                'sluice_push.json', 'variables']
    assert holds_model(version, model.uri, onnx.uri)
    assert holds_model(version, model.uri, saved_model_only=True)
    assert not holds_model(version, model.uri, make_onnx(tmp_path, 7, 'onnx-b').uri)  # another ONNX copy
    assert not holds_model(version, model.uri)  # the Model alone has no ONNX copy: not these files
    other = make_model(tmp_path, 8, 'other weights')
    shutil.rmtree(os.path.join(other.uri, 'Format-ONNX'))
    assert not holds_model(version, other.uri, saved_model_only=True)
    again = push(tmp_path, model, None, dest, onnx)
    assert again.get('reason').startswith(f'already in production as version {version.number}')
    # An ONNX copy of another model is refused, naming both.
    with pytest.raises(ValueError, match=r"is the ONNX copy of model #8, not Model\(#7 .*wire the same Trainer's "
                                         r"outputs into Pusher\(model=\.\.\., onnx_model=\.\.\.\)"):
        push(tmp_path, model, None, tmp_path / 'elsewhere', make_onnx(tmp_path, 8, 'onnx-c'))
    assert not (tmp_path / 'elsewhere').exists()
    # An export that was skipped (export_onnx='if_possible'): the SavedModel alone is pushed.
    skipped = OnnxModel(uri=str(tmp_path / 'empty'), model_id=8, onnx_skipped='tf2onnx could not')
    os.makedirs(skipped.uri)
    alone = push(tmp_path, other, None, tmp_path / 'alone', skipped)
    assert sorted(os.listdir(alone.get('pushed_destination'))) == ['saved_model.pb', 'sluice_push.json', 'variables']


def test_a_new_onnx_copy_of_the_model_in_production_is_pushed(tmp_path):
    """The export's code changed, the Trainer stayed cached: the Evaluator finds the SavedModel in
    production and measures it against that version's own baseline; the Pusher pushes the new ONNX
    copy as a new version instead of waiting for a baseline that can never come back."""
    model = make_model(tmp_path, 7)
    shutil.rmtree(os.path.join(model.uri, 'Format-ONNX'))
    dest = tmp_path / 'serving'
    first = push(tmp_path, model, make_blessing(tmp_path, 7, True, destination=str(dest)), dest,
                 make_onnx(tmp_path, 7, 'onnx-a'))
    v1 = current(dest)
    assert first.get('pushed') == 1 and v1.record.get('baseline') is None
    # measured against v1's own baseline (none), as the Evaluator does for a candidate already in production
    second = push(tmp_path, model, make_blessing(tmp_path, 7, True, destination=str(dest)), dest,
                  make_onnx(tmp_path, 7, 'onnx-b'))
    v2 = current(dest)
    assert second.get('pushed') == 1, second.get('reason')
    assert v2.number != v1.number and (tmp_path / 'serving' / str(v2.number) / 'model.onnx').read_text() == 'onnx-b'
    # another model measured against nothing is still refused: production changed since
    other = make_model(tmp_path, 8, 'other weights')
    third = push(tmp_path, other, make_blessing(tmp_path, 8, True, destination=str(dest)), dest,
                 make_onnx(tmp_path, 8, 'onnx-c'))
    assert third.get('pushed') == 0 and 'the model in production changed since' in third.get('reason')
