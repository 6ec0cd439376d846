"""``sluice run-node``: one node of a run, in this process, for an orchestrator that runs each node as a
task of its own (Airflow, Kubeflow Pipelines, or several machines sharing a store). The node goes
through the same driver, executor and publisher as ``sluice run`` (``LocalDagRunner.run_node``); what
this module adds is the exit status, which tells the orchestrator whether a retry can help:

- 0: the node is COMPLETE or CACHED in the run (or was done there already);
- 1: the node failed and a retry may succeed, or the metadata store could not be used (down,
  unreachable, locked, this node held by another live process);
- 2: usage (raised as errors for the command line to report: a pipeline file that does not load, an
  unknown node, upstream nodes not completed in the run yet);
- 3 (:data:`RUN_NODE_NOT_RETRYABLE`): the node failed with an error a retry cannot fix, or the metadata
  URL is malformed or names a store of another schema version. The exports
  (``sluice.integrations.airflow``) fail a task without retrying on this status.
"""
from __future__ import annotations

import sys

from sluice.dsl.pipeline import load_pipeline
from sluice.metadata.records import MetadataStoreError

RUN_NODE_NOT_RETRYABLE = 3  # `sluice run-node`: the node failed with an error a retry cannot fix


def run_node(pipeline_file: str, run_id: str, node_id: str, metadata: str | None = None,
             retries: bool = True, attempt: int | None = None) -> int:
    """Run ``node_id`` of the pipeline in ``pipeline_file`` within run ``run_id``, say what went wrong,
    and return the exit status (above). ``retries=False``: one attempt only, whatever the node's retry
    policy (the caller retries); ``attempt``: the caller's try number (Airflow's ``ti.try_number``)."""
    pipeline = load_pipeline(pipeline_file)
    if metadata:
        pipeline.metadata = metadata
    from sluice.runners.local import LocalDagRunner
    try:
        node = LocalDagRunner().run_node(pipeline, run_id, node_id, retries=retries, attempt=attempt)
    except MetadataStoreError as e:  # down, unreachable, locked, this node held by another live process
        if not e.retryable:  # a malformed URL, a store of another schema version
            print(f'sluice: error: {e}\nnot retried: the metadata store cannot be used for {node_id} as it is '
                  f'given; exit status {RUN_NODE_NOT_RETRYABLE}.', file=sys.stderr)
            return RUN_NODE_NOT_RETRYABLE
        print(f'sluice: error: {e}\nsluice run-node: exit status 1: the metadata store could not be used for '
              f'{node_id}; a retry may succeed if it was down, unreachable or busy.', file=sys.stderr)
        return 1
    if node.state == 'FAILED':
        print(f'\n{node.node_id} failed (execution {node.execution_id}):\n  {node.error}')
        if not node.retryable:
            print(f'not retried: {node.node_id} failed with an error a retry cannot fix (with the same input and '
                  f'code it fails the same way); fix the cause, then run it again. Exit status '
                  f'{RUN_NODE_NOT_RETRYABLE}.')
            return RUN_NODE_NOT_RETRYABLE
    return 0 if node.ok else 1
