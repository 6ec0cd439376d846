"""``sluice drift``'s figures in Prometheus' format, published like a run's (``sluice.observe.publish``), so the
shipped alert rule ``SluiceServedDataDrift`` can fire on them."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge


def drift_registry(report) -> CollectorRegistry:
    """The figures of a ``sluice.components.served_drift.DriftReport``."""
    registry = CollectorRegistry()
    pipeline = str(report.model.get('pipeline') or 'unknown')
    labels = {'pipeline': pipeline, 'version': str(report.version)}
    Gauge('sluice_drift_served_rows', 'Served rows in the request logs compared with the training data.',
          list(labels), registry=registry).labels(**labels).set(report.served_rows)
    Gauge('sluice_drift_judged', 'Whether there were enough served rows to judge drift (1) or not (0).',
          list(labels), registry=registry).labels(**labels).set(int(report.judged))
    Gauge('sluice_drift_anomalies', 'Anomalies of the served rows against the schema.', list(labels),
          registry=registry).labels(**labels).set(len(report.anomalies) if report.judged else 0)
    if report.judged:
        names = [*labels, 'feature', 'measure']
        skew = Gauge('sluice_drift_skew', "A feature's skew from training (TFDV's comparator).", names,
                     registry=registry)
        threshold = Gauge('sluice_drift_threshold', "The threshold of a feature's skew.", names, registry=registry)
        for s in report.skews:
            skew.labels(**labels, feature=s.feature, measure=s.measure).set(s.value)
            threshold.labels(**labels, feature=s.feature, measure=s.measure).set(s.threshold)
    return registry
