"""ServedDrift: ``sluice drift`` as a component, so a pipeline (run by ``sluice watch``, Airflow or
KFP on a schedule) checks the data the model in production is served.

    >>> drift = ServedDrift(push_destination='runs/penguin/serving', threshold=0.1, min_rows=100)

Its driver finds, through the push record of the version in production, the training statistics and
the schema the model's run recorded (so nothing needs wiring), and keys the cache on the request log
files (names and sizes: a file is renamed into place complete), so a re-run with no new served rows
is a cache hit. It writes ``served_statistics`` (an ExampleStatistics with the ``train`` split it was
compared with and a ``served`` split, so the statistics view overlays them), ``anomalies`` (an
ExampleAnomalies, split ``served``, with ``drift.json``: the report) and appends the check to the
drift history. ``fail_on_drift=True`` fails the node when a feature drifted.
"""
from __future__ import annotations

import json
import os
from typing import Any

from sluice.components.component import Component, Input, Output, Parameter
from sluice.components.driver import Driver, InputError
from sluice.components.executor import Executor
from sluice.components.served_drift import (DEFAULT_MIN_ROWS, DEFAULT_THRESHOLD, DriftError, model_of, production_at,
                                            training_artifacts, append_history, compare, request_logs)
from sluice.metadata.artifact import Artifact, ExampleAnomalies, ExampleStatistics, Schema


class DriftFound(ValueError):
    retryable = False  # the served data, not the machine


class ServedDriftDriver(Driver):
    """The training statistics and schema of the model in production, from the store; the request
    logs in the cache key."""

    def resolve_inputs(self) -> dict[str, Artifact | None]:
        resolved = super().resolve_inputs()
        params = self.component.parameters
        try:
            current = production_at(params['push_destination'])
            if resolved.get('statistics') is None or resolved.get('schema') is None:  # wired inputs win
                statistics, schema = training_artifacts(self.store, model_of(current))
                resolved['statistics'] = resolved.get('statistics') or statistics
                resolved['schema'] = resolved.get('schema') or schema
        except DriftError as e:
            raise InputError(f'{self.component.id}: {e}') from None
        self._logs = [(os.path.basename(f), os.path.getsize(f))
                      for f in request_logs(current.destination, current.number, params['log_dir'] or None)]
        self._version = current.number
        return resolved

    def parameters(self) -> dict[str, Any]:
        params = super().parameters()
        if getattr(self, '_version', None) is not None:
            params['version'] = self._version  # the executor judges the version the key was made for
        return params

    def external_fingerprints(self) -> dict[str, str]:
        return {'served_version': str(getattr(self, '_version', '')),
                'request_logs': json.dumps(getattr(self, '_logs', []))}


class ServedDriftExecutor(Executor):
    imports = ('tensorflow', 'tensorflow_data_validation')

    def run(self, *, statistics: ExampleStatistics, schema: Schema, served_statistics: ExampleStatistics,
            anomalies: ExampleAnomalies, push_destination: str, threshold: float, min_rows: int, log_dir: str,
            fail_on_drift: bool, **resolved: Any) -> None:
        """``resolved`` (from the driver): ``version``, the version in production its key was made for."""
        version = resolved.get('version')
        from sluice.components.example_validator import ANOMALIES_FILE
        from sluice.components.statistics_gen import STATS_FILE, load_statistics

        keep: dict[str, Any] = {}
        try:
            report = compare(push_destination, statistics, schema, log_dir=log_dir or None,
                             default_threshold=threshold, min_rows=min_rows, keep=keep, version=version)
        except DriftError as e:
            raise DriftFound(str(e)) from None
        splits = {'train': load_statistics(statistics, 'train')}
        if 'served' in keep:
            splits['served'] = keep['served']
        for split, proto in splits.items():
            os.makedirs(served_statistics.split_uri(split), exist_ok=True)
            with open(os.path.join(served_statistics.split_uri(split), STATS_FILE), 'wb') as f:
                f.write(proto.SerializeToString())
        served_statistics.set('split_names', sorted(splits))
        os.makedirs(anomalies.split_uri('served'), exist_ok=True)
        if 'anomalies' in keep:
            with open(os.path.join(anomalies.split_uri('served'), ANOMALIES_FILE), 'wb') as f:
                f.write(keep['anomalies'].SerializeToString())
        anomalies.set('split_names', ['served'])
        anomalies.set('has_anomalies', int(bool(report.judged and report.anomalies)))
        with open(os.path.join(anomalies.uri, 'drift.json'), 'w') as f:
            json.dump(report.to_json(), f, indent=2)
        for line in report.lines() + [p for p in [append_history(report)] if p]:
            print(f'ServedDrift: {line.strip()}', flush=True)
        if fail_on_drift and report.drifted:
            raise DriftFound(f'the served data drifted: {", ".join(s.feature for s in report.drifted)} (see '
                             f'{anomalies.uri}/drift.json); set fail_on_drift=False to record it and go on')


class ServedDrift(Component):
    """Compares the rows served by the model in production with its training data (TFDV's skew)."""
    statistics = Input(ExampleStatistics, optional=True)  # default: the model's run's, from the store
    schema = Input(Schema, optional=True)  # default: the model's run's, from the store
    served_statistics = Output(ExampleStatistics)
    anomalies = Output(ExampleAnomalies)
    push_destination = Parameter(str, path=True)
    threshold = Parameter(float, default=DEFAULT_THRESHOLD)
    min_rows = Parameter(int, default=DEFAULT_MIN_ROWS)
    log_dir = Parameter(str, default='')
    fail_on_drift = Parameter(bool, default=False)
    libraries = ('tensorflow-data-validation',)
    driver = ServedDriftDriver
    executor = ServedDriftExecutor
