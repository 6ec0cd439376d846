"""Several pipeline runs at once on one store: no 'database is locked', separate correct records,
and exactly one winner when two runs push over the same baseline."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from sluice.metadata import MetadataStore

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TESTS = os.path.join(REPO, 'tests')

SCRIPT = textwrap.dedent('''
    import sys
    sys.path.insert(0, {tests!r})
    from dummies import Count, FakeBless, FakeModel, Source, Upper
    from sluice.components import Pusher
    from sluice import LocalDagRunner, Pipeline

    src = Source(input_base={input_base!r})
    up = Upper(text=src.outputs['text'], suffix={suffix!r})
    count = Count(text=up.outputs['result'])
    model = FakeModel(text=up.outputs['result'])
    bless = FakeBless(model=model.outputs['model'])
    push = Pusher(model=model.outputs['model'], blessing=bless.outputs['blessing'],
                  push_destination={destination!r})
    pipeline = Pipeline({name!r}, {root!r}, [src, up, count, model, bless, push], metadata={url!r})
    result = LocalDagRunner(progress=False).run(pipeline, run_id={run_id!r})
    print('RESULT', result.state, result['Pusher'].outputs['pushed_model'].get('pushed') if result.state == 'COMPLETE' else '-')
    for node in result.nodes.values():
        if node.error:
            print(node.node_id, node.error)
''')


def start(tmp_path, url, index, text_dir, name='busy', destination=None):
    script = SCRIPT.format(tests=TESTS, input_base=str(text_dir), suffix=f'#{index}', name=name,
                           root=str(tmp_path / 'root'), url=url, run_id=f'run-{index}',
                           destination=destination or str(tmp_path / f'serving-{index}'))
    return subprocess.Popen([sys.executable, '-c', script], env={**os.environ, 'PYTHONPATH': REPO},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def check_runs(url, n, text_dir):
    store = MetadataStore(url)
    runs = {r.run_id: r for r in store.runs()}
    assert sorted(runs) == [f'run-{i}' for i in range(n)]
    for i in range(n):
        records = store.executions(f'run-{i}')
        assert sorted(r.node_id for r in records) == ['Count', 'FakeBless', 'FakeModel', 'Pusher', 'Source', 'Upper']
        assert {r.state for r in records} <= {'COMPLETE', 'CACHED'} and runs[f'run-{i}'].state == 'COMPLETE'
        assert all(r.run_id == f'run-{i}' for r in records)
        [upper] = [r for r in records if r.node_id == 'Upper']
        with open(os.path.join(upper.outputs['result'][0].uri, 'data.txt')) as f:
            assert f.read() == f'HELLO WORLD#{i}'  # each run got its own result


@pytest.mark.parametrize('n', [2, 4])
def test_runs_started_at_once_on_one_store(tmp_path, text_dir, n, store_url):
    url = store_url
    procs = [start(tmp_path, url, i, text_dir) for i in range(n)]
    outs = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, outs):
        assert proc.returncode == 0 and 'RESULT COMPLETE 1' in out, out + err[-3000:]
        assert 'database is locked' not in err
    check_runs(url, n, text_dir)


def test_two_runs_pushing_over_the_same_baseline_exactly_one_wins(tmp_path, text_dir, store_url):
    url = store_url
    destination = str(tmp_path / 'serving')
    procs = [start(tmp_path, url, i, text_dir, destination=destination) for i in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert sorted(o.split('RESULT ')[1].split()[1] for o in outs) == ['0', '1'], outs
    store = MetadataStore(url)
    pushed = [store.node_outputs(f'run-{i}', 'Pusher')['pushed_model'][0] for i in range(2)]
    loser = [p for p in pushed if not p.get('pushed')][0]
    assert loser.get('reason').startswith('the model in production changed since this model was evaluated')
    assert len([v for v in os.listdir(destination) if v.isdigit()]) == 1
