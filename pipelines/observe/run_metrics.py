"""A run's figures in Prometheus' format, read from what the run recorded in ML-Metadata.

Every figure is a gauge computed from the store (the latest execution of each node, its outputs), so
writing them again after a resume or after each ``run-node`` task replaces the run's figures: nothing
is counted twice. Labels are the pipeline and, where it applies, the node, the split, the metric;
the run id is on ``sluice_run_info`` only, so a Pushgateway group keeps one series per name.

The store is read once for the run, in four queries: the contexts created since the run started
(the run's own among them, and any run started after it), the run's executions, the latest
executions' OUTPUT events and those artifacts; the pipeline's older runs only when no run started
since is COMPLETE (newest first, as far as the latest COMPLETE one).

Neither prometheus_client nor a registry is involved (its import alone would cost a cached re-run
more than watching it may, bench/observe_overhead.py): ``Gauges`` holds the figures and writes them
in Prometheus' text exposition format (version 0.0.4), what prometheus_client's ``generate_latest``
writes for the same gauges, byte for byte: metrics in the order they were first set, each with its
``# HELP`` (backslash and newline escaped) and ``# TYPE ... gauge`` lines, then one line per label set
in the order each was first set, labels sorted by name, values escaped (backslash, double quote,
newline) and numbers written as Go writes them (``1.0``, ``1.796314688e+09``, ``+Inf``, ``-Inf``,
``NaN``). ``write_textfile`` writes it for the node exporter's textfile collector: to a temporary file
in the same directory, renamed into place, so the collector never reads half a file; ``push`` pushes
the same text to a Pushgateway. (One module with the figures: a second one imported would cost each
run that exports them as much as a tenth of a millisecond.)
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Iterator

from sluice.metadata import storage
from sluice.metadata.artifact import row_counts
from sluice.metadata.records import PIPELINE_RUN, ExecutionRecord, RunSummary, latest_per_node, value_of
from sluice.metadata.store import MetadataStore

NODE_STATES = ('COMPLETE', 'CACHED', 'FAILED', 'RUNNING', 'CANCELED', 'SKIPPED')
FIGURED = frozenset({'Examples', 'ModelBlessing', 'ExampleAnomalies', 'InfraBlessing', 'PushedModel'})  # _artifact


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


def run_figures(store: MetadataStore, run_id: str) -> tuple[Gauges, RunSummary]:
    """The run's figures, and the run as the store has it (its ``state``, ``pipeline_name``)."""
    newest = newest_contexts(store, run_id)
    run, latest = read_run(store, run_id, newest.run if newest is not None else None)
    pipeline = run.pipeline_name
    g = Gauges()
    state = run.state
    ends = [ex.update_time for ex in run.executions] or [run.create_time]
    g.set('sluice_run_info', 'The run these figures are from, and its state (always 1).', 1, pipeline=pipeline,
          run_id=run_id, state=state)
    g.set('sluice_run_success', 'Whether the run is COMPLETE (1) or not (0).', int(state == 'COMPLETE'),
          pipeline=pipeline)
    g.set('sluice_run_start_timestamp_seconds', 'When the run started (Unix time).', run.create_time,
          pipeline=pipeline)
    g.set('sluice_run_duration_seconds', 'From the start of the run to its last recorded change.',
          max(ends) - run.create_time, pipeline=pipeline)
    g.set_each('sluice_run_nodes', "The run's nodes by state.", 'state',
               {node_state: sum(1 for ex in latest.values() if ex.state == node_state) for node_state in NODE_STATES},
               pipeline=pipeline)
    attempts: dict[str, int] = {}
    for ex in run.executions:
        attempts[ex.node_id] = attempts.get(ex.node_id, 0) + 1
    for node_id, ex in sorted(latest.items()):
        _node(g, pipeline, node_id, ex, attempts[node_id])
    last = last_success(store, pipeline, run, newest)
    if last is not None:
        g.set('sluice_last_success_timestamp_seconds', 'When a run of the pipeline last succeeded (Unix time).',
              last, pipeline=pipeline)
    return g, run


def read_run(store: MetadataStore, run_id: str, context: Any = None) -> tuple[RunSummary, dict[str, ExecutionRecord]]:
    """The run (``MetadataStore.run``: its context, unless already read, and executions) and the latest
    execution of each node with those of its outputs the figures read (``FIGURED``), keys and order
    from the OUTPUT events, as ``MetadataStore.executions`` reads them: the events and artifacts of
    the latest executions' outputs only."""
    from ml_metadata.proto import metadata_store_pb2 as pb

    run = store.run(run_id, context, properties=())  # the figures read no execution's own properties
    latest = latest_per_node(run.executions)
    by_id = {ex.id: ex for ex in latest.values()}
    output = pb.Event.OUTPUT
    events = [e for e in store.retry(lambda: store.mlmd.get_events_by_execution_ids(list(by_id)))
              if e.type == output] if by_id else []
    artifacts = {a.id: a for a in store.artifacts(sorted({e.artifact_id for e in events}), FIGURED)} if events else {}
    placed = []
    for e in events:
        if e.artifact_id in artifacts:
            steps = e.path.steps
            placed.append(([s.index for s in steps if s.HasField('index')],
                           next((s.key for s in steps if s.HasField('key')), ''), e))
    placed.sort(key=lambda p: p[0])
    for _, key, e in placed:
        by_id[e.execution_id].outputs.setdefault(key, []).append(artifacts[e.artifact_id])
    return run, latest


class Newest:
    """The contexts created last in the store (of every type: runs, leases, settlements), back to one
    older than the run's own (``run``), or all of them (``whole``). (A plain class: a dataclass
    would cost this module's import half a millisecond more.)"""
    __slots__ = ('contexts', 'run', 'whole')

    def __init__(self, contexts: list, run: Any, whole: bool):
        self.contexts, self.run, self.whole = contexts, run, whole


def newest_contexts(store: MetadataStore, run_id: str, window: int = 3) -> Newest | None:
    """The contexts created since run ``run_id`` was registered (and one more), read ``window`` at a
    time, then four times as many: a run that just ended is followed only by its own leases (one for
    the run, one per node that did more than a cache hit) and settlements, so after a cached re-run
    this is one short query (the run's lease, the run, the context before: contexts of runs are large,
    each one more read costs), which also finds the run's own context. No filter query (ML-Metadata
    parses those with ZetaSQL, whose first use in a process costs several milliseconds). None past
    1024 contexts (a run resumed long after)."""
    from ml_metadata.metadata_store import ListOptions, OrderByField

    while window <= 1024:
        options = ListOptions(limit=window, order_by=OrderByField.CREATE_TIME, is_asc=False)
        contexts = store.retry(lambda: store.mlmd.get_contexts(list_options=options))  # noqa: B023 - called here
        # a run's context is the one of its name with a pipeline_name (leases are named <run>@<epoch>)
        run = next((c for c in contexts if c.name == run_id and 'pipeline_name' in c.custom_properties), None)
        whole = len(contexts) < window
        if whole or (run is not None and min(c.create_time_since_epoch for c in contexts) <
                     run.create_time_since_epoch):
            return Newest(contexts, run, whole)
        window *= 4
    return None


def _node(g: Gauges, pipeline: str, node_id: str, ex: ExecutionRecord, attempts: int) -> None:
    g.set('sluice_node_duration_seconds', "The node's latest execution, start to end.",
          max(0.0, ex.update_time - ex.create_time), pipeline=pipeline, node=node_id)
    g.set_each('sluice_node_state', "The state of the node's latest execution (1 for its state).", 'state',
               {node_state: int(ex.state == node_state) for node_state in NODE_STATES}, pipeline=pipeline,
               node=node_id)
    g.set('sluice_node_attempts', 'Executions of the node in the run (retries and resumes included).',
          attempts, pipeline=pipeline, node=node_id)
    g.set('sluice_node_cache_hit', 'Whether the node was taken from the cache (1) or executed (0).',
          int(ex.state == 'CACHED'), pipeline=pipeline, node=node_id)
    for artifacts in ex.outputs.values():
        for artifact in artifacts:
            _artifact(g, pipeline, node_id, artifact)


def _artifact(g: Gauges, pipeline: str, node_id: str, artifact: Any) -> None:
    kind = artifact.type_name()
    if kind == 'Examples':
        for split, rows in row_counts(artifact).items():
            g.set('sluice_examples_rows', 'Examples written per split.', rows, pipeline=pipeline, node=node_id,
                  split=split)
            g.set('sluice_examples_bytes', "Bytes of a split's files.", _bytes(artifact.split_uri(split)),
                  pipeline=pipeline, node=node_id, split=split)
    elif kind == 'ModelBlessing':
        g.set('sluice_model_blessed', 'Whether the candidate was BLESSED (1) or not (0).',
              int(bool(artifact.get('blessed'))), pipeline=pipeline)
        for model, metrics in _overall_metrics(artifact).items():
            for name, value in metrics.items():
                if isinstance(value, (int, float)):
                    g.set('sluice_model_metric', 'Overall evaluation metrics of the candidate and the baseline.',
                          value, pipeline=pipeline, model=model, metric=name)
    elif kind == 'ExampleAnomalies' and os.path.isfile(os.path.join(storage.local_copy(artifact.uri), 'drift.json')):
        _drift(g, pipeline, artifact)  # a ServedDrift node: its figures as sluice drift publishes them
    elif kind == 'InfraBlessing':
        g.set('sluice_model_infra_blessed', 'Whether the candidate loaded and answered in sluice serve (1).',
              int(bool(artifact.get('blessed'))), pipeline=pipeline)
    elif kind == 'PushedModel':
        pushed = bool(artifact.get('pushed'))
        g.set('sluice_model_pushed', 'Whether the run pushed its model (1) or not (0).', int(pushed),
              pipeline=pipeline)
        version = str(artifact.get('pushed_version') or '')
        if pushed and version.isdigit():
            g.set('sluice_model_pushed_version', 'The version the run pushed.', int(version), pipeline=pipeline)


def _drift(g: Gauges, pipeline: str, artifact: Any) -> None:
    with open(os.path.join(storage.local_copy(artifact.uri), 'drift.json')) as f:
        report = json.load(f)
    labels = {'pipeline': pipeline, 'version': str(report.get('version'))}
    g.set('sluice_drift_served_rows', 'Served rows in the request logs compared with the training data.',
          report.get('served_rows', 0), **labels)
    g.set('sluice_drift_judged', 'Whether there were enough served rows to judge drift (1) or not (0).',
          int(bool(report.get('judged'))), **labels)
    if report.get('judged'):
        g.set('sluice_drift_anomalies', 'Anomalies of the served rows against the schema.',
              len(report.get('anomalies') or []), **labels)
        for s in report.get('skews') or []:
            g.set('sluice_drift_skew', "A feature's skew from training (TFDV's comparator).", s['value'], **labels,
                  feature=s['feature'], measure=s['measure'])
            g.set('sluice_drift_threshold', "The threshold of a feature's skew.", s['threshold'], **labels,
                  feature=s['feature'], measure=s['measure'])


def _bytes(path: str) -> int:
    """The bytes of the files under ``path`` (as ``os.walk`` finds them: symbolic links to files
    counted, to directories not followed)."""
    if storage.is_remote(path):
        return storage.size(path)
    try:
        entries = os.scandir(path)
    except OSError:  # as os.walk: a directory that cannot be listed adds nothing
        return 0
    total = 0
    with entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                total += _bytes(entry.path)
            elif entry.is_file():
                total += entry.stat().st_size
    return total


def _overall_metrics(blessing: Any) -> dict[str, dict]:
    try:
        with open(os.path.join(storage.local_copy(blessing.uri), 'reasons.json')) as f:
            return json.load(f).get('overall_metrics') or {}
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return {}


def last_success(store: MetadataStore, pipeline: str, run: RunSummary | None = None,
                 newest: Newest | None = None) -> float | None:
    """The end of the pipeline's latest COMPLETE run (the one started last; Unix time), or None.
    ``run``, one of its runs already read, is not read again. The store's runs are read newest first
    and only until a COMPLETE one: after a run that just ended COMPLETE, not at all beyond the
    ``newest`` contexts already read."""
    for found_context, found_pipeline in _runs_newest_first(store, newest):
        if found_pipeline != pipeline:
            continue
        found = run if run is not None and found_context.name == run.run_id else \
            store.run(found_context.name, properties=())
        if found.state == 'COMPLETE':
            return max([ex.update_time for ex in found.executions] or [found.create_time])
    return None


def _runs_newest_first(store: MetadataStore, newest: Newest | None = None,
                       first_page: int = 2) -> Iterator[tuple[Any, Any]]:
    """Every run context in the store (all pipelines) with its pipeline's name, newest first, as
    ``MetadataStore.runs_newest_first`` orders them (creation time, then name), read only as far as
    the caller takes them, however long the store's history: first the runs among the ``newest``
    contexts, then the older ones with filter queries, a page at a time (the first of ``first_page``
    runs, each next one four times larger). The oldest creation time read is read again with the next
    page, so runs created in the same millisecond keep their order."""
    from ml_metadata.metadata_store import ListOptions, OrderByField

    def ordered(contexts: list) -> Iterator[tuple[Any, Any]]:
        for context in sorted(contexts, key=lambda c: (c.create_time_since_epoch, c.name), reverse=True):
            name = context.custom_properties.get('pipeline_name')
            yield context, value_of(name) if name is not None else None

    bound = None
    if newest is not None and newest.run is not None:
        runs = [c for c in newest.contexts if c.type_id == newest.run.type_id]
        if newest.whole:
            yield from ordered(runs)
            return
        bound = min(c.create_time_since_epoch for c in newest.contexts)  # every context after it is here
        yield from ordered([c for c in runs if c.create_time_since_epoch > bound])
    size = first_page
    while True:
        query = f"type = '{PIPELINE_RUN}'" + ('' if bound is None else f' AND create_time_since_epoch <= {bound}')
        options = ListOptions(limit=size, order_by=OrderByField.CREATE_TIME, is_asc=False, filter_query=query)
        page = store.retry(lambda: store.mlmd.get_contexts(list_options=options))  # noqa: B023 - called here
        last = len(page) < size
        oldest = min((c.create_time_since_epoch for c in page), default=None)
        ready = [c for c in page if last or c.create_time_since_epoch > oldest]
        if not ready and not last:  # a whole page created in one millisecond: read a larger one
            size *= 4
            continue
        yield from ordered(ready)
        if last:
            return
        bound, size = oldest, min(size * 4, 256)
