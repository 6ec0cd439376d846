"""`sluice export airflow` and `sluice export kfp`: the exported penguin DAG runs end to end in a real
Airflow (`airflow dags test`); in a DAG of test components Airflow fails a node that failed with an error a
retry cannot fix after one try (run-node's exit status 3) and retries a transient failure; run-node's exit
statuses are pinned; the Kubeflow Pipelines spec loads with the KFP SDK with every task, dependency and
executor reference checked here.

Airflow and the KFP SDK live in an environment of their own, built by tests/airflow/setup_env.sh
(once; kept between runs by a stamp file), never in Sluice's venv. The tests are skipped only when
that environment cannot be built for a reason outside the project (PyPI not reachable), and say so.
"""
from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest
import yaml

from sluice.metadata import MetadataStore
from sluice.integrations.airflow import airflow_dag_source
from sluice.integrations.kfp import kfp_pipeline_spec
from sluice.integrations.tasks import ExportError, node_tasks
from sluice.dsl.pipeline import load_pipeline

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
        done = subprocess.run(['bash', SETUP], capture_output=True, text=True, timeout=900,
                              env={**os.environ, 'SLUICE_UV': os.path.join(os.path.dirname(sys.executable), 'uv')})
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


def penguin_file(tmp_path, retries=True, name='penguin'):
    """A pipeline file: the penguin example with few train steps (20, as conftest.py's penguin_run), its
    root under tmp_path, and (with ``retries``) retry policies and a timeout to map."""
    path = tmp_path / 'penguin_small.py'
    path.write_text(textwrap.dedent(f'''\
        import sys
        sys.path.insert(0, {PENGUIN!r})
        from penguin_pipeline import create_pipeline as penguin
        from sluice import Retry

        def create_pipeline():
            pipeline = penguin(root={str(tmp_path / 'root')!r}, train_steps=20)
            pipeline.name = {name!r}
            if {retries!r}:
                pipeline.retry = Retry(attempts=2, delay=3.0, backoff=1.0)
                pipeline.node('Trainer').with_retry(Retry(attempts=4, delay=5.0, backoff=2.0, max_delay=40.0))
                pipeline.node('Pusher').with_retry(None).with_timeout(600)
            return pipeline
        '''))
    return str(path)


def sluice(*args, cwd):
    return subprocess.run([SLUICE, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def airflow_home(tmp_path, airflow_env):
    """A fresh Airflow home under tmp_path, its database migrated: (the environment its commands run
    with, the path of its dags/ folder)."""
    home = tmp_path / 'airflow'
    (home / 'dags').mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(('AIRFLOW', 'PYTHON', 'VIRTUAL_ENV'))}
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__CORE__DAGS_FOLDER=str(home / 'dags'),
               AIRFLOW__CORE__LOAD_EXAMPLES='False', AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f'sqlite:///{home}/airflow.db',
               PATH=airflow_env + os.pathsep + env.get('PATH', ''))
    migrate = subprocess.run([os.path.join(airflow_env, 'airflow'), 'db', 'migrate'], env=env, cwd=home,
                             capture_output=True, text=True, timeout=300)
    assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
    return env, home / 'dags'


# -- Airflow ------------------------------------------------------------------------------------
def test_airflow_dags_test_runs_the_exported_penguin_dag(tmp_path, airflow_env, postgres_url, penguin_run):
    """The penguin example exported and run by Airflow: one `sluice run-node` process per node, on a
    PostgreSQL store. `sluice run` of the same file then reuses every node, and the outputs equal those
    of an independent run on a store of its own (the session's penguin run, conftest.py's penguin_run:
    the same parameters, LocalDagRunner as `sluice run` drives it, SQLite)."""
    import uuid

    from outputs import assert_same_penguin_outputs

    name = f'penguin-{uuid.uuid4().hex[:8]}'  # its own name: the PostgreSQL store is shared with other tests
    pipeline_file = penguin_file(tmp_path, name=name)
    url = postgres_url
    env, dags = airflow_home(tmp_path, airflow_env)
    home = dags.parent
    dag_file = dags / 'penguin_dag.py'
    done = sluice('export', 'airflow', pipeline_file, '-o', str(dag_file), '--metadata', url, cwd=tmp_path)
    assert done.returncode == 0 and f'Wrote {dag_file}' in done.stdout, done.stdout + done.stderr
    airflow = os.path.join(airflow_env, 'airflow')

    # What Airflow itself makes of the DAG: tasks, dependencies, retries and timeouts.
    probe = subprocess.run([os.path.join(airflow_env, 'python'), '-c', textwrap.dedent(f'''\
        import json
        from airflow.models import DagBag
        bag = DagBag({str(home / 'dags')!r}, include_examples=False)
        assert not bag.import_errors, bag.import_errors
        dag = bag.get_dag({name!r})
        def seconds(d):
            return None if d is None else d.total_seconds()
        print(json.dumps({{t.task_id: {{
            'upstream': sorted(t.upstream_task_ids), 'retries': t.retries, 'delay': seconds(t.retry_delay),
            'exponential': t.retry_exponential_backoff, 'max_delay': seconds(t.max_retry_delay),
            'timeout': seconds(t.execution_timeout), 'command': t.bash_command, 'operator': type(t).__name__,
            'skip': list(t.skip_on_exit_code)}} for t in dag.tasks}}))
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
            task['command'] and '--no-retry' in task['command'] and \
            task['command'].endswith("--attempt '{{ ti.try_number }}'")
        # run-node's exit status 3 (a retry cannot fix it), which BashOperator would skip, fails the task unretried.
        assert (task['operator'], task['skip']) == ('SluiceNodeOperator', [3]), task
    assert tasks['Transform']['upstream'] == ['CsvExampleGen', 'ExampleValidator', 'ImportSchemaGen']
    trainer = {k: v for k, v in tasks['Trainer'].items() if k not in ('upstream', 'command', 'operator', 'skip')}
    assert trainer == {'retries': 3, 'delay': 5.0, 'exponential': True, 'max_delay': 40.0, 'timeout': None}
    assert (tasks['StatisticsGen']['retries'], tasks['StatisticsGen']['delay'],
            tasks['StatisticsGen']['exponential'], tasks['StatisticsGen']['timeout']) == (1, 3.0, False, None)
    assert (tasks['Pusher']['retries'], tasks['Pusher']['timeout']) == (0, 600.0 + 120.0)

    started = time.monotonic()
    run = subprocess.run([airflow, 'dags', 'test', name], env=env, cwd=home, capture_output=True, text=True,
                         timeout=900)
    seconds = time.monotonic() - started
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-6000:]
    assert 'state=success' in log, log[-6000:]
    print(f'airflow dags test penguin: {seconds:.0f}s')

    # One Sluice run, COMPLETE, with every node of the pipeline executed in it, each in a process of its own.
    store = MetadataStore(url, create=False)
    [record] = store.runs(name)
    assert record.run_id.startswith(f'{name}-manual__'), record.run_id
    assert record.state == 'COMPLETE' and sorted(record.node_ids) == sorted(pipeline.node_ids), record
    executions = store.executions(record.run_id)
    assert sorted(e.node_id for e in executions) == sorted(pipeline.node_ids)
    assert {e.state for e in executions} == {'COMPLETE'}
    assert len({e.properties['pid'] for e in executions}) == len(executions) == 10
    assert os.listdir(tmp_path / 'root' / 'serving'), 'the model was not pushed'

    # `sluice run` of the same file reuses every node, each the artifacts the tasks recorded.
    by_node = {e.node_id: e for e in executions}
    again = sluice('run', pipeline_file, '--metadata', url, cwd=tmp_path)
    assert again.returncode == 0 and '0 executed, 10 cached' in again.stdout, again.stdout + again.stderr
    cached_run = again.stdout.split()[1]
    for r in store.executions(cached_run):
        assert r.state == 'CACHED'
        assert {k: [a.id for a in v] for k, v in r.outputs.items()} == \
            {k: [a.id for a in v] for k, v in by_node[r.node_id].outputs.items()}

    # The independent run: the same outputs, a model trained and judged the same.
    _, reference = penguin_run
    assert reference['state'] == 'COMPLETE' and reference['node_states'] == dict.fromkeys(pipeline.node_ids, 'COMPLETE'), \
        reference
    ref_store = MetadataStore(reference['metadata'])
    assert_same_penguin_outputs(by_node, {r.node_id: r for r in ref_store.executions(reference['run_id'])})


EXITS_PIPELINE = """\
import sys
sys.path.insert(0, {tests!r})
from sluice import Pipeline, Retry
from dummies import ApplyModule, Flaky, Slow, Source

def create_pipeline():
    source = Source(input_base={input!r})
    # A module file without the transform() ApplyModule needs: ModuleFileError, which a retry cannot fix.
    apply = ApplyModule(text=source.outputs['text'], module_file={module!r}).with_id('Apply')
    flaky = Flaky(counter={counter!r}, fail_times=1)  # a transient ConnectionError on its first call
    nodes = [source, apply, flaky]
    if {slow!r}:
        nodes.append(Slow(text=source.outputs['text'], seconds=60.0).with_timeout(1.0))
    return Pipeline('exits', {root!r}, nodes, metadata={url!r}, retry=Retry(attempts=3, delay=0, backoff=1))
"""


def exits_file(tmp_path, text_dir, slow=False):
    """A pipeline of tests/dummies.py components (no TensorFlow), every node under Retry(attempts=3):
    Source succeeds, Apply fails with an error a retry cannot fix, Flaky fails once then succeeds, and
    (with ``slow``) Slow runs past its 1 s timeout."""
    module = tmp_path / 'no_transform.py'
    module.write_text('def other(text):\n    return text\n')
    path = tmp_path / 'exits_pipeline.py'
    path.write_text(EXITS_PIPELINE.format(tests=os.path.join(REPO, 'tests'), input=str(text_dir), module=str(module),
                                          counter=str(tmp_path / 'flaky_calls.txt'), slow=slow,
                                          root=str(tmp_path / 'root'), url=f'sqlite:///{tmp_path}/mlmd.db'))
    return str(path), f'sqlite:///{tmp_path}/mlmd.db'


def states(store, run_id, node):
    return [e.state for e in store.executions(run_id) if e.node_id == node]


def test_run_node_exit_statuses(tmp_path, text_dir):
    """0 done, 1 a retry may succeed (a transient error, a timeout, a store that cannot be reached),
    2 usage, 3 a retry cannot fix it: what the exported Airflow tasks map to failing without retries."""
    pipeline_file, url = exits_file(tmp_path, text_dir, slow=True)

    def run_node(node, *extra, metadata=url):
        return sluice('run-node', pipeline_file, '--run-id', 'r1', '--node', node, '--metadata', metadata, *extra,
                      cwd=tmp_path)

    early = run_node('Apply', '--no-retry')  # its upstream node has not run yet: usage
    assert early.returncode == 2 and 'Apply needs Source (never started) to have completed in run r1' in early.stderr
    assert run_node('Source', '--no-retry').returncode == 0
    assert run_node('Uper').returncode == 2  # no such node

    bad = run_node('Apply', '--no-retry')
    assert bad.returncode == 3, bad.stdout + bad.stderr
    assert 'ModuleFileError: Module file ' in bad.stdout and 'has no function transform()' in bad.stdout
    assert ('not retried: Apply failed with an error a retry cannot fix (with the same input and code it fails the '
            'same way); fix the cause, then run it again. Exit status 3.') in bad.stdout
    # Without --no-retry the node's own policy (3 attempts) does not retry it either: one more execution.
    again = run_node('Apply')
    assert again.returncode == 3 and 'not retried: Apply failed' in again.stdout, again.stdout + again.stderr
    store = MetadataStore(url, create=False)
    assert states(store, 'r1', 'Apply') == ['FAILED', 'FAILED']

    blip = run_node('Flaky', '--no-retry')
    assert blip.returncode == 1 and 'ConnectionError: worker blipped (call 1)' in blip.stdout, blip.stdout + blip.stderr
    assert 'not retried' not in blip.stdout
    assert run_node('Flaky', '--no-retry').returncode == 0
    assert states(store, 'r1', 'Flaky') == ['FAILED', 'COMPLETE']

    slow = run_node('Slow', '--no-retry')  # a timeout: a retry may succeed
    assert slow.returncode == 1 and 'Slow timed out after 1s' in slow.stdout, slow.stdout + slow.stderr
    assert 'not retried' not in slow.stdout

    with socket.socket() as s:  # a port nothing listens on: the store is down
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    down = run_node('Source', metadata=f'postgresql://sluice:pw@127.0.0.1:{port}/mlmd')
    assert down.returncode == 1, down.stdout + down.stderr
    assert f'Cannot connect to the metadata store at postgresql://sluice:***@127.0.0.1:{port}/mlmd' in down.stderr
    assert ('sluice run-node: exit status 1: the metadata store could not be used for Source; a retry may succeed '
            'if it was down, unreachable or busy.') in down.stderr

    bad_url = run_node('Source', metadata='postgres-ql://sluice@127.0.0.1/mlmd')  # no retry fixes a typo
    assert bad_url.returncode == 3 and "Unsupported metadata URL 'postgres-ql://" in bad_url.stderr, bad_url.stderr
    assert 'not retried: the metadata store cannot be used for Source as it is given; exit status 3.' in bad_url.stderr

    usage = sluice('run-node', '--help', cwd=tmp_path).stdout
    assert 'exit status:' in usage and '3  the node failed with an error a retry cannot fix' in usage
    assert '1  the node failed, and a retry may succeed' in usage and '2  usage: ' in usage


def test_airflow_fails_an_error_a_retry_cannot_fix_at_once_and_retries_a_transient_one(tmp_path, text_dir,
                                                                                       airflow_env):
    """Every node has Retry(attempts=3), so 2 Airflow retries with no delay (`airflow dags test` runs a
    task again in the same process once its retry_delay has passed). Apply (a module file without
    transform()) is FAILED after its first try, Flaky (a ConnectionError, then success) is retried and
    succeeds; Airflow's database and ML-Metadata agree."""
    pipeline_file, url = exits_file(tmp_path, text_dir)
    env, dags = airflow_home(tmp_path, airflow_env)
    done = sluice('export', 'airflow', pipeline_file, '-o', str(dags / 'exits_dag.py'), '--metadata', url,
                  cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr

    run = subprocess.run([os.path.join(airflow_env, 'airflow'), 'dags', 'test', 'exits'], env=env, cwd=dags.parent,
                         capture_output=True, text=True, timeout=600)
    log = run.stdout + run.stderr
    assert run.returncode != 0 and 'DagRun failed' in log and 'state=failed' in log, log[-6000:]

    # Airflow's own records: state and tries of each task instance.
    with sqlite3.connect(dags.parent / 'airflow.db') as db:
        [(airflow_run_id,)] = db.execute("SELECT run_id FROM dag_run WHERE dag_id = 'exits'").fetchall()
        tries = {task: (state, try_number, max_tries) for task, state, try_number, max_tries in db.execute(
            "SELECT task_id, state, try_number, max_tries FROM task_instance WHERE dag_id = 'exits'")}
    assert tries == {'Source': ('success', 1, 2), 'Apply': ('failed', 1, 2), 'Flaky': ('success', 2, 2)}, tries
    # The task log holds run-node's output, then why Airflow did not retry.
    assert 'not retried: Apply failed with an error a retry cannot fix' in log
    assert 'AirflowFailException: sluice run-node exited with status 3: Apply failed with an error a retry ' \
           'cannot fix' in log
    assert 'Immediate failure requested. Marking task as FAILED. dag_id=exits, task_id=Apply' in log
    assert 'ConnectionError: worker blipped (call 1)' in log and 'Marking task as UP_FOR_RETRY. dag_id=exits, ' \
           'task_id=Flaky' in log

    # ML-Metadata: one Sluice run, Apply tried once, Flaky twice.
    store = MetadataStore(url, create=False)
    [record] = store.runs('exits')
    assert record.run_id == re.sub(r'[^A-Za-z0-9_.-]', '-', f'exits-{airflow_run_id}') and record.state == 'FAILED'
    assert states(store, record.run_id, 'Apply') == ['FAILED']
    assert states(store, record.run_id, 'Flaky') == ['FAILED', 'COMPLETE']
    assert states(store, record.run_id, 'Source') == ['COMPLETE']


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
    assert 'secret' not in out.read_text()  # the tasks take the password from their environment
    assert 'SLUICE_METADATA_PASSWORD' in done.stdout

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
                                        '--metadata', 'postgresql://sluice@db.internal:5432/mlmd', '--no-retry']
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
        from sluice import Pipeline

        def create_pipeline():
            return Pipeline('clash', {str(tmp_path / 'r')!r}, [Source(input_base='.').with_id('load_a'),
                                                                Source(input_base='.').with_id('load-a')])
        '''))
    with pytest.raises(ExportError, match=r"Node ids 'load_a', 'load-a' all become the Kubeflow task name 'load-a'"):
        kfp_pipeline_spec(str(clash), 'img:1', metadata='postgresql://h/db')
