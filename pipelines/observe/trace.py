"""A run's trace (OpenTelemetry): one span for the run, a child span per node attempt, and the trace
continued by every process that works on the run later (``sluice resume``, ``sluice run-node``, Beam
workers).

The process that registers a run opens its span (``sluice run PIPELINE``) and stores its context (a
W3C ``traceparent``) with the run in ML-Metadata (run property ``trace_context``). A process that
continues the run opens a span of its own (``sluice resume``, ``sluice run-node NODE``) as a child of
that context, so every span of the run is in one trace, across kills and hosts. Node attempts are
spans named after the node, with the attributes ``sluice.node``, ``sluice.run_id``,
``sluice.attempt``, ``sluice.state`` and ``sluice.cache_hit``.

Spans are exported as they end: as JSON lines to ``<pipeline_root>/.sluice-logs/<run_id>.trace.jsonl``
by default, or to the exporters named by OpenTelemetry's own ``OTEL_TRACES_EXPORTER`` (``otlp``,
``console``, ``none``...; each configured by its standard variables), loaded by their entry points.
``OTEL_SDK_DISABLED=true`` turns tracing off.
"""
from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

TRACE_PROPERTY = 'trace_context'
EXPORTER_ENV = 'OTEL_TRACES_EXPORTER'


def _exporters(path: str, files: list) -> list[Any]:
    """The exporters to use; a file opened for them is added to ``files`` (closed at the end)."""
    names = [n.strip() for n in os.environ.get(EXPORTER_ENV, '').split(',') if n.strip()]
    if not names:
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter
        os.makedirs(os.path.dirname(path), exist_ok=True)
        out = open(path, 'a', buffering=1)  # one line per span, appended by every process of the run
        files.append(out)
        return [ConsoleSpanExporter(out=out, formatter=lambda span: span.to_json(indent=None) + '\n')]
    from importlib.metadata import entry_points
    found = []
    for name in names:
        if name == 'none':
            continue
        points = entry_points(group='opentelemetry_traces_exporter', name=name)
        if not points:
            raise ValueError(f'{EXPORTER_ENV}={name!r}: no OpenTelemetry span exporter of that name is installed '
                             '(install its package, e.g. opentelemetry-exporter-otlp for "otlp")')
        found.append(next(iter(points)).load()())
    return found


class RunTrace:
    """The spans this process adds to one run's trace."""

    def __init__(self, store: Any, run_id: str, pipeline_root: str, pipeline: str):
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor

        self.store, self.run_id = store, run_id
        self.provider = TracerProvider(resource=Resource.create({'service.name': 'sluice',
                                                                 'sluice.pipeline': pipeline}))
        self.files: list = []
        for exporter in _exporters(os.path.join(pipeline_root, '.sluice-logs', f'{run_id}.trace.jsonl'), self.files):
            # The file: each span written as it ends (a kill loses nothing ended). A collector: in batches
            # from a thread, so an unreachable one never holds up a node.
            file_exporter = isinstance(exporter, ConsoleSpanExporter) and self.files
            self.provider.add_span_processor(SimpleSpanProcessor(exporter) if file_exporter
                                             else BatchSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer('sluice')
        self.span: Any = None
        self.context: Any = None

    @classmethod
    def begin(cls, store: Any, run_id: str, pipeline_root: str, pipeline: str, name: str | None) -> RunTrace | None:
        """Opens the span of ``name`` (this process's part of the run): a new trace stored with the run
        when the run has none yet, else a child of the stored context; ``name=None``: no span of this
        process, node spans are children of the stored context (a Beam worker). None when tracing is
        unavailable (a trace is never a reason to fail a run)."""
        if os.environ.get('OTEL_SDK_DISABLED', '').strip().lower() == 'true':  # OpenTelemetry's own off switch
            return None
        try:
            trace = cls(store, run_id, pipeline_root, pipeline)
            trace._open(name)
            return trace
        except Exception as e:  # noqa: BLE001 - no exporter, a store hiccup: run untraced
            import logging
            logging.getLogger('sluice.observe').warning('Run %s is not traced: %s', run_id, e)
            return None

    def _open(self, name: str | None) -> None:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        propagator = TraceContextTextMapPropagator()
        stored = str(self.store.run(self.run_id).properties.get(TRACE_PROPERTY) or '')
        parent = propagator.extract({'traceparent': stored}) if stored else None
        if name is None and parent is not None:
            self.context = parent
            return
        self.span = self.tracer.start_span(name or 'sluice run', context=parent,
                                           attributes={'sluice.run_id': self.run_id})
        self.context = trace.set_span_in_context(self.span)
        if not stored:
            carrier: dict[str, str] = {}
            propagator.inject(carrier, context=self.context)
            self.store.update_run(self.run_id, {TRACE_PROPERTY: carrier['traceparent']})

    @contextlib.contextmanager
    def node(self, node_id: str, attempt: int) -> Iterator[dict]:
        """A span for one attempt of a node; put ``state`` (and ``cache_hit``) in the dict it yields."""
        facts: dict = {}
        span = self.tracer.start_span(node_id, context=self.context, attributes={
            'sluice.node': node_id, 'sluice.run_id': self.run_id, 'sluice.attempt': attempt})
        try:
            yield facts
        finally:
            state = facts.get('state', 'CANCELED')
            span.set_attribute('sluice.state', state)
            span.set_attribute('sluice.cache_hit', state == 'CACHED')
            if state in ('FAILED', 'CANCELED'):
                from opentelemetry.trace import Status, StatusCode
                span.set_status(Status(StatusCode.ERROR, str(facts.get('error', ''))[:500]))
            span.end()

    def end(self, state: str) -> None:
        if self.span is not None:
            self.span.set_attribute('sluice.state', state)
            self.span.end()
            self.span = None
        self.provider.shutdown()
        for f in self.files:
            f.close()
