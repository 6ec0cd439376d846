"""What the Airflow and Kubeflow Pipelines exports share: the pipeline file loaded as ``sluice run``
loads it, its nodes as orchestrator tasks, the error an export raises, and how the file is written.

Every exported task runs ``sluice run-node FILE --run-id RUN_ID --node NODE --metadata URL --no-retry``:
the same driver, executor and publisher as ``sluice run``, one node per process. All tasks of one
orchestrator run derive the same Sluice run id (Airflow: from the DAG run's ``run_id``; KFP: the
pipeline job's UUID), so they drive one Sluice run, which the first task creates. Dependencies are the
pipeline's DAG (the producers of each node's inputs and its ``add_upstream_node`` nodes). Each node's
retry policy (``with_retry`` or the pipeline's ``retry``) becomes the orchestrator's retries, each try
one attempt of run-node (``--no-retry``), and its timeout (``with_timeout``) Airflow's
``execution_timeout`` (plus a margin: run-node enforces the timeout itself). The exported file does
not import Sluice: the orchestrator's own environment needs none of Sluice's packages.

No exported file holds a password: the store URL is written without one (``task_store_url``), and
each task finds it in its environment, as any Sluice command does: ``$SLUICE_METADATA_PASSWORD``,
else (PostgreSQL) ``$PGPASSWORD`` or the password file ``~/.pgpass`` (``$PGPASSFILE``) on the workers.

What a task makes of run-node's exit status (``sluice run-node --help``, ``sluice.runners.run_node``):

- 0: the node is COMPLETE or CACHED in the run (or was done there already): the task succeeds.
- 1: the node failed and a retry may succeed (a transient error, its timeout, the run taken over), or
  the metadata store could not be used (down, unreachable, locked, the node held by another live
  process).
- 2: usage: bad arguments, a pipeline file that does not load, an unknown node, or upstream nodes not
  completed in the run yet.
- 3: the node failed with an error a retry cannot fix (bad input, anomalies, a module file that does not
  import, a wiring error, stale code, a refused push: errors whose class has ``retryable = False``), or
  a metadata URL that is malformed or names a store of another schema version; the output says
  ``not retried: ...``. What each orchestrator can make of it: ``sluice.integrations.airflow`` and
  ``sluice.integrations.kfp``.

Nothing here imports TensorFlow (the pipeline file is loaded the way ``sluice run`` loads it).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from sluice.dsl.pipeline import Pipeline, load_pipeline
from sluice.metadata.credentials import without_password

PASSWORD_NOTE = ('no password: each task takes it from $SLUICE_METADATA_PASSWORD, else (PostgreSQL) '
                 '$PGPASSWORD or ~/.pgpass, on the machine it runs on')


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


def task_store_url(url: str) -> str:
    """The store URL an exported task is given: ``url`` without its password (Airflow logs the task's
    command and keeps the DAG file; a KFP spec is uploaded and shown)."""
    return without_password(url) or url


def load(pipeline_file: str) -> tuple[str, Pipeline]:
    """The pipeline file's absolute path and its pipeline; a missing file is an :class:`ExportError`."""
    path = os.path.abspath(pipeline_file)
    if not os.path.isfile(path):
        raise ExportError(f'Pipeline file {path} does not exist; give the path of a pipeline file '
                          '(one that defines create_pipeline() or a module-level `pipeline`).')
    return path, load_pipeline(path)


def write(output: str, text: str) -> str:
    """Write ``text`` to ``output`` whole or not at all (staged, then renamed); returns the absolute path."""
    output = os.path.abspath(output)
    directory = os.path.dirname(output)
    if not os.path.isdir(directory):
        raise ExportError(f'Output directory {directory} does not exist; create it or write elsewhere (-o PATH).')
    staged = f'{output}.sluice-tmp'
    with open(staged, 'w') as f:
        f.write(text)
    os.replace(staged, output)
    return output
