"""ExampleValidator: the anomalies of each split against the schema, and optionally drift from a
baseline's statistics (TFDV's L-infinity / Jensen-Shannon comparators).

    >>> check = ExampleValidator(statistics=stats.outputs['statistics'], schema=schema.outputs['schema'])
    >>> drift = ExampleValidator(statistics=new_stats.outputs['statistics'], schema=schema.outputs['schema'],
    ...                          baseline_statistics=old_stats.outputs['statistics'],
    ...                          drift_thresholds={'body_mass_g': {'jensen_shannon_divergence': 0.1}})

Writes ``Split-<split>/SchemaDiff.pb`` (a binary Anomalies proto) and ``has_anomalies``. With
``fail_on_anomalies=True`` (the default) anomalies fail the node with a message listing them, so
nothing downstream runs on bad data.
"""
from __future__ import annotations

import json
import os
from typing import Any

from components.component import Component, Input, Output, Parameter
from components.executor import Executor
from components.schema_gen import load_schema
from components.statistics_gen import load_statistics
from metadata.artifact import ExampleAnomalies, ExampleStatistics, Schema

ANOMALIES_FILE = 'SchemaDiff.pb'
DRIFT_MEASURES = ('infinity_norm', 'jensen_shannon_divergence')


class AnomaliesFound(ValueError):
    """The data does not match the schema (or drifted past a threshold)."""


def _check_drift_thresholds(thresholds: dict) -> None:
    for feature, spec in thresholds.items():
        if not isinstance(spec, dict) or not spec or set(spec) - set(DRIFT_MEASURES):
            raise ValueError(f"thresholds of feature {feature!r} must be a dict with 'infinity_norm' "
                             f"(categorical features) and/or 'jensen_shannon_divergence' (numeric or categorical); "
                             f'got {spec!r}')
        for measure, value in spec.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
                raise ValueError(f'{feature}.{measure} must be a number in [0, 1]; got {value!r}')


def describe(anomalies: Any) -> list[str]:
    """One readable line per anomaly of an Anomalies proto."""
    lines = []
    for feature, info in sorted(anomalies.anomaly_info.items()):
        lines.append(f"feature '{feature}': {info.short_description or 'anomaly'}"
                     + (f' ({info.description})' if info.description else ''))
    if anomalies.HasField('dataset_anomaly_info'):
        info = anomalies.dataset_anomaly_info
        lines.append(f'dataset: {info.short_description} ({info.description})')
    return lines


class ExampleValidatorExecutor(Executor):
    def run(self, *, statistics: ExampleStatistics, schema: Schema, baseline_statistics: ExampleStatistics | None,
            anomalies: ExampleAnomalies, fail_on_anomalies: bool, drift_thresholds: dict) -> None:
        import tensorflow_data_validation as tfdv

        schema_proto = load_schema(schema)
        if drift_thresholds and baseline_statistics is None:
            raise ValueError('ExampleValidator: drift_thresholds need baseline_statistics to compare with; wire '
                             "baseline_statistics=<a StatisticsGen>.outputs['statistics'].")
        feature_names = [f.name for f in schema_proto.feature]
        for name, spec in drift_thresholds.items():
            if name not in feature_names:
                raise ValueError(f"ExampleValidator: drift_thresholds names feature '{name}', which is not in the "
                                 f'schema; features: {", ".join(feature_names)}.')
            comparator = tfdv.get_feature(schema_proto, name).drift_comparator
            for measure, value in spec.items():
                getattr(comparator, measure).threshold = value

        report: dict[str, list[str]] = {}
        for split in statistics.split_names:
            previous = None
            if baseline_statistics is not None and drift_thresholds:
                splits = baseline_statistics.split_names
                previous = load_statistics(baseline_statistics, split if split in splits else splits[0])
            result = tfdv.validate_statistics(load_statistics(statistics, split), schema_proto,
                                              previous_statistics=previous)
            out = anomalies.split_uri(split)
            os.makedirs(out, exist_ok=True)
            with open(os.path.join(out, ANOMALIES_FILE), 'wb') as f:
                f.write(result.SerializeToString())
            report[split] = describe(result)

        found = {split: lines for split, lines in report.items() if lines}
        anomalies.set('split_names', statistics.split_names)
        anomalies.set('has_anomalies', int(bool(found)))
        anomalies.set('summary', json.dumps(report, sort_keys=True))
        for split, lines in report.items():
            print(f"ExampleValidator: split '{split}': " + ('no anomalies' if not lines else
                                                              f'{len(lines)} anomalies'), flush=True)
            for line in lines:
                print(f'  {line}', flush=True)
        if found and fail_on_anomalies:
            listing = '\n'.join(f"  split '{s}': {line}" for s, lines in found.items() for line in lines)
            raise AnomaliesFound('the data does not match the schema:\n' + listing + '\nFix the data, or update '
                                 'the schema if the change is expected (ImportSchemaGen with an edited '
                                 'schema.pbtxt), or set fail_on_anomalies=False to go on anyway.')


class ExampleValidator(Component):
    """Validates statistics against a schema (and a baseline, for drift); fails on anomalies by default."""
    statistics = Input(ExampleStatistics)
    schema = Input(Schema)
    baseline_statistics = Input(ExampleStatistics, optional=True)
    anomalies = Output(ExampleAnomalies)
    fail_on_anomalies = Parameter(bool, default=True)
    drift_thresholds = Parameter(dict, default={}, check=_check_drift_thresholds)
    libraries = ('tensorflow-data-validation',)
    executor = ExampleValidatorExecutor
