"""Sluice under Kubeflow Pipelines v2: a pipeline spec (the IR that ``kfp.compiler`` writes) with one
task per node, each a container running ``sluice run-node`` (how tasks, run ids, retries and exit
statuses map: ``sluice.integrations.tasks``).

    sluice export kfp FILE.py --image IMAGE -o pipeline.yaml [--metadata URL] [--file-in-image PATH]

A limit of KFP v2: a task cannot refuse its own retry (the retry policy is per task, whatever the exit
status), so a node failing with status 3 is retried as its policy says, failing the same way each time
(each try a FAILED execution in the run): its retries and waits are spent for nothing.

The spec's store URL has no password: give the pods ``$SLUICE_METADATA_PASSWORD`` (from a Kubernetes
secret, say) or a ``~/.pgpass``.
"""
from __future__ import annotations

import json
import re
from typing import Any

from sluice.integrations.tasks import PASSWORD_NOTE, ExportError, load, node_tasks, task_store_url, write
from sluice.metadata.credentials import redact_url

KFP_RUN_ID_PLACEHOLDER = '{{$.pipeline_job_uuid}}'


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
    path, pipeline = load(pipeline_file)
    if metadata is None and not pipeline.metadata.startswith(('postgresql://', 'mysql://')):
        raise ExportError(f'KFP tasks run in pods (usually on several machines), which need a store they all reach; '
                          f"the pipeline's own is {redact_url(pipeline.metadata)}. Pass --metadata postgresql://USER@"
                          'HOST:5432/DB (or mysql://...; the pods take the password from $SLUICE_METADATA_PASSWORD '
                          'or ~/.pgpass); pass a sqlite:/// URL with --metadata only if every pod '
                          'mounts that file from one local disk.')
    url = task_store_url(metadata or pipeline.metadata)
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
    header = (f"# PIPELINE DEFINITION\n# Name: {spec['pipelineInfo']['name']}\n# Written by sluice export kfp.\n"
              f"# The tasks' store URL has {PASSWORD_NOTE}.\n")
    try:
        import yaml
    except ImportError:  # JSON is YAML too
        return header + json.dumps(spec, indent=2, sort_keys=True) + '\n'
    return header + yaml.safe_dump(spec, sort_keys=True, default_flow_style=False, width=1000)


def write_kfp_pipeline(pipeline_file: str, output: str, image: str, **options: Any) -> str:
    """Write :func:`kfp_pipeline_spec` as YAML to ``output`` (what ``kfp`` clients upload)."""
    return write(output, kfp_pipeline_text(kfp_pipeline_spec(pipeline_file, image, **options)))


def _version() -> str:
    try:
        from importlib.metadata import version
        return version('sluice-ml')
    except Exception:  # not installed as a distribution (running from a checkout)
        return 'dev'
