"""Gauges written in Prometheus' text exposition format (version 0.0.4) without prometheus_client,
whose import alone would cost a cached re-run more than watching it may (bench/observe_overhead.py).

The text is what prometheus_client's ``generate_latest`` writes for the same gauges, byte for byte:
metrics in the order they were first set, each with its ``# HELP`` (backslash and newline escaped)
and ``# TYPE ... gauge`` lines, then one line per label set in the order each was first set, labels
sorted by name, values escaped (backslash, double quote, newline) and numbers written as Go writes
them (``1.0``, ``1.796314688e+09``, ``+Inf``, ``-Inf``, ``NaN``). ``write_textfile`` writes it for the
node exporter's textfile collector: to a temporary file in the same directory, renamed into place,
so the collector never reads half a file; ``export`` pushes the same text to a Pushgateway.
"""
from __future__ import annotations

import math
import os
from typing import Any


def _valid_name(name: str, colons: bool) -> bool:
    """Prometheus' metric name ``[a-zA-Z_:][a-zA-Z0-9_:]*`` (``colons``) or label name
    ``[a-zA-Z_][a-zA-Z0-9_]*``, checked without a regular expression (compiling one costs more)."""
    if colons:
        name = name.replace(':', '_')
    return name.isascii() and name.isidentifier()


def go_float(value: float) -> str:
    """A sample's value as Prometheus' Go code writes it (prometheus_client's ``floatToGoString``)."""
    value = float(value)
    if value == math.inf:
        return '+Inf'
    if value == -math.inf:
        return '-Inf'
    if value != value:
        return 'NaN'
    text = repr(value)
    dot = text.find('.')
    if value > 0 and dot > 6:  # Go switches to an exponent sooner than Python
        mantissa = f'{text[0]}.{text[1:dot]}{text[dot + 1:]}'.rstrip('0.')
        return f'{mantissa}e+{dot - 1:02d}'
    return text


def escape_label_value(value: str) -> str:
    if '\\' in value or '\n' in value or '"' in value:
        return value.replace('\\', '\\\\').replace('\n', '\\n').replace('"', '\\"')
    return value


def escape_help(text: str) -> str:
    return text.replace('\\', '\\\\').replace('\n', '\\n')


class _Gauge:
    __slots__ = ('name', 'doc', 'labelnames', 'samples')

    def __init__(self, name: str, doc: str, labelnames: tuple[str, ...]):
        self.name, self.doc, self.labelnames = name, doc, labelnames
        # a label set as written ('{node="Trainer",pipeline="penguin"}', '' without labels) -> its value, in
        # the order first set: written once, when set (escaped values are unambiguous, so it is the key)
        self.samples: dict[str, float] = {}


def _label_parts(gauge: _Gauge, labels: dict[str, Any]) -> list[str]:
    """``name="value"`` of each label, in the gauge's order (its label names sorted), values escaped;
    a ValueError when the labels are not the gauge's."""
    parts = []
    try:
        if len(labels) != len(gauge.labelnames):
            raise KeyError
        for k in gauge.labelnames:
            v = labels[k]
            if v.__class__ is not str:
                v = str(v)
            if '\\' in v or '\n' in v or '"' in v:
                v = escape_label_value(v)
            parts.append(f'{k}="{v}"')
    except KeyError:
        raise ValueError(f'Incorrect label names for {gauge.name}: {sorted(labels)}, not {list(gauge.labelnames)}') \
            from None
    return parts


class Gauges:
    """Gauges set by name and labels, as prometheus_client's ``Gauge(name, doc, labelnames)`` would
    hold them: each name keeps the label names it was first set with (setting it with others is a
    ValueError), a label set set again keeps its place and takes the new value."""

    def __init__(self) -> None:
        self.gauges: dict[str, _Gauge] = {}

    def set(self, name: str, doc: str, value: float, **labels: Any) -> None:
        gauge = self.gauges.get(name) or self._new(name, doc, labels)
        parts = _label_parts(gauge, labels)
        gauge.samples['{' + ','.join(parts) + '}' if parts else ''] = float(value)

    def set_each(self, name: str, doc: str, label: str, values: dict[str, float], **labels: Any) -> None:
        """``set(name, doc, value, **labels, <label>=key)`` for each ``key: value`` of ``values``, in
        their order: the labels they share written once."""
        labels[label] = ''
        gauge = self.gauges.get(name) or self._new(name, doc, labels)
        parts = _label_parts(gauge, labels)
        i = gauge.labelnames.index(label)
        head = '{' + ''.join(f'{part},' for part in parts[:i]) + f'{label}="'
        tail = '"' + ''.join(f',{part}' for part in parts[i + 1:]) + '}'
        for key, value in values.items():
            if '\\' in key or '\n' in key or '"' in key:
                key = escape_label_value(key)
            gauge.samples[head + key + tail] = float(value)

    def _new(self, name: str, doc: str, labels: dict[str, Any]) -> _Gauge:
        if not _valid_name(name, colons=True):
            raise ValueError(f'Invalid metric name: {name}')
        for label in labels:
            if not _valid_name(label, colons=False) or label.startswith('__'):
                raise ValueError(f'Invalid label metric name: {label}')
        gauge = self.gauges[name] = _Gauge(name, doc, tuple(sorted(labels)))
        return gauge

    def text(self) -> str:
        """The text exposition format, version 0.0.4 (what ``generate_latest`` writes)."""
        lines = []
        for g in self.gauges.values():
            lines.append(f'# HELP {g.name} {escape_help(g.doc)}\n# TYPE {g.name} gauge\n')
            lines += [f'{g.name}{labels} {go_float(value)}\n' for labels, value in g.samples.items()]
        return ''.join(lines)


def write_textfile(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` atomically, as the node exporter's textfile collector needs: a
    temporary file in the same directory (a dot file whose name does not end in ``.prom``, so the
    collector never reads it), renamed over ``path``. Created with the usual permissions (0666 less
    the umask), so a collector running as another user can read it."""
    directory, name = os.path.split(os.path.abspath(path))
    temporary = os.path.join(directory, f'.{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp')
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with open(fd, 'wb') as f:
            f.write(text.encode('utf-8'))
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
