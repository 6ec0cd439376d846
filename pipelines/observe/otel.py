"""Spans handed to OpenTelemetry's SDK, for the exporters named in ``OTEL_TRACES_EXPORTER`` (see
``trace``): imported only then, so a run traced to its file (the default) does not load this."""
from __future__ import annotations

from typing import Any


class SdkSpan:
    def __init__(self, span: Any):
        self.span = span

    @property
    def traceparent(self) -> str:
        context = self.span.get_span_context()
        return f'00-{context.trace_id:032x}-{context.span_id:016x}-01'  # as trace._traceparent writes it

    def set_attribute(self, key: str, value: Any) -> None:
        self.span.set_attribute(key, value)

    def fail(self, description: str) -> None:
        from opentelemetry.trace import Status, StatusCode
        self.span.set_status(Status(StatusCode.ERROR, description))

    def end(self) -> None:
        self.span.end()


class SdkTracer:
    """Spans handed to the OpenTelemetry SDK's exporters named in ``OTEL_TRACES_EXPORTER``, in
    batches from a thread, so an unreachable collector never holds up a node."""

    def __init__(self, names: list[str], resource: dict):
        from importlib.metadata import entry_points

        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

        class Ids(RandomIdGenerator):  # the ids of the span stored with the run, for that span
            own: tuple[str, str] | None = None

            def generate_span_id(self) -> int:
                return int(self.own[1], 16) if self.own else super().generate_span_id()

            def generate_trace_id(self) -> int:
                return int(self.own[0], 16) if self.own else super().generate_trace_id()

        self.ids = Ids()
        self.provider = TracerProvider(resource=Resource.create(resource), id_generator=self.ids)
        for name in names:
            points = entry_points(group='opentelemetry_traces_exporter', name=name)
            if not points:
                raise ValueError(f'OTEL_TRACES_EXPORTER={name!r}: no OpenTelemetry span exporter of that name is '
                                 'installed (install its package, e.g. opentelemetry-exporter-otlp for "otlp")')
            self.provider.add_span_processor(BatchSpanProcessor(next(iter(points)).load()()))
        self.tracer = self.provider.get_tracer('sluice')

    def start(self, name: str, parent: str | None, attributes: dict, own: tuple[str, str] | None = None) -> SdkSpan:
        """A span, child of the context ``parent`` (a traceparent), or with the ids ``own`` (trace id,
        span id: the span stored with the run)."""
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
        context = TraceContextTextMapPropagator().extract({'traceparent': parent}) if parent else None
        self.ids.own = own
        try:
            return SdkSpan(self.tracer.start_span(name, context=context, attributes=attributes))
        finally:
            self.ids.own = None

    def shutdown(self) -> None:
        self.provider.shutdown()
