"""Kill anywhere: the standard pipeline is killed with SIGKILL at a point in every component (inside
executors, before and after publishing, between the push's rename and its record), resumed each
time under the same run id, and ends in the same state as an uninterrupted run."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from sluice.components.production.destination import inspect_version
from sluice.metadata import MetadataStore

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PENGUIN = os.path.join(REPO, 'pipelines', 'examples', 'penguin', 'penguin_pipeline.py')

# In the order the nodes reach them with two nodes at once (--parallel 2), so that each resume gets
# past the previous point: ImportSchemaGen runs beside CsvExampleGen and ends first (the first kill
# abandons CsvExampleGen in flight beside it).
KILL_POINTS = [
    'ImportSchemaGen:published',    # just after a publish, another node running
    'CsvExampleGen:executor:1.5',   # inside Beam, while writing examples
    'StatisticsGen:executor:1',     # inside TFDV
    'ExampleValidator:publish',     # executor done, nothing recorded yet
    'Transform:executor:1',         # inside tf.Transform
    'Trainer:executor:3',           # inside model.fit
    'Trainer.onnx:executor:1',      # inside the ONNX export, the Evaluator running beside it
    'Evaluator:executor:2',         # inside TFMA
    'ModelValidator:start',         # execution registered, executor not started
    'Pusher:publish',               # the model renamed into place, the push not yet recorded
]


def sluice(args, cwd, kill_at=None):
    env = {**os.environ, 'PYTHONPATH': REPO}
    if kill_at:
        env['SLUICE_KILL_AT'] = kill_at
    return subprocess.run([sys.executable, '-m', 'sluice.ui.cli', *args, '--parallel', '2'], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def assert_store_is_sound(store, run_id, root):
    live = [a for a in store.mlmd.get_artifacts() if a.state == 2]  # LIVE
    assert not [a.uri for a in live if not os.path.exists(a.uri)], 'a LIVE artifact without its files'
    serving = os.path.join(root, 'serving')
    if os.path.isdir(serving):  # only complete versions are visible
        for version in (v for v in os.listdir(serving) if v.isdigit()):
            assert os.path.isfile(os.path.join(serving, version, 'sluice_push.json'))
            assert inspect_version(serving, version).complete, inspect_version(serving, version).problem


def summary(result_dir_store, run_id):
    store = result_dir_store
    out = {}
    for node, key in (('Evaluator', 'evaluation'), ('ModelValidator', 'blessing'), ('Pusher', 'pushed_model')):
        out[node] = store.node_outputs(run_id, node)[key][0]
    with open(os.path.join(out['Evaluator'].uri, 'metrics.json')) as f:
        metrics = json.load(f)['slices']['Overall']['candidate']
    return {'accuracy': round(metrics['sparse_categorical_accuracy'], 6), 'blessed': out['ModelValidator'].get('blessed'),
            'pushed': out['Pusher'].get('pushed')}


def test_kill_at_every_component_then_resume(tmp_path, request):
    work = tmp_path / 'killed'
    work.mkdir()
    root = work / 'runs' / 'penguin'
    url = f'sqlite:///{root}/metadata.db'
    first = sluice(['run', PENGUIN], work, KILL_POINTS[0])
    assert first.returncode == -9, first.stdout[-3000:] + first.stderr[-3000:]
    store = MetadataStore(url)
    [run] = store.runs('penguin')
    for point in KILL_POINTS[1:]:
        assert_store_is_sound(store, run.run_id, root)
        proc = sluice(['resume', run.run_id, '--metadata', url], work, point)
        assert proc.returncode == -9, f'{point}: ' + proc.stdout[-3000:] + proc.stderr[-3000:]
        assert 'Resume plan for run' in proc.stdout
    assert_store_is_sound(store, run.run_id, root)
    final = sluice(['resume', run.run_id, '--metadata', url], work)
    assert final.returncode == 0, final.stdout[-3000:] + final.stderr[-3000:]
    # Killed between the push's rename and its record: the resumed Pusher finds its model in production.
    [version] = [v for v in os.listdir(root / 'serving') if not v.startswith('.')]
    pushed = store.node_outputs(run.run_id, 'Pusher')['pushed_model'][0]
    assert pushed.get('pushed') == 1 and pushed.get('pushed_version') == version
    assert pushed.get('reason') == f'already in production as version {version} (pushed earlier; nothing copied)'
    assert f"Pusher: pushed to {root / 'serving' / version} (already in production: pushed earlier, nothing copied)" \
        in final.stdout

    records = store.executions(run.run_id)
    assert not [r for r in records if r.state == 'RUNNING']
    assert store.run(run.run_id).state == 'COMPLETE'
    abandoned = [r.node_id for r in records if r.properties.get('error_type') == 'Abandoned']
    assert set(abandoned) >= {'CsvExampleGen', 'StatisticsGen', 'ExampleValidator', 'Transform', 'Trainer',
                              'Trainer.onnx', 'Evaluator', 'ModelValidator', 'Pusher'}
    assert_store_is_sound(store, run.run_id, root)
    assert [v for v in os.listdir(root / 'serving') if not v.startswith('.')] == [version]
    assert not [v for v in os.listdir(root / 'serving') if v.startswith('.staging')]

    # The same pipeline, uninterrupted, in another directory: the same outcome. The session's `sluice run`
    # of it (conftest.py), read from its store.
    _, clean = request.getfixturevalue('penguin_cli_run')
    assert clean['status'] == 0, clean['stdout'][-3000:]
    reference = re.search(r'^Run (\S+) of pipeline', clean['stdout'], re.M).group(1)
    assert MetadataStore(clean['metadata']).run(reference).state == 'COMPLETE'
    expected = summary(MetadataStore(clean['metadata']), reference)
    assert summary(store, run.run_id) == expected
    assert expected['pushed'] == 1 and expected['blessed'] == 1
