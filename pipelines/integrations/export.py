"""Run a pipeline on an orchestrator you already operate: an Airflow DAG file or a Kubeflow Pipelines v2
pipeline spec, with one task per node.

    sluice export airflow FILE.py -o DAG.py [--metadata URL] [--dag-id ID]
    sluice export kfp FILE.py --image IMAGE -o pipeline.yaml [--metadata URL] [--file-in-image PATH]

Every task runs ``sluice run-node FILE --run-id RUN_ID --node NODE --metadata URL --no-retry``: the
same driver, executor and publisher as ``sluice run``, one node per process. All tasks of one
orchestrator run derive the same Sluice run id (Airflow: from the DAG run's ``run_id``; KFP: the
pipeline job's UUID), so they drive one Sluice run, which the first task creates. Dependencies are the
pipeline's DAG (the producers of each node's inputs and its ``add_upstream_node`` nodes). Each node's
retry policy (``with_retry`` or the pipeline's ``retry``) becomes the orchestrator's retries, each try
one attempt of run-node (``--no-retry``), and its timeout (``with_timeout``) Airflow's
``execution_timeout`` (plus a margin: run-node enforces the timeout itself). The exported file does
not import Sluice: the orchestrator's own environment needs none of Sluice's packages.

What a task makes of run-node's exit status (``sluice run-node --help``):

- 0: the node is COMPLETE or CACHED in the run (or was done there already): the task succeeds.
- 1: the node failed and a retry may succeed (a transient error, its timeout, the run taken over), or
  the metadata store could not be used (down, unreachable, locked, the node held by another live
  process).
- 2: usage: bad arguments, a pipeline file that does not load, an unknown node, or upstream nodes not
  completed in the run yet.
- 3: the node failed with an error a retry cannot fix (bad input, anomalies, a module file that does not
  import, a wiring error, stale code, a refused push: errors whose class has ``retryable = False``), or
  a metadata URL that is malformed or names a store of another schema version; the output says
  ``not retried: ...``.

Airflow: the DAG's tasks are a small BashOperator subclass (``SluiceNodeOperator``, defined in the DAG
file) that fails the task at once on status 3 (``AirflowFailException``: no retry, whatever ``retries``
says), and treats every other non-zero status as a normal failure, retried as the node's policy says.
Its log is run-node's output, as for any BashOperator. It imports from Airflow 3's standard provider and
Task SDK when present, else from Airflow 2's modules.

Kubeflow Pipelines v2 (a limit): a task cannot refuse its own retry (the retry policy is per task,
whatever the exit status), so a node failing with status 3 is retried as its policy says, failing the
same way each time (each try a FAILED execution in the run): its retries and waits are spent for nothing.

Nothing here imports TensorFlow (the pipeline file is loaded the way ``sluice run`` loads it).
"""
from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from typing import Any

from sluice.ui.cli import RUN_NODE_NOT_RETRYABLE
from sluice.dsl.pipeline import Pipeline, load_pipeline

# Seconds Airflow's execution_timeout adds to a node's own timeout: run-node starts a process and imports
# the component's libraries before the node's clock starts, and records the timeout after it.
AIRFLOW_TIMEOUT_MARGIN = 120.0
KFP_RUN_ID_PLACEHOLDER = '{{$.pipeline_job_uuid}}'
_AIRFLOW_ID_RE = re.compile(r'^[A-Za-z0-9_.-]{1,250}$')


class ExportError(ValueError):
    """The pipeline cannot be exported as asked; the message says what to change."""
    retryable = False


@dataclass(frozen=True)
class NodeTask:
    """One node as an orchestrator task: what it waits for and how it is retried and timed out."""
    node_id: str
    component_type: str
    upstream: tuple[str, ...]
    attempts: int = 1
    delay: float = 0.0
    backoff: float = 1.0
    max_delay: float = 0.0
    timeout_seconds: float | None = None


def node_tasks(pipeline: Pipeline) -> list[NodeTask]:
    """The pipeline's nodes in topological order, each with its upstream node ids and policies."""
    tasks = []
    for component in pipeline.components:
        policy = pipeline.retry_for(component)
        upstream = tuple(dict.fromkeys(u.id for u in component.upstream))
        if policy is None:
            tasks.append(NodeTask(component.id, component.component_type, upstream,
                                  timeout_seconds=component.timeout_seconds))
        else:
            tasks.append(NodeTask(component.id, component.component_type, upstream, policy.attempts,
                                  float(policy.delay), float(policy.backoff), float(policy.max_delay),
                                  component.timeout_seconds))
    return tasks


def sluice_executable() -> str:
    """The absolute path of the ``sluice`` command running now, else of this installation's (beside
    this Python), else the one on PATH."""
    if os.path.basename(sys.argv[0] or '') == 'sluice' and os.path.isfile(sys.argv[0]):
        return os.path.abspath(sys.argv[0])
    beside = os.path.join(os.path.dirname(sys.executable), 'sluice')
    if os.path.isfile(beside) and os.access(beside, os.X_OK):
        return os.path.abspath(beside)
    found = shutil.which('sluice')
    if found:
        return os.path.abspath(found)
    raise ExportError(f'Cannot find the `sluice` command of this installation (looked beside {sys.executable} '
                      'and on PATH); install Sluice (`pip install -e .`) into this environment, or pass sluice=PATH.')


def _load(pipeline_file: str) -> tuple[str, Pipeline]:
    path = os.path.abspath(pipeline_file)
    if not os.path.isfile(path):
        raise ExportError(f'Pipeline file {path} does not exist; give the path of a pipeline file '
                          '(one that defines create_pipeline() or a module-level `pipeline`).')
    return path, load_pipeline(path)


def _no_template(value: str, what: str) -> str:
    if '{{' in value or '{%' in value or '{#' in value:
        raise ExportError(f'{what} {value!r} contains a Jinja marker ({{{{, {{% or {{#), which Airflow would '
                          'expand in the task command; use a path or URL without one.')
    return value


# -- Airflow ------------------------------------------------------------------------------------
def airflow_dag_source(pipeline_file: str, metadata: str | None = None, dag_id: str | None = None,
                       sluice: str | None = None, workdir: str | None = None) -> str:
    """The text of an Airflow DAG file running the pipeline in ``pipeline_file`` node by node.

    ``metadata``: the store URL the tasks use (default: the pipeline's own). ``sluice``: the ``sluice``
    command the tasks run (default: this installation's, by absolute path). ``workdir``: the directory
    the tasks run in, against which relative paths in the pipeline file resolve (default: the current
    directory, as for ``sluice run`` from here).
    """
    path, pipeline = _load(pipeline_file)
    dag_id = dag_id or pipeline.name
    if not _AIRFLOW_ID_RE.match(dag_id):
        raise ExportError(f'DAG id {dag_id!r}: Airflow takes letters, digits, _, . and - (at most 250); '
                          'pass another with --dag-id.')
    url = _no_template(metadata or pipeline.metadata, 'The metadata URL')
    command = _no_template(sluice or sluice_executable(), 'The sluice command')
    workdir = _no_template(os.path.abspath(workdir or os.getcwd()), 'The working directory')
    _no_template(path, 'The pipeline file')
    tasks = node_tasks(pipeline)
    for t in tasks:
        if not _AIRFLOW_ID_RE.match(t.node_id):
            raise ExportError(f"Node id {t.node_id!r} is not a valid Airflow task id (letters, digits, _, . and -); "
                              "give the component another id with .with_id('...').")
    written = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')
    lines = [
        f'"""Airflow DAG {dag_id!r}: the Sluice pipeline {pipeline.name!r}, one task per node.',
        '',
        f'Written by `sluice export airflow` on {written} from',
        f'    {path}',
        'Each task runs `sluice run-node` for its node; all tasks of one DAG run drive the same Sluice run,',
        "whose id is the DAG id and Airflow's run id (see sluice_run_id). The pipeline's nodes, wiring,",
        'retry policies and timeouts are copied here: export again after changing them. This file does',
        "not import Sluice; the tasks run Sluice's own installation, by absolute path.",
        '"""',
        'import datetime',
        'import re',
        'import shlex',
        '',
        'from airflow import DAG',
        '',
        'try:  # Airflow 3 (and 2.x with the standard provider)',
        '    from airflow.providers.standard.operators.bash import BashOperator',
        'except ImportError:  # Airflow 2',
        '    from airflow.operators.bash import BashOperator',
        'try:  # Airflow 3.2+: the Task SDK defines them (airflow.exceptions re-exports them, deprecated)',
        '    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException',
        'except ImportError:  # Airflow 2, 3.0 and 3.1',
        '    from airflow.exceptions import AirflowFailException, AirflowSkipException',
        '',
        f'DAG_ID = {dag_id!r}',
        f'SLUICE = {command!r}',
        f'PIPELINE_FILE = {path!r}',
        f'METADATA = {url!r}',
        f'WORKDIR = {workdir!r}  # relative paths in the pipeline file resolve here, as for `sluice run` from it',
        f'NOT_RETRYABLE = {RUN_NODE_NOT_RETRYABLE!r}  # run-node\'s exit status for an error a retry cannot fix',
        '',
        '',
        'def sluice_run_id(airflow_run_id):',
        '    """The Sluice run of a DAG run: the DAG id and Airflow\'s run id, with every character other than',
        '    a letter, digit, _, . or - replaced by -."""',
        "    return re.sub(r'[^A-Za-z0-9_.-]', '-', f'{DAG_ID}-{airflow_run_id}')",
        '',
        '',
        'class SluiceNodeOperator(BashOperator):',
        '    """Runs `sluice run-node` as BashOperator does (its output is the task\'s log). Exit status 0: the',
        '    node is COMPLETE (or a cache hit) in the Sluice run; NOT_RETRYABLE (3): it failed with an error a',
        '    retry cannot fix (bad input, anomalies, bad code), so the task fails at once, its retries unused;',
        '    any other status: a failure that a retry may fix, retried as the task\'s `retries` say."""',
        '',
        '    def __init__(self, **kwargs):',
        '        super().__init__(skip_on_exit_code=[NOT_RETRYABLE], **kwargs)',
        '',
        '    def execute(self, context):',
        '        try:',
        '            return super().execute(context)',
        '        except AirflowSkipException:  # how BashOperator reports a status listed in skip_on_exit_code',
        '            raise AirflowFailException(',
        "                f'sluice run-node exited with status {NOT_RETRYABLE}: {self.task_id} failed with an error a '",
        "                'retry cannot fix (see \"not retried:\" in the output above); failed without retrying. Fix '",
        "                'the cause, then clear the task to run it again.') from None",
        '',
        '',
        'def run_node(node_id, **policy):',
        '    """A task running one node through `sluice run-node`. --no-retry: Airflow retries the task (unless',
        '    run-node says a retry cannot help), each try one attempt (its own execution in the Sluice run)."""',
        "    command = (shlex.join([SLUICE, 'run-node', PIPELINE_FILE]) + \" --run-id '{{ run_id | sluice_run_id }}' \"",
        "               + shlex.join(['--node', node_id, '--metadata', METADATA, '--no-retry']))",
        '    return SluiceNodeOperator(task_id=node_id, bash_command=command, cwd=WORKDIR, **policy)',
        '',
        '',
        'with DAG(dag_id=DAG_ID, schedule=None, start_date=datetime.datetime(2024, 1, 1), catchup=False,',
        "         user_defined_filters={'sluice_run_id': sluice_run_id}, tags=['sluice'],",
        f'         description={("Sluice pipeline " + pipeline.name)!r}) as dag:',
        '    tasks = {}',
    ]
    for t in tasks:
        policy = [f'retries={t.attempts - 1}']
        if t.attempts > 1:
            policy.append(f'retry_delay=datetime.timedelta(seconds={t.delay!r})')
            if t.backoff > 1:
                policy.append('retry_exponential_backoff=True')
                policy.append(f'max_retry_delay=datetime.timedelta(seconds={t.max_delay!r})')
        if t.timeout_seconds is not None:
            policy.append(f'execution_timeout=datetime.timedelta(seconds={t.timeout_seconds + AIRFLOW_TIMEOUT_MARGIN!r})')
        notes = [t.component_type] if t.component_type != t.node_id else []
        if t.attempts > 1:
            notes.append(f'Retry(attempts={t.attempts}, delay={t.delay:g}, backoff={t.backoff:g}, max_delay={t.max_delay:g})')
        if t.timeout_seconds is not None:
            notes.append(f'timeout {t.timeout_seconds:g}s (+{AIRFLOW_TIMEOUT_MARGIN:g}s to start and record it)')
        note = f'  # {"; ".join(notes)}' if notes else ''
        lines.append(f'    tasks[{t.node_id!r}] = run_node({t.node_id!r}, {", ".join(policy)}){note}')
    for t in tasks:
        for up in t.upstream:
            lines.append(f'    tasks[{up!r}] >> tasks[{t.node_id!r}]')
    return '\n'.join(lines) + '\n'


def write_airflow_dag(pipeline_file: str, output: str, **options: Any) -> str:
    """Write :func:`airflow_dag_source` to ``output`` (a ``.py`` file for Airflow's DAG folder)."""
    if not output.endswith('.py'):
        raise ExportError(f'Output {output!r}: Airflow loads DAGs from .py files; name it e.g. {output}.py.')
    return _write(output, airflow_dag_source(pipeline_file, **options))


# -- Kubeflow Pipelines v2 ----------------------------------------------------------------------
def kfp_name(value: str) -> str:
    """A name as Kubeflow Pipelines spells task and component names: lower case, digits and -."""
    return re.sub(r'-+', '-', re.sub(r'[^a-z0-9-]', '-', value.lower())).strip('-')


def _duration(seconds: float) -> str:
    return f'{seconds:g}s'


def kfp_pipeline_spec(pipeline_file: str, image: str, metadata: str | None = None,
                      file_in_image: str | None = None, sluice: str = 'sluice') -> dict[str, Any]:
    """A Kubeflow Pipelines v2 pipeline spec (the IR that ``kfp.compiler`` writes) running the pipeline
    node by node, each task in ``image`` with ``sluice run-node``.

    ``file_in_image``: the pipeline file's path inside the image (default: its absolute path here).
    ``metadata``: the store URL the tasks use (default: the pipeline's own when it is PostgreSQL or MySQL);
    pods on several machines need one they all reach, and the pipeline root on a shared filesystem
    mounted at the same path. KFP's retry policy is exact, and applies after every failure, also after
    run-node's exit status 3 (an error a retry cannot fix: KFP v2 has no way for a task to refuse its
    retry, unlike the Airflow export). KFP v2 has no task timeout, so a node's
    timeout is the one run-node enforces. Relative paths in the pipeline file resolve against the
    image's working directory.
    """
    if not image or not isinstance(image, str) or any(c.isspace() for c in image):
        raise ExportError(f'Image {image!r}: give the container image the tasks run in, e.g. '
                          '--image registry.example.com/sluice:1.0 (an image with Sluice and the pipeline file).')
    path, pipeline = _load(pipeline_file)
    if metadata is None and not pipeline.metadata.startswith(('postgresql://', 'mysql://')):
        raise ExportError(f'KFP tasks run in pods (usually on several machines), which need a store they all reach; '
                          f"the pipeline's own is {pipeline.metadata}. Pass --metadata postgresql://USER:PASSWORD@"
                          'HOST:5432/DB (or mysql://...); pass a sqlite:/// URL with --metadata only if every pod '
                          'mounts that file from one local disk.')
    url = metadata or pipeline.metadata
    in_image = file_in_image or path
    tasks = node_tasks(pipeline)
    names: dict[str, str] = {}
    for t in tasks:
        name = kfp_name(t.node_id)
        clash = [n for n, k in names.items() if k == name]
        if not name or clash:
            raise ExportError(f"Node ids {', '.join(repr(c) for c in clash + [t.node_id])} all become the Kubeflow "
                              f"task name {name!r} (lower case, digits and -); give one of them another id with "
                              ".with_id('...').")
        names[t.node_id] = name
    pipeline_name = kfp_name(pipeline.name)
    if not pipeline_name:
        raise ExportError(f'Pipeline name {pipeline.name!r} has no letter or digit for a Kubeflow pipeline name.')
    components: dict[str, Any] = {}
    executors: dict[str, Any] = {}
    dag_tasks: dict[str, Any] = {}
    for t in tasks:
        name = names[t.node_id]
        components[f'comp-{name}'] = {
            'executorLabel': f'exec-{name}',
            'inputDefinitions': {'parameters': {'run_id': {'parameterType': 'STRING'}}},
        }
        executors[f'exec-{name}'] = {'container': {
            'image': image,
            'command': [sluice, 'run-node', in_image, '--run-id', "{{$.inputs.parameters['run_id']}}",
                        '--node', t.node_id, '--metadata', url, '--no-retry'],
        }}
        task: dict[str, Any] = {
            'componentRef': {'name': f'comp-{name}'},
            'taskInfo': {'name': t.node_id},
            # Sluice caches nodes itself (and knows when a cached result is stale): KFP's cache stays off.
            'cachingOptions': {'enableCache': False},
            'inputs': {'parameters': {'run_id': {'runtimeValue': {'constant': KFP_RUN_ID_PLACEHOLDER}}}},
        }
        if t.upstream:
            task['dependentTasks'] = [names[u] for u in t.upstream]
        if t.attempts > 1:
            task['retryPolicy'] = {'maxRetryCount': t.attempts - 1, 'backoffDuration': _duration(t.delay),
                                   'backoffFactor': t.backoff, 'backoffMaxDuration': _duration(t.max_delay)}
        dag_tasks[name] = task
    return {
        'pipelineInfo': {'name': pipeline_name, 'displayName': pipeline.name,
                         'description': f'Sluice pipeline {pipeline.name!r} from {path}, one task per node '
                                        '(sluice run-node); written by sluice export kfp.'},
        'components': components,
        'deploymentSpec': {'executors': executors},
        'root': {'dag': {'tasks': dag_tasks}},
        'schemaVersion': '2.1.0',
        'sdkVersion': f'sluice-{_version()}',
    }


def kfp_pipeline_text(spec: dict[str, Any]) -> str:
    header = f"# PIPELINE DEFINITION\n# Name: {spec['pipelineInfo']['name']}\n# Written by sluice export kfp.\n"
    try:
        import yaml
    except ImportError:  # JSON is YAML too
        return header + json.dumps(spec, indent=2, sort_keys=True) + '\n'
    return header + yaml.safe_dump(spec, sort_keys=True, default_flow_style=False, width=1000)


def write_kfp_pipeline(pipeline_file: str, output: str, image: str, **options: Any) -> str:
    """Write :func:`kfp_pipeline_spec` as YAML to ``output`` (what ``kfp`` clients upload)."""
    return _write(output, kfp_pipeline_text(kfp_pipeline_spec(pipeline_file, image, **options)))


# -- helpers ------------------------------------------------------------------------------------
def _version() -> str:
    try:
        from importlib.metadata import version
        return version('sluice-ml')
    except Exception:  # not installed as a distribution (running from a checkout)
        return 'dev'


def _write(output: str, text: str) -> str:
    output = os.path.abspath(output)
    directory = os.path.dirname(output)
    if not os.path.isdir(directory):
        raise ExportError(f'Output directory {directory} does not exist; create it or write elsewhere (-o PATH).')
    staged = f'{output}.sluice-tmp'
    with open(staged, 'w') as f:
        f.write(text)
    os.replace(staged, output)
    return output
