"""ExampleValidator: the anomalies of each split against the schema, and optionally drift from a
baseline's statistics (TFDV's L-infinity / Jensen-Shannon comparators).

    >>> check = ExampleValidator(statistics=stats.outputs['statistics'], schema=schema.outputs['schema'])
    >>> drift = ExampleValidator(statistics=new_stats.outputs['statistics'], schema=schema.outputs['schema'],
    ...                          baseline_statistics=old_stats.outputs['statistics'],
    ...                          drift_thresholds={'body_mass_g': {'jensen_shannon_divergence': 0.1}})

Writes ``Split-<split>/SchemaDiff.pb`` (a binary Anomalies proto) and ``has_anomalies``. With
``fail_on_anomalies=True`` (the default) anomalies fail the node with a message listing them, so
nothing downstream runs on bad data.

Spans, without wiring: when ``baseline_statistics`` is not wired and the statistics are of a span
(``CsvExampleGen(pattern='span-{SPAN}/...')``), the driver looks up in ML-Metadata the statistics
the same StatisticsGen node made in an earlier run of the pipeline for the previous span (the
highest span below this one) and uses them as the baseline: the drift thresholds are checked against
them (TFDV's ``validate_statistics(..., previous_statistics=...)``), and a column that was present
(in at least 1% of the examples) in the previous span and is missing from every example of this one
is an anomaly. With no earlier span, the drift check is skipped and the output says so
(``drift`` property, and the printed summary). ``drift_thresholds={'fare': 0.1}`` (a bare number)
means ``infinity_norm`` for categorical features (strings, categorical ints) and
``jensen_shannon_divergence`` for numeric ones.
"""
from __future__ import annotations

import json
import os
from typing import Any

from sluice.components.component import Component, Input, Output, Parameter
from sluice.components.driver import Driver
from sluice.components.executor import Executor
from sluice.components.schema_gen import feature_presence, load_schema
from sluice.components.statistics_gen import check_split_names, load_statistics
from sluice.components.resolvers import same_source, covered_spans
from sluice.metadata.artifact import Artifact, ExampleAnomalies, ExampleStatistics, Schema

ANOMALIES_FILE = 'SchemaDiff.pb'
DRIFT_MEASURES = ('infinity_norm', 'jensen_shannon_divergence')


class AnomaliesFound(ValueError):
    """The data does not match the schema (or drifted past a threshold)."""
    retryable = False  # the data, not the machine: a retry finds the same anomalies


def _check_drift_thresholds(thresholds: dict) -> None:
    for feature, spec in thresholds.items():
        if isinstance(spec, (int, float)) and not isinstance(spec, bool):
            if not 0 <= spec <= 1:
                raise ValueError(f'the threshold of feature {feature!r} must be a number in [0, 1]; got {spec!r}')
            continue
        if not isinstance(spec, dict) or not spec or set(spec) - set(DRIFT_MEASURES):
            raise ValueError(f"thresholds of feature {feature!r} must be a number in [0, 1] or a dict with "
                             f"'infinity_norm' (categorical features) and/or 'jensen_shannon_divergence' (numeric or "
                             f'categorical); got {spec!r}')
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


VANISHED_MIN_FRACTION = 0.01  # a column present in fewer examples of the previous span may come and go


def vanished_columns(current: Any, previous: Any, anomalies: Any, previous_label: str, current_label: str) -> None:
    """Add an anomaly for each feature that had values in the previous statistics (in at least
    VANISHED_MIN_FRACTION of the examples) and has none now."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    before_n, before = feature_presence(previous)
    now_n, now = feature_presence(current)
    if not before_n or not now_n:
        return
    for name, count in sorted(before.items()):
        if count / before_n < VANISHED_MIN_FRACTION or now.get(name, 0) > 0 or name in anomalies.anomaly_info:
            continue
        info = anomalies.anomaly_info[name]
        info.path.step.append(name)
        info.severity = anomalies_pb2.AnomalyInfo.ERROR
        info.short_description = 'Column vanished'
        info.description = (f'present in {count} of {before_n} examples of {previous_label}, '
                            f'in none of the {now_n} examples of {current_label}')
        reason = info.reason.add()
        reason.type = anomalies_pb2.AnomalyInfo.SCHEMA_MISSING_COLUMN
        reason.short_description, reason.description = info.short_description, info.description


def _set_drift_thresholds(tfdv: Any, schema_proto: Any, thresholds: dict, gone: set[str] = frozenset()) -> None:
    """Put the thresholds on the schema's drift comparators. ``gone``: features the previous span had and
    this one lacks (reported as vanished, not as a configuration error)."""
    feature_names = [f.name for f in schema_proto.feature]
    for name, spec in thresholds.items():
        if name not in feature_names and name in gone:
            continue
        if name not in feature_names:
            raise ValueError(f"ExampleValidator: drift_thresholds names feature '{name}', which is not in the "
                             f'schema; features: {", ".join(feature_names)}.')
        feature = tfdv.get_feature(schema_proto, name)
        if not isinstance(spec, dict):
            from tensorflow_data_validation.utils import schema_util
            from tensorflow_metadata.proto.v0 import schema_pb2

            categorical = feature.type == schema_pb2.BYTES or schema_util.is_categorical_feature(feature)
            spec = {'infinity_norm' if categorical else 'jensen_shannon_divergence': spec}
        for measure, value in spec.items():
            getattr(feature.drift_comparator, measure).threshold = value


class ExampleValidatorExecutor(Executor):
    imports = ('tensorflow', 'tensorflow_data_validation')

    def run(self, *, statistics: ExampleStatistics, schema: Schema, baseline_statistics: ExampleStatistics | None,
            anomalies: ExampleAnomalies, fail_on_anomalies: bool, drift_thresholds: dict,
            exclude_splits: list | None = None, **resolved: Any) -> None:
        """``resolved`` (from the driver): ``spans``, {'span', 'previous_span', 'previous_run'} when the
        baseline is the previous span's statistics, or {'span'} when there is none."""
        import tensorflow_data_validation as tfdv

        spans = resolved.get('spans') or {}
        from_span = spans.get('previous_span') is not None and baseline_statistics is not None
        schema_proto = load_schema(schema)
        if drift_thresholds:
            gone: set[str] = set()
            if from_span:  # a threshold on a column that vanished since the previous span: reported below
                for split in baseline_statistics.split_names:
                    gone |= {k for k, v in feature_presence(load_statistics(baseline_statistics, split))[1].items() if v}
            _set_drift_thresholds(tfdv, schema_proto, drift_thresholds, gone)
        if from_span:
            drift = f"span {spans['span']} vs span {spans['previous_span']} (run {spans.get('previous_run', '?')})"
            if not drift_thresholds:
                drift = f'not asked (no drift_thresholds); columns compared with {drift}'
        elif baseline_statistics is not None:
            drift = f'vs {baseline_statistics!r}' if drift_thresholds else 'not asked (no drift_thresholds)'
        elif 'span' in spans:
            drift = (f"skipped: no earlier span than span {spans['span']} in the store to compare with"
                     if drift_thresholds else 'not asked (no drift_thresholds); no earlier span')
        else:
            drift = ('skipped: no baseline_statistics wired and no earlier span to compare with'
                     if drift_thresholds else 'not asked (no drift_thresholds)')

        report: dict[str, list[str]] = {}
        checked = statistics.splits_without(exclude_splits or [])
        for split in checked:
            previous = None
            if baseline_statistics is not None:
                splits = baseline_statistics.split_names
                previous = load_statistics(baseline_statistics, split if split in splits else splits[0])
            current = load_statistics(statistics, split)
            result = tfdv.validate_statistics(current, schema_proto,
                                              previous_statistics=previous if drift_thresholds else None)
            if from_span and previous is not None:
                vanished_columns(current, previous, result, f"span {spans['previous_span']}", f"span {spans['span']}")
            out = anomalies.split_uri(split)
            os.makedirs(out, exist_ok=True)
            with open(os.path.join(out, ANOMALIES_FILE), 'wb') as f:
                f.write(result.SerializeToString())
            report[split] = describe(result)

        found = {split: lines for split, lines in report.items() if lines}
        anomalies.set('split_names', checked)
        anomalies.set('has_anomalies', int(bool(found)))
        anomalies.set('summary', json.dumps(report, sort_keys=True))
        anomalies.set('drift', drift)
        if from_span:
            anomalies.set('previous_span', int(spans['previous_span']))
        print(f'ExampleValidator: drift: {drift}', flush=True)
        for split, lines in report.items():
            print(f"ExampleValidator: split '{split}': " + ('no anomalies' if not lines else
                                                              f'{len(lines)} anomalies'), flush=True)
            for line in lines:
                print(f'  {line}', flush=True)
        if found and fail_on_anomalies:
            listing = '\n'.join(f"  split '{s}': {line}" for s, lines in found.items() for line in lines)
            against = f'\nCompared with the previous span: {drift}.' if from_span else ''
            raise AnomaliesFound('the data does not match the schema:\n' + listing + against + '\nFix the data, or '
                                 'update the schema if the change is expected (ImportSchemaGen with an edited '
                                 'schema.pbtxt), or set fail_on_anomalies=False to go on anyway.')


def _examples_of(record: Any) -> Artifact | None:
    """The Examples an execution (a StatisticsGen's) read."""
    for key in ['examples', *sorted(record.inputs)]:
        for artifact in record.inputs.get(key, []):
            if artifact.type_name() == 'Examples':
                return artifact
    return None


class ExampleValidatorDriver(Driver):
    """Without a wired ``baseline_statistics``: the statistics of the previous span, from the store."""

    def resolve_inputs(self) -> dict[str, Artifact | None]:
        resolved = super().resolve_inputs()
        self._spans: dict[str, Any] = {}
        channel = self.component.inputs['statistics']
        stats = resolved.get('statistics')
        if self.component.inputs.get('baseline_statistics') is not None or channel is None or stats is None:
            return resolved
        made = self.store.producing_execution(stats.id) if stats.id is not None else None
        examples = _examples_of(made) if made is not None else None
        if examples is None or examples.get('spans') is None:  # not from an ExampleGen with {SPAN}
            return resolved
        this = covered_spans(examples)
        self._spans = {'span': max(this)}
        if min(this) <= 0:
            return resolved
        best: tuple[int, int] | None = None
        for record in self.store.node_executions_across_runs(self.pipeline.name, channel.producer.id):
            before = _examples_of(record)
            if before is None or not same_source(before, examples):
                continue
            top = max(covered_spans(before))
            if top >= min(this):
                continue
            for artifact in record.outputs.get(channel.key, []):
                if artifact.state != 'LIVE' or not artifact.exists():
                    continue
                if best is None or (top, record.id) > best:
                    best = (top, record.id)
                    resolved['baseline_statistics'] = artifact
                    self._spans = {'span': max(this), 'previous_span': top, 'previous_run': record.run_id}
        return resolved

    def execution_properties(self) -> dict[str, Any]:
        spans = getattr(self, '_spans', {})
        if 'previous_span' in spans:
            return {'compared_with_span': spans['previous_span'], 'compared_with_run': spans['previous_run']}
        return {}

    def parameters(self) -> dict[str, Any]:
        params = super().parameters()
        if getattr(self, '_spans', None):
            params['spans'] = dict(self._spans)
        return params


class ExampleValidator(Component):
    """Validates statistics against a schema (and a baseline, for drift); fails on anomalies by default.

    ``drift_thresholds``: feature -> ``{'infinity_norm': t}`` and/or ``{'jensen_shannon_divergence': t}``
    (TFDV's comparators), or a bare number ``t`` (L-infinity for categorical features, JS divergence for
    numeric ones). The baseline is ``baseline_statistics`` when wired; otherwise, for spans, the previous
    span's statistics from the store (with none, the check is skipped and the output says so)."""
    statistics = Input(ExampleStatistics)
    schema = Input(Schema)
    baseline_statistics = Input(ExampleStatistics, optional=True)
    anomalies = Output(ExampleAnomalies)
    fail_on_anomalies = Parameter(bool, default=True)
    drift_thresholds = Parameter(dict, default={}, check=_check_drift_thresholds)
    exclude_splits = Parameter(list, default=[], check=check_split_names)  # splits not checked
    libraries = ('tensorflow-data-validation',)
    executor = ExampleValidatorExecutor
    driver = ExampleValidatorDriver
