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
by default, one span per line in the shape of OpenTelemetry's own JSON (``name``, ``context`` with
``trace_id`` and ``span_id``, ``parent_id``, ``start_time``, ``end_time``, ``status``,
``attributes``), written here without the SDK, whose import alone would cost a cached re-run
more than the 1% that watching it may (bench/observe_overhead.py). The exporters named by
OpenTelemetry's own ``OTEL_TRACES_EXPORTER`` (``otlp``, ``console``, ``none``...; each configured by
its standard variables, loaded by their entry points) go through the SDK instead.
``OTEL_SDK_DISABLED=true`` turns tracing off.
"""
from __future__ import annotations

import json
import math
import os
import time
from typing import Any

from sluice.metadata import storage

TRACE_PROPERTY = 'trace_context'
_dumps = json.dumps
_UNSET_STATUS = {'status_code': 'UNSET'}
_UNSET = _dumps(_UNSET_STATUS)
EXPORTER_ENV = 'OTEL_TRACES_EXPORTER'


def _traceparent(trace_id: str, span_id: str) -> str:
    """W3C trace context: version 00, ids in hex, sampled."""
    return f'00-{trace_id}-{span_id}-01'


def _parse(traceparent: str | None) -> tuple[str, str] | None:
    """(trace id, span id) of a W3C ``traceparent``, None if it is not one."""
    parts = (traceparent or '').strip().split('-')
    if len(parts) != 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    try:
        int(parts[1], 16), int(parts[2], 16)
    except ValueError:
        return None
    return (parts[1], parts[2]) if int(parts[1], 16) and int(parts[2], 16) else None


_second: list = [None, '']  # the last whole second written, and its date and time as written


def _iso(seconds: float) -> str:
    """``datetime.fromtimestamp(seconds, timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')`` at a fraction
    of its cost (twice per span): microseconds rounded half to even, as datetime rounds them; the date
    and time formatted once a second (a run's spans end many to a second)."""
    fraction, whole = math.modf(seconds)
    micros = round(fraction * 1e6)
    if micros >= 1000000:
        whole, micros = whole + 1, micros - 1000000
    if whole != _second[0]:
        _second[:] = whole, time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(whole))
    return f'{_second[1]}.{micros:06d}Z'


def _disabled() -> bool:
    return os.environ.get('OTEL_SDK_DISABLED', '').strip().lower() == 'true'  # OpenTelemetry's own off switch


class _FileSpan:
    """A span written as one JSON line to the run's trace file when it ends (``resource``: the
    tracer's resource attributes, already JSON)."""

    def __init__(self, out: Any, resource: str, name: str, trace_id: str, parent_id: str | None, attributes: dict,
                 span_id: str | None = None):
        self.out, self.resource, self.name = out, resource, name
        self.trace_id, self.span_id, self.parent_id = trace_id, span_id or os.urandom(8).hex(), parent_id
        self.attributes = attributes  # a dict made for this span
        self.status: dict = _UNSET_STATUS  # replaced, never changed (fail)
        self.start = time.time()

    @property
    def traceparent(self) -> str:
        return _traceparent(self.trace_id, self.span_id)

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value

    def fail(self, description: str) -> None:
        self.status = {'status_code': 'ERROR', 'description': description}

    def end(self) -> None:
        if self.out is None:  # OTEL_TRACES_EXPORTER=none
            return
        # json.dumps of the whole span, byte for byte, with only its free parts encoded (the tracer's
        # resource once): one write(2) of the line, in the kernel's hands when end() returns
        parent = f'"0x{self.parent_id}"' if self.parent_id else 'null'
        name = self.name  # a node id or a command: printable ASCII, written as is, as json.dumps writes it
        name = f'"{name}"' if name.isascii() and name.isprintable() and '"' not in name and '\\' not in name \
            else _dumps(name)
        status = _UNSET if self.status is _UNSET_STATUS else _dumps(self.status)
        line = (
            f'{{"name": {name}, "context": {{"trace_id": "0x{self.trace_id}", "span_id": '
            f'"0x{self.span_id}"}}, "kind": "SpanKind.INTERNAL", "parent_id": {parent}, "start_time": '
            f'"{_iso(self.start)}", "end_time": "{_iso(time.time())}", "status": {status}, '
            f'"attributes": {_dumps(self.attributes)}, "resource": {self.resource}}}\n').encode()
        while line:  # a regular file takes it whole; were it cut short, the rest follows
            line = line[self.out.write(line):]


class _FileTracer:
    """The default: spans appended to the run's trace file, each as it ends (a kill loses nothing ended).
    No path (``OTEL_TRACES_EXPORTER=none``): spans go nowhere, the run's trace context is still kept."""

    def __init__(self, path: str | None, resource: dict):
        self.out = None
        if path is not None:  # unbuffered: each span's line is one write, appended by every process of the run
            try:
                self.out = open(path, 'ab', buffering=0)
            except FileNotFoundError:  # the run's first process on this host: no .sluice-logs yet
                os.makedirs(os.path.dirname(path), exist_ok=True)
                self.out = open(path, 'ab', buffering=0)
        self.resource = _dumps({'attributes': resource})  # every span's resource, as JSON
        self.parsed: tuple[str | None, tuple[str, str] | None] = (None, None)  # the last parent, parsed

    def start(self, name: str, parent: str | None, attributes: dict, own: tuple[str, str] | None = None) -> _FileSpan:
        if own:  # the ids of the span whose context was stored with the run when it was registered
            return _FileSpan(self.out, self.resource, name, own[0], None, attributes, own[1])
        if parent != self.parsed[0]:  # every node span of a run has the same parent
            self.parsed = (parent, _parse(parent))
        return _FileSpan(self.out, self.resource, name, *(self.parsed[1] or (os.urandom(16).hex(), None)), attributes)

    def shutdown(self) -> None:
        if self.out is not None:
            self.out.close()


class _NodeSpan:
    """``RunTrace.node``'s span as a context manager (a plain class: a generator's is slower, twice
    per node)."""
    __slots__ = ('span', 'facts')

    def __init__(self, span: Any):
        self.span, self.facts = span, {}

    def __enter__(self) -> dict:
        return self.facts

    def __exit__(self, *exc: Any) -> None:
        facts, span = self.facts, self.span
        state = facts.get('state', 'CANCELED')
        span.set_attribute('sluice.state', state)
        span.set_attribute('sluice.cache_hit', state == 'CACHED')
        if state in ('FAILED', 'CANCELED'):
            span.fail(str(facts.get('error', ''))[:500])
        span.end()


class RunTrace:
    """The spans this process adds to one run's trace."""

    def __init__(self, store: Any, run_id: str, pipeline_root: str, pipeline: str):
        self.store, self.run_id = store, run_id
        resource = {'service.name': 'sluice', 'sluice.pipeline': pipeline}
        names = [n.strip() for n in os.environ.get(EXPORTER_ENV, '').split(',') if n.strip()]
        if not names:
            self.tracer: Any = _FileTracer(os.path.join(storage.local_dir(pipeline_root), '.sluice-logs', f'{run_id}.trace.jsonl'),
                                           resource)
        elif set(names) == {'none'}:
            self.tracer = _FileTracer(None, resource)
        else:
            from sluice.observe.otel import SdkTracer
            self.tracer = SdkTracer([n for n in names if n != 'none'], resource)
        self.span: Any = None
        self.parent: str | None = None  # the traceparent node spans are children of

    @staticmethod
    def new_context() -> dict[str, str]:
        """The run property to register a new run with: the context of the span its first process will
        open (``begin(..., registered=True)``), stored in the run's one registering write."""
        if _disabled():
            return {}
        return {TRACE_PROPERTY: _traceparent(os.urandom(16).hex(), os.urandom(8).hex())}

    @classmethod
    def begin(cls, store: Any, run_id: str, pipeline_root: str, pipeline: str, name: str | None,
              registered: bool = False, context: str | None = None) -> RunTrace | None:
        """Opens the span of ``name`` (this process's part of the run): the span whose context the run
        was registered with when this process registered it (``registered``; ``context``, that
        context as ``new_context`` made it, saves reading it back), a new trace stored with the run
        when the run has none, else a child of the stored context; ``name=None``: no span of this
        process, node spans are children of the stored context (a Beam worker). None when tracing is
        unavailable (a trace is never a reason to fail a run)."""
        if _disabled():
            return None
        try:
            trace = cls(store, run_id, pipeline_root, pipeline)
            trace._open(name, registered, context if registered else None)
            return trace
        except Exception as e:  # noqa: BLE001 - no exporter, a store hiccup: run untraced
            import logging
            logging.getLogger('sluice.observe').warning('Run %s is not traced: %s', run_id, e)
            return None

    def _open(self, name: str | None, registered: bool, context: str | None = None) -> None:
        stored = context if context is not None else \
            str(self.store.run_properties(self.run_id).get(TRACE_PROPERTY) or '')
        parent = stored if _parse(stored) else None
        if name is None and parent is not None:
            self.parent = parent
            return
        attributes = {'sluice.run_id': self.run_id}
        if registered and parent is not None:
            self.span = self.tracer.start(name or 'sluice run', None, attributes, own=_parse(parent))
            self.parent = parent
            return
        self.span = self.tracer.start(name or 'sluice run', parent, attributes)
        self.parent = self.span.traceparent
        if parent is None:
            self.store.update_run(self.run_id, {TRACE_PROPERTY: self.parent})

    def node(self, node_id: str, attempt: int) -> _NodeSpan:
        """A span for one attempt of a node, ended when its ``with`` block ends; put ``state`` (and
        ``error``) in the dict the block gets."""
        return _NodeSpan(self.tracer.start(node_id, self.parent, {
            'sluice.node': node_id, 'sluice.run_id': self.run_id, 'sluice.attempt': attempt}))

    def end(self, state: str) -> None:
        if self.span is not None:
            self.span.set_attribute('sluice.state', state)
            self.span.end()
            self.span = None
        self.tracer.shutdown()
