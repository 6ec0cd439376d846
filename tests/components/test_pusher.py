"""Pusher on hand-made models and blessings: atomic versions, NOT_BLESSED, compare-and-swap, races."""
from __future__ import annotations

import json
import multiprocessing
import os

import pytest

from components.pusher import PushError, PusherExecutor, current_push, versions
from metadata import Model, ModelBlessing, PushedModel


def make_model(tmp_path, model_id, content='weights'):
    d = tmp_path / f'model-{model_id}'
    (d / 'Format-Serving' / 'variables').mkdir(parents=True, exist_ok=True)
    (d / 'Format-Serving' / 'saved_model.pb').write_text(content)
    (d / 'Format-ONNX').mkdir(exist_ok=True)
    (d / 'Format-ONNX' / 'model.onnx').write_text(content + '-onnx')
    model = Model(uri=str(d))
    model.id = model_id
    return model


def make_blessing(tmp_path, model_id, blessed, baseline_id):
    d = tmp_path / f'blessing-{model_id}-{blessed}-{baseline_id}'
    d.mkdir(exist_ok=True)
    b = ModelBlessing(uri=str(d), blessed=int(blessed), current_model_id=model_id, baseline_model_id=baseline_id)
    b.id = 100 + model_id
    return b


def push(tmp_path, model, blessing, destination):
    out = tmp_path / f'pushed-{len(list(tmp_path.iterdir()))}'
    out.mkdir()
    pushed = PushedModel(uri=str(out))
    PusherExecutor().run(model=model, blessing=blessing, pushed_model=pushed, push_destination=str(destination))
    return pushed


def test_push_is_a_new_version_with_both_formats_and_a_record(tmp_path):
    dest = tmp_path / 'serving'
    first = push(tmp_path, make_model(tmp_path, 1), make_blessing(tmp_path, 1, True, 0), dest)
    assert first.get('pushed') == 1 and first.get('pushed_destination') == str(dest)
    version = first.get('pushed_version')
    assert versions(str(dest)) == [int(version)]
    target = dest / version
    assert (target / 'Format-Serving' / 'saved_model.pb').read_text() == 'weights'
    assert (target / 'Format-ONNX' / 'model.onnx').read_text() == 'weights-onnx'
    record = json.loads((target / 'sluice_push.json').read_text())
    assert record['model_id'] == 1 and record['baseline_model_id'] is None
    assert (tmp_path / os.path.basename(first.uri) / 'Format-Serving' / 'saved_model.pb').exists()  # the copy
    assert not [n for n in os.listdir(dest) if n.startswith('.staging')]

    second = push(tmp_path, make_model(tmp_path, 2, 'better'), make_blessing(tmp_path, 2, True, 1), dest)
    assert second.get('pushed') == 1 and int(second.get('pushed_version')) > int(version)
    assert current_push(str(dest))['model_id'] == 2


def test_not_blessed_leaves_the_destination_untouched(tmp_path):
    dest = tmp_path / 'serving'
    push(tmp_path, make_model(tmp_path, 1), make_blessing(tmp_path, 1, True, 0), dest)
    before = sorted(os.walk(dest))
    pushed = push(tmp_path, make_model(tmp_path, 2), make_blessing(tmp_path, 2, False, 1), dest)
    assert pushed.get('pushed') == 0 and 'NOT_BLESSED' in pushed.get('reason')
    assert sorted(os.walk(dest)) == before
    assert (tmp_path / os.path.basename(pushed.uri) / 'NOT_PUSHED').exists()


def test_blessing_against_a_stale_baseline_is_not_pushed(tmp_path):
    dest = tmp_path / 'serving'
    push(tmp_path, make_model(tmp_path, 1), make_blessing(tmp_path, 1, True, 0), dest)
    push(tmp_path, make_model(tmp_path, 2), make_blessing(tmp_path, 2, True, 1), dest)
    # Model 3 was measured against model 1, but model 2 went to production meanwhile.
    stale = push(tmp_path, make_model(tmp_path, 3), make_blessing(tmp_path, 3, True, 1), dest)
    assert stale.get('pushed') == 0
    assert stale.get('reason').startswith('the model in production changed since this model was evaluated '
                                          '(it was measured against model #1, production is now model #2)')
    assert current_push(str(dest))['model_id'] == 2


def test_pushing_the_model_already_in_production_is_idempotent(tmp_path):
    dest = tmp_path / 'serving'
    first = push(tmp_path, make_model(tmp_path, 1), make_blessing(tmp_path, 1, True, 0), dest)
    again = push(tmp_path, make_model(tmp_path, 1), make_blessing(tmp_path, 1, True, 0), dest)
    assert again.get('pushed') == 1 and again.get('pushed_version') == first.get('pushed_version')
    assert len(versions(str(dest))) == 1


def test_unwritable_destination_is_a_clear_error(tmp_path):
    blocker = tmp_path / 'a-file'
    blocker.write_text('')
    with pytest.raises(PushError, match=r'Cannot write to the push destination .*/a-file/serving: Not a directory\. '
                                        r'Choose a writable push_destination'):
        push(tmp_path, make_model(tmp_path, 1), make_blessing(tmp_path, 1, True, 0), blocker / 'serving')


def test_blessing_of_another_model_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r'blesses model #2, not Model\(#1'):
        push(tmp_path, make_model(tmp_path, 1), make_blessing(tmp_path, 2, True, 0), tmp_path / 'serving')


def _race(args):
    tmp, model_id, dest, barrier = args
    from pathlib import Path
    barrier.wait()
    pushed = push(Path(tmp) / f'w{model_id}', make_model(Path(tmp) / f'w{model_id}', model_id),
                  make_blessing(Path(tmp) / f'w{model_id}', model_id, True, 1), dest)
    return model_id, pushed.get('pushed'), pushed.get('reason')


def test_two_processes_pushing_over_the_same_baseline_exactly_one_wins(tmp_path):
    dest = tmp_path / 'serving'
    push(tmp_path, make_model(tmp_path, 1), make_blessing(tmp_path, 1, True, 0), dest)
    for name in ('w2', 'w3', 'w4'):
        (tmp_path / name).mkdir()
    ctx = multiprocessing.get_context('spawn')
    with ctx.Manager() as manager:
        barrier = manager.Barrier(3)
        with ctx.Pool(3) as pool:
            results = pool.map(_race, [(str(tmp_path), i, str(dest), barrier) for i in (2, 3, 4)])
    winners = [r for r in results if r[1] == 1]
    losers = [r for r in results if r[1] == 0]
    assert len(winners) == 1 and len(losers) == 2
    assert all('the model in production changed' in r[2] for r in losers)
    assert current_push(str(dest))['model_id'] == winners[0][0]
    assert len(versions(str(dest))) == 2
