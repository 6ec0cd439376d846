"""`sluice export airflow` and `sluice export kfp`: the exported penguin DAG runs end to end in a real
Airflow (`airflow dags test`), and the Kubeflow Pipelines spec loads with the KFP SDK with every task,
dependency and executor reference checked here.

Airflow and the KFP SDK live in an environment of their own, built by tests/airflow/setup_env.sh
(once; kept between runs by a stamp file), never in Sluice's venv. The tests are skipped only when
that environment cannot be built for a reason outside the project (PyPI not reachable), and say so.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest
import yaml

from metadata import MetadataStore
from pipelines.export import ExportError, airflow_dag_source, kfp_pipeline_spec, node_tasks
from pipelines.pipeline import load_pipeline

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SETUP = os.path.join(REPO, 'tests', 'airflow', 'setup_env.sh')
PENGUIN = os.path.join(REPO, 'pipelines', 'examples', 'penguin')
SLUICE = os.path.join(os.path.dirname(sys.executable), 'sluice')


def pypi_problem() -> str | None:
    """Why the packages of tests/airflow/requirements.txt cannot be had from the package index (None
    when the index lists them): the one reason outside the project to go without the environment."""
    with open(os.path.join(REPO, 'tests', 'airflow', 'requirements.txt')) as f:
        pins = [ln.split('#')[0].strip() for ln in f if ln.split('#')[0].strip()]
    for pin in pins:
        name, version = pin.split('==')
        ask = subprocess.run([sys.executable, '-m', 'pip', 'index', 'versions', name], capture_output=True, text=True,
                             timeout=180)
        listed = ask.stdout.partition('Available versions:')[2].replace(',', ' ').split()
        if ask.returncode != 0 or version not in listed:
            said = [ln for ln in (ask.stdout + ask.stderr).splitlines() if ln.startswith('ERROR')]
            return f'the package index does not list {pin} ({said[-1] if said else "not among its versions"})'
    return None


@pytest.fixture(scope='session')
def airflow_env():
    """The bin/ directory of the Airflow + KFP environment, built when missing."""
    started = time.monotonic()
    try:
        done = subprocess.run(['bash', SETUP], capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        pytest.fail(f'{SETUP} did not finish within 15 minutes.')
    if done.returncode != 0:
        lines = [ln for ln in (done.stdout + done.stderr).splitlines() if not ln.startswith('WARNING: Location')]
        problem = pypi_problem()
        if problem:
            pytest.skip(f'The Airflow test environment cannot be built: {problem}.')
        pytest.fail(f'{SETUP} failed (status {done.returncode}) although the package index lists its packages:\n'
                    + '\n'.join(lines[-40:]))
    env_dir = done.stdout.strip().splitlines()[-1]
    print(f'Airflow test environment: {env_dir} ({time.monotonic() - started:.0f}s to check or build)')
    return os.path.join(env_dir, 'bin')


def penguin_file(tmp_path, retries=True):
    """A pipeline file: the penguin example with few train steps, its root under tmp_path, and (with
    ``retries``) retry policies and a timeout to map."""
    path = tmp_path / 'penguin_small.py'
    path.write_text(textwrap.dedent(f'''\
        import sys
        sys.path.insert(0, {PENGUIN!r})
        from penguin_pipeline import create_pipeline as penguin
        from pipelines import Retry

        def create_pipeline():
            pipeline = penguin(root={str(tmp_path / 'root')!r}, train_steps=10)
            if {retries!r}:
                pipeline.retry = Retry(attempts=2, delay=3.0, backoff=1.0)
                pipeline.node('Trainer').with_retry(Retry(attempts=4, delay=5.0, backoff=2.0, max_delay=40.0))
                pipeline.node('Pusher').with_retry(None).with_timeout(600)
            return pipeline
        '''))
    return str(path)


def sluice(*args, cwd):
    return subprocess.run([SLUICE, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


# -- Airflow ------------------------------------------------------------------------------------
def test_airflow_dags_test_runs_the_exported_penguin_dag(tmp_path, airflow_env):
    pipeline_file = penguin_file(tmp_path)
    url = f'sqlite:///{tmp_path}/mlmd.db'
    home = tmp_path / 'airflow'
    (home / 'dags').mkdir(parents=True)
    dag_file = home / 'dags' / 'penguin_dag.py'
    done = sluice('export', 'airflow', pipeline_file, '-o', str(dag_file), '--metadata', url, cwd=tmp_path)
    assert done.returncode == 0 and f'Wrote {dag_file}' in done.stdout, done.stdout + done.stderr

    env = {k: v for k, v in os.environ.items() if not k.startswith(('AIRFLOW', 'PYTHON', 'VIRTUAL_ENV'))}
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__CORE__DAGS_FOLDER=str(home / 'dags'),
               AIRFLOW__CORE__LOAD_EXAMPLES='False', AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f'sqlite:///{home}/airflow.db',
               PATH=airflow_env + os.pathsep + env.get('PATH', ''))
    airflow = os.path.join(airflow_env, 'airflow')
    migrate = subprocess.run([airflow, 'db', 'migrate'], env=env, cwd=home, capture_output=True, text=True, timeout=300)
    assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]

    # What Airflow itself makes of the DAG: tasks, dependencies, retries and timeouts.
    probe = subprocess.run([os.path.join(airflow_env, 'python'), '-c', textwrap.dedent(f'''\
        import json
        from airflow.models import DagBag
        bag = DagBag({str(home / 'dags')!r}, include_examples=False)
        assert not bag.import_errors, bag.import_errors
        dag = bag.get_dag('penguin')
        def seconds(d):
            return None if d is None else d.total_seconds()
        print(json.dumps({{t.task_id: {{
            'upstream': sorted(t.upstream_task_ids), 'retries': t.retries, 'delay': seconds(t.retry_delay),
            'exponential': t.retry_exponential_backoff, 'max_delay': seconds(t.max_retry_delay),
            'timeout': seconds(t.execution_timeout), 'command': t.bash_command}} for t in dag.tasks}}))
        ''')], env=env, cwd=home, capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr[-3000:]
    tasks = json.loads(probe.stdout.strip().splitlines()[-1])
    pipeline = load_pipeline(pipeline_file)  # what `sluice run` runs
    assert sorted(tasks) == sorted(pipeline.node_ids)
    for component in pipeline.components:
        task = tasks[component.id]
        assert task['upstream'] == sorted({u.id for u in component.upstream}), component.id
        assert task['command'].startswith(f'{SLUICE} run-node {pipeline_file} '), task['command']  # by absolute path
        assert f'--node {component.id} ' in task['command'] and "--run-id '{{ run_id | sluice_run_id }}'" in \
            task['command'] and '--no-retry' in task['command']
    assert tasks['Transform']['upstream'] == ['CsvExampleGen', 'ExampleValidator', 'ImportSchemaGen']
    assert tasks['Trainer'] | {'upstream': None, 'command': None} == {
        'upstream': None, 'command': None, 'retries': 3, 'delay': 5.0, 'exponential': True, 'max_delay': 40.0,
        'timeout': None}
    assert (tasks['StatisticsGen']['retries'], tasks['StatisticsGen']['delay'],
            tasks['StatisticsGen']['exponential'], tasks['StatisticsGen']['timeout']) == (1, 3.0, False, None)
    assert (tasks['Pusher']['retries'], tasks['Pusher']['timeout']) == (0, 600.0 + 120.0)

    started = time.monotonic()
    run = subprocess.run([airflow, 'dags', 'test', 'penguin'], env=env, cwd=home, capture_output=True, text=True,
                         timeout=900)
    seconds = time.monotonic() - started
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-6000:]
    assert 'state=success' in log, log[-6000:]
    print(f'airflow dags test penguin: {seconds:.0f}s')

    # One Sluice run, COMPLETE, with every node of the pipeline executed in it.
    store = MetadataStore(url, create=False)
    [record] = store.runs('penguin')
    assert record.run_id.startswith('penguin-manual__'), record.run_id
    assert record.state == 'COMPLETE' and sorted(record.node_ids) == sorted(pipeline.node_ids), record
    executions = store.executions(record.run_id)
    assert sorted(e.node_id for e in executions) == sorted(pipeline.node_ids)
    assert {e.state for e in executions} == {'COMPLETE'}
    assert os.listdir(tmp_path / 'root' / 'serving'), 'the model was not pushed'


def test_airflow_export_errors(tmp_path):
    pipeline_file = penguin_file(tmp_path, retries=False)
    done = sluice('export', 'airflow', pipeline_file, '-o', str(tmp_path / 'dag.yaml'), cwd=tmp_path)
    assert done.returncode == 2
    assert "Airflow loads DAGs from .py files; name it e.g." in done.stderr
    done = sluice('export', 'airflow', str(tmp_path / 'missing.py'), '-o', str(tmp_path / 'dag.py'), cwd=tmp_path)
    assert done.returncode == 2 and 'missing.py does not exist' in done.stderr
    with pytest.raises(ExportError, match="DAG id 'a b': Airflow takes letters, digits"):
        airflow_dag_source(pipeline_file, dag_id='a b')
    with pytest.raises(ExportError, match=r'The metadata URL .* contains a Jinja marker'):
        airflow_dag_source(pipeline_file, metadata='sqlite:///{{ x }}.db')


def test_node_tasks_follow_the_dag_and_the_policies(tmp_path):
    pipeline = load_pipeline(penguin_file(tmp_path))
    tasks = {t.node_id: t for t in node_tasks(pipeline)}
    assert list(tasks) == pipeline.node_ids
    assert tasks['Trainer'].upstream == ('Transform', 'ImportSchemaGen')
    assert (tasks['Trainer'].attempts, tasks['Trainer'].delay, tasks['Trainer'].backoff, tasks['Trainer'].max_delay,
            tasks['Trainer'].timeout_seconds) == (4, 5.0, 2.0, 40.0, None)
    assert (tasks['CsvExampleGen'].attempts, tasks['CsvExampleGen'].delay) == (2, 3.0)  # the pipeline's policy
    assert (tasks['Pusher'].attempts, tasks['Pusher'].timeout_seconds) == (1, 600.0)  # with_retry(None): none


# -- Kubeflow Pipelines -------------------------------------------------------------------------
def test_kfp_spec_loads_with_the_sdk_and_every_reference_holds(tmp_path, airflow_env):
    pipeline_file = penguin_file(tmp_path)
    pipeline = load_pipeline(pipeline_file)
    url = 'postgresql://sluice:secret@db.internal:5432/mlmd'
    out = tmp_path / 'pipeline.yaml'
    done = sluice('export', 'kfp', pipeline_file, '--image', 'registry.example.com/sluice:1.0', '-o', str(out),
                  '--metadata', url, '--file-in-image', '/app/penguin_small.py', cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    with open(out) as f:
        spec = yaml.safe_load(f)

    # Every task, dependency and executor reference, checked here (the SDK does not check them).
    components, executors = spec['components'], spec['deploymentSpec']['executors']
    tasks = spec['root']['dag']['tasks']
    by_node = {t['taskInfo']['name']: (name, t) for name, t in tasks.items()}
    assert sorted(by_node) == sorted(pipeline.node_ids)
    assert len(components) == len(executors) == len(tasks)
    for component in pipeline.components:
        name, task = by_node[component.id]
        comp = components[task['componentRef']['name']]
        assert comp['inputDefinitions']['parameters'] == {'run_id': {'parameterType': 'STRING'}}
        container = executors[comp['executorLabel']]['container']
        assert container['image'] == 'registry.example.com/sluice:1.0'
        assert container['command'] == ['sluice', 'run-node', '/app/penguin_small.py', '--run-id',
                                        "{{$.inputs.parameters['run_id']}}", '--node', component.id,
                                        '--metadata', url, '--no-retry']
        assert task['inputs']['parameters']['run_id'] == {'runtimeValue': {'constant': '{{$.pipeline_job_uuid}}'}}
        assert task['cachingOptions'] == {'enableCache': False}
        depends = task.get('dependentTasks', [])
        assert all(d in tasks for d in depends), (name, depends)
        assert sorted(tasks[d]['taskInfo']['name'] for d in depends) == sorted({u.id for u in component.upstream})
    assert by_node['Trainer'][1]['retryPolicy'] == {'maxRetryCount': 3, 'backoffDuration': '5s',
                                                    'backoffFactor': 2.0, 'backoffMaxDuration': '40s'}
    assert by_node['CsvExampleGen'][1]['retryPolicy']['maxRetryCount'] == 1
    assert 'retryPolicy' not in by_node['Pusher'][1]
    # Nothing unreferenced: every component is some task's, every executor some component's.
    assert {t['componentRef']['name'] for t in tasks.values()} == set(components)
    assert {c['executorLabel'] for c in components.values()} == set(executors)

    # The KFP SDK loads it, parses it strictly into its PipelineSpec proto, and compiles it as a step.
    sdk = subprocess.run([os.path.join(airflow_env, 'python'), os.path.join(REPO, 'tests', 'airflow',
                                                                            'load_kfp_spec.py'), str(out), str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert sdk.returncode == 0, sdk.stderr[-3000:]
    seen = json.loads(sdk.stdout.strip().splitlines()[-1])
    assert seen['component_name'] == 'penguin' and seen['component_inputs'] == []
    assert sorted(seen['proto_tasks']) == sorted(tasks) == seen['recompiled_tasks']
    for name, task in seen['proto_tasks'].items():
        assert task['component'] == tasks[name]['componentRef']['name']
        assert task['depends'] == tasks[name].get('dependentTasks', [])
    assert seen['proto_tasks'][by_node['Trainer'][0]]['retries'] == 3
    assert {n: e['command'] for n, e in seen['proto_executors'].items()} == \
        {n: e['container']['command'] for n, e in executors.items()}


def test_kfp_export_errors(tmp_path):
    pipeline_file = penguin_file(tmp_path, retries=False)
    done = sluice('export', 'kfp', pipeline_file, '-o', str(tmp_path / 'p.yaml'), cwd=tmp_path)
    assert done.returncode == 2 and 'the following arguments are required: --image' in done.stderr
    with pytest.raises(ExportError, match=r"Image 'a b': give the container image"):
        kfp_pipeline_spec(pipeline_file, 'a b', metadata='postgresql://h/db')
    with pytest.raises(ExportError, match=r"KFP tasks run in pods .*the pipeline's own is sqlite:.*Pass --metadata postgresql://"):
        kfp_pipeline_spec(pipeline_file, 'img:1')  # the pipeline's own store is a SQLite file
    clash = tmp_path / 'clash.py'
    clash.write_text(textwrap.dedent(f'''\
        import sys
        sys.path.insert(0, {os.path.join(REPO, 'tests')!r})
        from dummies import Source
        from pipelines import Pipeline

        def create_pipeline():
            return Pipeline('clash', {str(tmp_path / 'r')!r}, [Source(input_base='.').with_id('load_a'),
                                                                Source(input_base='.').with_id('load-a')])
        '''))
    with pytest.raises(ExportError, match=r"Node ids 'load_a', 'load-a' all become the Kubeflow task name 'load-a'"):
        kfp_pipeline_spec(str(clash), 'img:1', metadata='postgresql://h/db')
