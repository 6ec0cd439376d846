"""Resume on the standard pipeline: a Trainer that fails then is fixed, and a SIGKILL inside Trainer."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from sluice.metadata import MetadataStore
from sluice import LocalDagRunner, load_pipeline
from sluice.ui.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PENGUIN_DIR = os.path.join(REPO, 'pipelines', 'examples', 'penguin')


def pipeline_file(tmp_path, trainer_module):
    """The penguin pipeline with its own root and a separate Trainer module file."""
    path = tmp_path / 'pipe.py'
    path.write_text(textwrap.dedent(f'''
        import sys
        sys.path.insert(0, {PENGUIN_DIR!r})
        from penguin_pipeline import create_pipeline as penguin

        def create_pipeline():
            pipeline = penguin(root={str(tmp_path / 'root')!r}, train_steps=20)
            pipeline.node('Trainer').parameters['module_file'] = {str(trainer_module)!r}
            return pipeline
    '''))
    return str(path)


def counts(store, run_id):
    out = {}
    for r in store.executions(run_id):
        out.setdefault(r.node_id, []).append(r.state)
    return out


def test_trainer_fails_then_fixed_and_resumed_in_the_same_run(tmp_path):
    with open(os.path.join(PENGUIN_DIR, 'penguin_module.py')) as f:
        good = f.read()
    module = tmp_path / 'trainer_module.py'
    module.write_text(good.replace('def run_fn(fn_args):\n', 'def run_fn(fn_args):\n    raise ValueError("bad')
                      .replace('    raise ValueError("bad', '    raise ValueError("bad learning rate")\n', 1))
    pipeline = load_pipeline(pipeline_file(tmp_path, module))
    first = LocalDagRunner(progress=False).run(pipeline)
    assert first['Trainer'].state == 'FAILED' and 'bad learning rate' in first['Trainer'].error
    module.write_text(good)
    resumed = LocalDagRunner(progress=False).resume(None, first.run_id, metadata=pipeline.metadata)
    assert resumed.state == 'COMPLETE' and resumed.run_id == first.run_id
    store = MetadataStore(pipeline.metadata)
    states = counts(store, first.run_id)
    for node in ('CsvExampleGen', 'ImportSchemaGen', 'StatisticsGen', 'ExampleValidator', 'Transform'):
        assert states[node] == ['COMPLETE'], node  # no new executions before the Trainer
    assert states['Trainer'] == ['FAILED', 'COMPLETE']
    assert states['Evaluator'] == states['ModelValidator'] == states['Pusher'] == ['COMPLETE']
    assert resumed['Pusher'].outputs['pushed_model'].get('pushed') == 1


def test_sigkill_inside_the_trainer_then_resume_from_the_run_id_alone(tmp_path, capsys):
    path = pipeline_file(tmp_path, os.path.join(PENGUIN_DIR, 'penguin_module.py'))
    script = (f'import sys; from sluice import LocalDagRunner, load_pipeline; '
              f'LocalDagRunner().run(load_pipeline({path!r}), run_id="k1")')
    env = {**os.environ, 'PYTHONPATH': REPO, 'SLUICE_KILL_AT': 'Trainer:executor:4'}
    proc = subprocess.run([sys.executable, '-c', script], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -9, proc.stdout[-2000:] + proc.stderr[-2000:]
    url = f'sqlite:///{tmp_path}/root/metadata.db'
    store = MetadataStore(url)
    [trainer] = [r for r in store.executions('k1') if r.node_id == 'Trainer']
    assert trainer.state == 'RUNNING'  # what a kill leaves behind
    assert os.path.isdir(os.path.join(tmp_path, 'root', 'Trainer', 'model', str(trainer.id)))

    assert main(['resume', 'k1', '--metadata', url]) == 0
    out = capsys.readouterr().out
    assert f'Trainer           run    abandoned: its process (pid {trainer.properties["pid"]}' in out
    assert store.execution(trainer.id).state == 'FAILED'
    assert not os.path.exists(os.path.join(tmp_path, 'root', 'Trainer', 'model', str(trainer.id)))
    states = counts(store, 'k1')
    assert states['Transform'] == ['COMPLETE'] and states['Trainer'] == ['FAILED', 'COMPLETE']
    assert not [r for r in store.executions('k1') if r.state == 'RUNNING']
    assert not [a for a in store.mlmd.get_artifacts() if a.state == 2 and not os.path.exists(a.uri)]
    pushed = store.node_outputs('k1', 'Pusher')['pushed_model'][0]
    assert pushed.get('pushed') == 1
    versions = os.listdir(os.path.join(tmp_path, 'root', 'serving'))
    assert [v for v in versions if not v.startswith('.')] == [pushed.get('pushed_version')]
