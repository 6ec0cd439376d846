"""Sluice under Airflow: a DAG file with one task per node, each running ``sluice run-node`` (how
tasks, run ids, retries and exit statuses map: ``sluice.integrations.tasks``).

    sluice export airflow FILE.py -o DAG.py [--metadata URL] [--dag-id ID]

The DAG's tasks are a small BashOperator subclass (``SluiceNodeOperator``, defined in the DAG file)
that fails the task at once on run-node's exit status 3 (``AirflowFailException``: no retry, whatever
``retries`` says), and treats every other non-zero status as a normal failure, retried as the node's
policy says. Its log is run-node's output, as for any BashOperator. It imports from Airflow 3's
standard provider and Task SDK when present, else from Airflow 2's modules. The DAG's store URL has
no password: the workers running the tasks need ``$SLUICE_METADATA_PASSWORD`` (or ``~/.pgpass``).
"""
from __future__ import annotations

import datetime
import os
import re
import shutil
import sys
from typing import Any

from sluice.integrations.tasks import PASSWORD_NOTE, ExportError, NodeTask, load, node_tasks, task_store_url, write
from sluice.runners.run_node import RUN_NODE_NOT_RETRYABLE

# Seconds Airflow's execution_timeout adds to a node's own timeout: run-node starts a process and imports
# the component's libraries before the node's clock starts, and records the timeout after it.
AIRFLOW_TIMEOUT_MARGIN = 120.0
_AIRFLOW_ID_RE = re.compile(r'^[A-Za-z0-9_.-]{1,250}$')

# The DAG file's imports and helpers (the same in every export), one line each.
_DAG_IMPORTS = (
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
)
_DAG_HELPERS = (
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
    "               + shlex.join(['--node', node_id, '--metadata', METADATA, '--no-retry'])",
    "               + \" --attempt '{{ ti.try_number }}'\")  # a retry takes over at once from a killed try",
    '    return SluiceNodeOperator(task_id=node_id, bash_command=command, cwd=WORKDIR, **policy)',
    '',
    '',
)


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


def _no_template(value: str, what: str) -> str:
    if '{{' in value or '{%' in value or '{#' in value:
        raise ExportError(f'{what} {value!r} contains a Jinja marker ({{{{, {{% or {{#), which Airflow would '
                          'expand in the task command; use a path or URL without one.')
    return value


def airflow_dag_source(pipeline_file: str, metadata: str | None = None, dag_id: str | None = None,
                       sluice: str | None = None, workdir: str | None = None) -> str:
    """The text of an Airflow DAG file running the pipeline in ``pipeline_file`` node by node.

    ``metadata``: the store URL the tasks use (default: the pipeline's own). ``sluice``: the ``sluice``
    command the tasks run (default: this installation's, by absolute path). ``workdir``: the directory
    the tasks run in, against which relative paths in the pipeline file resolve (default: the current
    directory, as for ``sluice run`` from here).
    """
    path, pipeline = load(pipeline_file)
    dag_id = dag_id or pipeline.name
    if not _AIRFLOW_ID_RE.match(dag_id):
        raise ExportError(f'DAG id {dag_id!r}: Airflow takes letters, digits, _, . and - (at most 250); '
                          'pass another with --dag-id.')
    url = _no_template(task_store_url(metadata or pipeline.metadata), 'The metadata URL')
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
        *_DAG_IMPORTS,
        f'DAG_ID = {dag_id!r}',
        f'SLUICE = {command!r}',
        f'PIPELINE_FILE = {path!r}',
        f'METADATA = {url!r}' + ('' if url.startswith('sqlite:') or '://' not in url else f'  # {PASSWORD_NOTE}'),
        f'WORKDIR = {workdir!r}  # relative paths in the pipeline file resolve here, as for `sluice run` from it',
        f'NOT_RETRYABLE = {RUN_NODE_NOT_RETRYABLE!r}  # run-node\'s exit status for an error a retry cannot fix',
        *_DAG_HELPERS,
        'with DAG(dag_id=DAG_ID, schedule=None, start_date=datetime.datetime(2024, 1, 1), catchup=False,',
        "         user_defined_filters={'sluice_run_id': sluice_run_id}, tags=['sluice'],",
        f'         description={("Sluice pipeline " + pipeline.name)!r}) as dag:',
        '    tasks = {}',
        *_task_lines(tasks),
    ]
    return '\n'.join(lines) + '\n'


def _task_lines(tasks: list[NodeTask]) -> list[str]:
    """The DAG body: one task per node with its retries and timeout, then the dependencies."""
    lines: list[str] = []
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
    return lines


def write_airflow_dag(pipeline_file: str, output: str, **options: Any) -> str:
    """Write :func:`airflow_dag_source` to ``output`` (a ``.py`` file for Airflow's DAG folder)."""
    if not output.endswith('.py'):
        raise ExportError(f'Output {output!r}: Airflow loads DAGs from .py files; name it e.g. {output}.py.')
    return write(output, airflow_dag_source(pipeline_file, **options))
