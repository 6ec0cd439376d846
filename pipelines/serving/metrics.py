"""The server's figures in Prometheus' format (``GET /metrics``): requests and their latency by
version and status code, the version in production, loads that failed, swaps, and rows logged."""
from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, model: str):
        self.model = model
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter('sluice_serve_requests', 'Requests answered, by model version, API and HTTP status.',
                                ['model', 'version', 'api', 'code'], registry=r)
        self.latency = Histogram('sluice_serve_request_duration_seconds',
                                 'Time from reading a request to its answer, by model version and HTTP status.',
                                 ['model', 'version', 'code'], buckets=LATENCY_BUCKETS, registry=r)
        self.rows = Counter('sluice_serve_rows', 'Examples answered, by model version.', ['model', 'version'],
                            registry=r)
        self.version = Gauge('sluice_serve_model_version', 'The version in production being served (0: none).',
                             ['model'], registry=r)
        self.loaded_at = Gauge('sluice_serve_model_loaded_timestamp_seconds',
                               'When the version in production was loaded (Unix time).', ['model'], registry=r)
        self.load_failures = Counter('sluice_serve_load_failures', 'Versions that failed to load, by version.',
                                     ['model', 'version'], registry=r)
        self.swaps = Counter('sluice_serve_swaps', 'Changes of the version in production being served.', ['model'],
                             registry=r)
        self.logged = Counter('sluice_serve_logged_rows', 'Examples written to the request log, by version.',
                              ['model', 'version'], registry=r)
        self.version.labels(model).set(0)
        self._children: dict[tuple, tuple] = {}  # (version, api, code) -> the labelled series it adds to

    def answered(self, version: int | None, api: str, code: int, seconds: float, rows: int = 0) -> None:
        children = self._children.get((version, api, code))
        if children is None:  # labels() takes a lock and builds its key each time: done once per kind
            v = str(version) if version is not None else 'none'
            children = self._children[(version, api, code)] = (
                self.requests.labels(self.model, v, api, str(code)), self.latency.labels(self.model, v, str(code)),
                self.rows.labels(self.model, v))
        requests, latency, answered_rows = children
        requests.inc()
        latency.observe(seconds)
        if rows:
            answered_rows.inc(rows)

    def swapped(self, model) -> None:
        self.version.labels(self.model).set(model.version if model is not None else 0)
        self.loaded_at.labels(self.model).set(model.loaded_at if model is not None else time.time())
        self.swaps.labels(self.model).inc()

    def load_failed(self, version: int) -> None:
        self.load_failures.labels(self.model, str(version)).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
