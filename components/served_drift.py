"""Drift of the data a model is served from the data it was trained on (``sluice drift DEST``).

The served data is the request log ``sluice serve --log-requests`` writes for the version in
production (``DEST/.sluice-requests/<version>/requests-*.tfrecord``); the training data's statistics
and schema are the ones the model's own run recorded in ML-Metadata (its push record names the run).
Statistics of the served rows are computed with TFDV, then compared feature by feature with TFDV's
skew comparator, the one TFDV recommends per type: L-infinity distance for categorical features
(strings), Jensen-Shannon divergence for numeric ones (ints included: statistics computed without
the schema, as StatisticsGen's are, hold no top values for an int, so L-infinity would read 0). The served rows are also
validated against the schema (a value out of its domain, a missing feature). Fewer served rows than
``min_rows``: nothing is judged, and that is said.

Only the model's inputs are compared (the label is not served). The report (``DriftReport``) says
what was compared, the figures, and the verdict; ``append_history`` adds it to
``drift-history.jsonl`` in the request log directory (the destination's ``.sluice-requests`` by
default, beside the logs it judged).
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os
import time
from typing import Any

from sluice.metadata.store import MetadataStore

DEFAULT_THRESHOLD = 0.1
DEFAULT_MIN_ROWS = 100
REQUEST_LOG_DIR = '.sluice-requests'  # as sluice serve writes it
DRIFT_HISTORY = 'drift-history.jsonl'  # in the request log directory: one line per check
MEASURE_NAMES = {'L_INFTY': 'infinity_norm', 'JENSEN_SHANNON_DIVERGENCE': 'jensen_shannon_divergence'}


class DriftError(ValueError):
    """Drift cannot be checked as asked; the message says why and what to do."""
    retryable = False


@dataclasses.dataclass
class FeatureSkew:
    feature: str
    measure: str  # infinity_norm | jensen_shannon_divergence
    value: float
    threshold: float

    @property
    def drifted(self) -> bool:
        return self.value > self.threshold


@dataclasses.dataclass
class DriftReport:
    destination: str
    version: int
    model: dict
    served_rows: int
    min_rows: int
    files: list[str]
    skews: list[FeatureSkew] = dataclasses.field(default_factory=list)
    anomalies: list[str] = dataclasses.field(default_factory=list)
    log_dir: str = ''
    time: str = dataclasses.field(default_factory=lambda: time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()))

    @property
    def judged(self) -> bool:
        return self.served_rows >= self.min_rows

    @property
    def drifted(self) -> list[FeatureSkew]:
        return [s for s in self.skews if s.drifted] if self.judged else []

    def lines(self) -> list[str]:
        head = (f'Drift at {self.destination}, version {self.version} (pipeline {self.model.get("pipeline")}, run '
                f'{self.model.get("run_id")}): {self.served_rows} served rows in {len(self.files)} request log files')
        if not self.judged:
            return [head, f'  not judged: fewer than {self.min_rows} served rows (--min-rows); log more requests '
                          '(sluice serve --log-requests RATE) or wait']
        out = [head]
        for s in sorted(self.skews, key=lambda s: s.feature):
            mark = 'DRIFT' if s.drifted else 'ok   '
            out.append(f'  {mark} {s.feature}: {s.measure} {s.value:.4f} (threshold {s.threshold:g})')
        out += [f'  ANOMALY {a}' for a in self.anomalies]
        verdict = (f'{len(self.drifted)} of {len(self.skews)} features drifted' if self.drifted else
                   f'no feature drifted ({len(self.skews)} compared)')
        return out + [f'  {verdict}' + (f'; {len(self.anomalies)} anomalies in the served rows' if self.anomalies
                                         else '')]

    def to_json(self) -> dict:
        return {**{k: v for k, v in dataclasses.asdict(self).items() if k != 'skews'},
                'skews': [dict(dataclasses.asdict(s), drifted=s.drifted) for s in self.skews],
                'judged': self.judged, 'drifted': [s.feature for s in self.drifted]}


def request_logs(destination: str, version: int, log_dir: str | None = None, since: float | None = None) -> list[str]:
    """The complete request log files of ``version`` (newer than ``since``, Unix time, if given)."""
    folder = os.path.join(log_dir or os.path.join(destination, REQUEST_LOG_DIR), str(version))
    files = sorted(glob.glob(os.path.join(folder, 'requests-*.tfrecord')))
    return [f for f in files if since is None or os.path.getmtime(f) >= since]


def training_artifacts(store: MetadataStore, model: dict) -> tuple[Any, Any]:
    """The ExampleStatistics and Schema the model's run recorded."""
    run_id = model.get('run_id')
    if not run_id:
        raise DriftError('the push record of the model in production names no run (pushed by hand or by another '
                         'tool): there are no training statistics to compare with')
    try:
        records = store.executions(run_id)
    except Exception as e:  # noqa: BLE001 - the run is not in this store
        raise DriftError(f'run {run_id}, which trained the model in production, is not in the store '
                         f'{store.url} ({e}); pass the store of pipeline {model.get("pipeline")} with --metadata') from None
    found: dict[str, Any] = {}
    for record in reversed(records):  # the newest first
        for artifacts in record.outputs.values():
            for artifact in artifacts:
                found.setdefault(artifact.type_name(), artifact)
    if 'ExampleStatistics' not in found or 'Schema' not in found:
        raise DriftError(f'run {run_id} recorded no ExampleStatistics and Schema (a StatisticsGen and a SchemaGen '
                         'or ImportSchemaGen): drift needs the training statistics and the schema')
    return found['ExampleStatistics'], found['Schema']


def _model_inputs(version_path: str) -> list[str]:
    from sluice.components.onnx_export.loading import open_model
    from sluice.components.production.destination import onnx_path

    found = onnx_path(version_path)
    if found is None:
        raise DriftError(f'{version_path} has no model.onnx: sluice serve did not serve it, so it has no request log')
    return [f.name for f in open_model(found).features]


def check(destination: str, store: MetadataStore, **options: Any) -> DriftReport:
    """Compares the served rows of the version in production with its training statistics, found in
    ``store`` through the model's push record (``compare`` takes them as artifacts)."""
    current = production_at(destination)
    statistics, schema = training_artifacts(store, model_of(current))
    return compare(destination, statistics, schema, **options)


def production_at(destination: str) -> Any:
    from sluice.components.production.destination import production

    current = production(destination).current
    if current is None:
        raise DriftError(f'nothing is in production at {os.path.abspath(destination)}: no model, no served data')
    return current


def _version_at(destination: str, number: int) -> Any:
    from sluice.components.production.destination import inspect_version

    found = inspect_version(destination, number)
    if found is None or not found.complete:
        raise DriftError(f'version {number} at {os.path.abspath(destination)} is gone or incomplete')
    return found


def model_of(current: Any) -> dict:
    return (current.record or current.facts() or {}).get('model') or {}


def compare(destination: str, statistics: Any, schema: Any, *, log_dir: str | None = None, since: float | None = None,
            thresholds: dict[str, float] | None = None, default_threshold: float = DEFAULT_THRESHOLD,
            min_rows: int = DEFAULT_MIN_ROWS, split: str = 'train', keep: dict | None = None,
            version: int | None = None) -> DriftReport:
    """The drift report of the version in production at ``destination`` against ``statistics`` (the
    ``split`` of an ExampleStatistics) and ``schema``. ``keep``: a dict that receives the TFDV protos
    (``served``, the served rows' statistics; ``anomalies``, theirs against the schema). ``version``:
    that version's logs, not production's (the version a driver resolved)."""
    current = production_at(destination) if version is None else _version_at(destination, version)
    files = request_logs(current.destination, current.number, log_dir, since)
    inputs = _model_inputs(current.path)
    report = DriftReport(current.destination, current.number, model_of(current), 0, min_rows, files,
                         log_dir=os.path.abspath(log_dir or os.path.join(current.destination, REQUEST_LOG_DIR)))
    if not files:
        return report
    served = _served_statistics(files)
    report.served_rows = int(served.datasets[0].num_examples) if served.datasets else 0
    if keep is not None:
        keep['served'] = served
    if report.judged:
        _compare(report, statistics, schema, served, inputs, thresholds or {}, default_threshold, split, keep)
    return report


def _served_statistics(files: list[str]) -> Any:
    """TFDV's statistics of the rows in ``files`` (linked into one directory: TFDV reads one pattern)."""
    import shutil
    import tempfile

    import tensorflow_data_validation as tfdv
    from apache_beam.options.pipeline_options import PipelineOptions

    import logging
    for noisy in ('apache_beam.io.tfrecordio', 'tensorflow'):  # a missing speed-up, a deprecation: not the user's
        logging.getLogger(noisy).setLevel(logging.ERROR)
    folder = tempfile.mkdtemp(prefix='sluice-drift-')
    try:
        for i, path in enumerate(files):
            os.symlink(os.path.abspath(path), os.path.join(folder, f'{i:06d}.tfrecord'))
        return tfdv.generate_statistics_from_tfrecord(data_location=os.path.join(folder, '*.tfrecord'),
                                                      pipeline_options=PipelineOptions(['--direct_num_workers=1']))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _compare(report: DriftReport, statistics: Any, schema: Any, served: Any, inputs: list[str],
             thresholds: dict[str, float], default_threshold: float, split: str, keep: dict | None) -> None:
    import tensorflow_data_validation as tfdv

    from sluice.components.example_validator import describe
    from sluice.components.schema_gen import load_schema
    from sluice.components.statistics_gen import load_statistics

    schema_proto = load_schema(schema)
    kept = [f for f in schema_proto.feature if f.name in inputs]
    del schema_proto.feature[:]
    schema_proto.feature.extend(kept)  # the model's inputs: the label is not served
    for feature in schema_proto.feature:
        categorical = feature.type == 1  # BYTES; an INT's statistics have no top values (see above)
        comparator = feature.skew_comparator.infinity_norm if categorical else \
            feature.skew_comparator.jensen_shannon_divergence
        comparator.threshold = float(thresholds.get(feature.name, default_threshold))
    trained = load_statistics(statistics, split)
    skew = tfdv.validate_statistics(trained, schema_proto, serving_statistics=served)
    for info in skew.drift_skew_info:
        for m in info.skew_measurements:
            name = type(m).Type.Name(m.type)
            report.skews.append(FeatureSkew('.'.join(info.path.step), MEASURE_NAMES.get(name, name.lower()),
                                            float(m.value), float(m.threshold)))
    anomalies = tfdv.validate_statistics(served, schema_proto)
    report.anomalies = describe(anomalies)
    if keep is not None:
        keep['anomalies'] = anomalies


def parse_since(text: str | None, now: float | None = None) -> float | None:
    """'2h', '30m', '1d', '45s' (ago) or an ISO date and time -> Unix time; None for None."""
    if not text:
        return None
    now = time.time() if now is None else now
    units = {'s': 1, 'm': 60, 'h': 3600, 'd': 86400}
    if text[-1:] in units and text[:-1].replace('.', '', 1).isdigit():
        return now - float(text[:-1]) * units[text[-1]]
    import datetime
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise DriftError(f'--since {text!r}: give a duration (30m, 2h, 1d) or a date and time (2026-12-03T10:00)') \
            from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def append_history(report: DriftReport) -> str:
    """Appends the report (without its file list) to ``drift-history.jsonl`` in its request log
    directory, where the history views read it; returns what went wrong, in words ('' if nothing)."""
    path = os.path.join(report.log_dir, DRIFT_HISTORY)
    entry = {k: v for k, v in report.to_json().items() if k != 'files'}
    try:
        os.makedirs(report.log_dir, exist_ok=True)
        with open(path, 'a') as f:
            f.write(json.dumps(entry, sort_keys=True) + '\n')
    except OSError as e:  # a read-only mount: the check stands, its history is what is lost
        return f'the check was not added to {path}: {e}'
    return ''


def write_report(report: DriftReport, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(report.to_json(), f, indent=2)
