"""Where a run's figures go when it ends: a textfile for the node exporter's textfile collector
(``--metrics-file`` / ``$SLUICE_METRICS_FILE``) and a Prometheus Pushgateway (``--pushgateway URL`` /
``$SLUICE_PUSHGATEWAY``: push-add, grouped by ``job="sluice"`` and the pipeline). Neither can fail
the run: a problem is said in one line and the run's outcome stands."""
from __future__ import annotations

import os

from sluice.metadata.store import MetadataStore

METRICS_FILE_ENV = 'SLUICE_METRICS_FILE'
PUSHGATEWAY_ENV = 'SLUICE_PUSHGATEWAY'
JOB = 'sluice'


def export_run(store: MetadataStore, run_id: str, metrics_file: str | None = None,
               pushgateway: str | None = None) -> list[str]:
    """Writes and pushes the run's figures where configured; returns what went wrong, in words."""
    metrics_file = metrics_file or os.environ.get(METRICS_FILE_ENV) or None
    pushgateway = pushgateway or os.environ.get(PUSHGATEWAY_ENV) or None
    if not (metrics_file or pushgateway):
        return []
    from sluice.observe.run_metrics import run_registry  # prometheus_client: only when the figures go somewhere
    try:
        registry, _ = run_registry(store, run_id)
        pipeline = store.run(run_id).pipeline_name
    except Exception as e:  # noqa: BLE001 - figures are no reason to fail a finished run
        return [f'the metrics of run {run_id} could not be read from the store: {type(e).__name__}: {e}']
    return publish(registry, pipeline, metrics_file, pushgateway)


def publish(registry, pipeline: str, metrics_file: str | None = None, pushgateway: str | None = None) -> list[str]:
    """Writes ``registry`` to the textfile and pushes it to the Pushgateway given (else the ones the
    environment names); returns what went wrong, in words."""
    metrics_file = metrics_file or os.environ.get(METRICS_FILE_ENV) or None
    pushgateway = pushgateway or os.environ.get(PUSHGATEWAY_ENV) or None
    problems = []
    if metrics_file:
        from prometheus_client import write_to_textfile
        path = metrics_file.replace('{pipeline}', pipeline)
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            write_to_textfile(path, registry)  # a temporary file renamed into place
        except OSError as e:
            problems.append(f'the metrics file {path} could not be written: {e}')
    if pushgateway:
        from prometheus_client import pushadd_to_gateway
        try:
            pushadd_to_gateway(pushgateway, job=JOB, grouping_key={'pipeline': pipeline}, registry=registry,
                               timeout=10)
        except Exception as e:  # noqa: BLE001 - an unreachable gateway, a refused push
            problems.append(f'the metrics could not be pushed to the Pushgateway at {pushgateway}: '
                            f'{type(e).__name__}: {e}')
    return problems
