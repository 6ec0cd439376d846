"""Watching runs without reading logs: each run's figures in Prometheus' format (``run_metrics``),
written as a textfile for the node exporter's textfile collector (``--metrics-file`` /
``$SLUICE_METRICS_FILE``) or pushed to a Prometheus Pushgateway (``--pushgateway URL`` /
``$SLUICE_PUSHGATEWAY``: push-add, grouped by ``job="sluice"`` and the pipeline; ``push``) when it
ends, and callbacks with a notice of how it ended, such as a webhook (``notify``). Neither can fail
the run: a problem is said in one line and the run's outcome stands.

``before_run``, ``start_report`` and ``after_run`` are what the orchestration core calls when a run
(or a ``run-node`` task) starts and ends. Every run imports this package (one module: each module
imported costs a cached re-run a little of the 1% watching it may take, bench/observe_overhead.py);
the figures, the push and the callbacks are imported only by a run that uses them (``RunNotice``
and ``Webhook`` from ``notify`` when first named)."""
from __future__ import annotations

import os
from typing import Any, Callable

METRICS_FILE_ENV = 'SLUICE_METRICS_FILE'
PUSHGATEWAY_ENV = 'SLUICE_PUSHGATEWAY'

__all__ = ['METRICS_FILE_ENV', 'PUSHGATEWAY_ENV', 'RunNotice', 'Webhook', 'after_run', 'before_run', 'export_run',
           'publish', 'start_report']


def __getattr__(name: str) -> Any:
    if name in ('RunNotice', 'Webhook'):
        from sluice.observe import notify
        return getattr(notify, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def before_run() -> None:
    """What the end of the run's report can do ahead, while the run works: the Pushgateway's host
    name looked up (``push.resolve_ahead``). Never raises."""
    url = os.environ.get(PUSHGATEWAY_ENV)
    if not url:
        return
    try:
        from sluice.observe.push import resolve_ahead
        resolve_ahead(url)
    except Exception:  # noqa: BLE001 - the push looks it up again, and says what is wrong
        pass


def start_report(store: Any, run_id: str) -> Callable[[], list[str]]:
    """The run's figures exported up to the Pushgateway's answer (``start_export``), for the
    caller to end with ``after_run(..., report=)`` after work of its own: the runner releases the run's
    lease (a store write) while the Pushgateway takes the push in. Never raises."""
    try:
        return start_export(store, run_id)
    except Exception as e:  # noqa: BLE001 - watching a run is never a reason to fail it
        said = [f'the metrics of run {run_id} could not be exported: {type(e).__name__}: {e}']
        return lambda: said


def after_run(pipeline: Any, store: Any, result: Any, say: Callable[[str], None], ended: bool = True,
              failed: bool | None = None, report: Callable[[], list[str]] | None = None) -> None:
    """The figures of ``result``'s run exported (``report``: what ``start_report`` started, ended
    here), and the pipeline's callbacks for its outcome called (``on_success`` when it ended COMPLETE,
    ``on_failure`` when a node FAILED); problems are said, never raised. A run-node task: ``ended``
    (whether it ended the run) and ``failed`` (whether its own node failed: the notice is sent once,
    by that task)."""
    try:
        problems = report() if report is not None else export_run(store, result.run_id)
        if failed is None:
            failed = any(n.state == 'FAILED' for n in result.nodes.values())
        # getattr: a pipeline stored with its run before callbacks existed has neither list
        callbacks = getattr(pipeline, 'on_failure', []) if failed else \
            getattr(pipeline, 'on_success', []) if ended and result.state == 'COMPLETE' else []
        if callbacks:
            from sluice.observe.notify import call_back, notice_of
            problems += call_back(list(callbacks), notice_of(result, pipeline.name))
    except Exception as e:  # noqa: BLE001 - watching a run is never a reason to fail it
        problems = [f'the end of run {result.run_id} could not be reported: {type(e).__name__}: {e}']
    for problem in problems:
        say(f'Note: {problem} (the run is not affected).')


def _nothing() -> list[str]:
    return []


def export_run(store: Any, run_id: str, metrics_file: str | None = None,
               pushgateway: str | None = None) -> list[str]:
    """Writes and pushes the run's figures where configured; returns what went wrong, in words."""
    return start_export(store, run_id, metrics_file, pushgateway)()


def start_export(store: Any, run_id: str, metrics_file: str | None = None,
                 pushgateway: str | None = None) -> Callable[[], list[str]]:
    """``export_run`` up to the Pushgateway's answer: the figures read, written and sent; returns the
    call that waits for the answer and returns what went wrong, in words."""
    metrics_file = metrics_file or os.environ.get(METRICS_FILE_ENV) or None
    pushgateway = pushgateway or os.environ.get(PUSHGATEWAY_ENV) or None
    if not (metrics_file or pushgateway):
        return _nothing
    from sluice.observe.run_metrics import run_figures  # only when the figures go somewhere
    try:
        figures, run = run_figures(store, run_id)
    except Exception as e:  # noqa: BLE001 - figures are no reason to fail a finished run
        said = [f'the metrics of run {run_id} could not be read from the store: {type(e).__name__}: {e}']
        return lambda: said
    return _publish(figures, run.pipeline_name, metrics_file, pushgateway)


def publish(figures, pipeline: str, metrics_file: str | None = None, pushgateway: str | None = None,
            suffix: str = '') -> list[str]:
    """Writes ``figures`` (``run_metrics.Gauges``, or a prometheus_client ``CollectorRegistry``) to the
    textfile and pushes them to the Pushgateway given (else the ones the environment names); returns
    what went wrong, in words. ``suffix`` is added to the file's name (``{pipeline}-drift.prom``:
    another writer's figures never replace a run's). The textfile is written without
    prometheus_client (``run_metrics.Gauges.text``), and pushed without it too."""
    return _publish(figures, pipeline, metrics_file, pushgateway, suffix)()


def _publish(figures, pipeline: str, metrics_file: str | None = None, pushgateway: str | None = None,
             suffix: str = '') -> Callable[[], list[str]]:
    """``publish`` up to the Pushgateway's answer (``push.send``)."""
    from sluice.observe.run_metrics import Gauges, write_textfile

    metrics_file = metrics_file or os.environ.get(METRICS_FILE_ENV) or None
    pushgateway = pushgateway or os.environ.get(PUSHGATEWAY_ENV) or None
    problems: list[str] = []
    if not (metrics_file or pushgateway):
        return _nothing
    if isinstance(figures, Gauges):
        text = figures.text()
    else:  # a prometheus_client registry (drift's figures)
        from prometheus_client import generate_latest
        text = generate_latest(figures).decode('utf-8')
    answer = _nothing
    if pushgateway:  # sent first: the Pushgateway takes it in while the file is written
        from sluice.observe.push import send
        answer = send(text, pipeline, pushgateway)
    if metrics_file:
        path = metrics_file.replace('{pipeline}', pipeline)
        if suffix:
            root, ext = os.path.splitext(path)
            path = root + suffix + ext
        try:
            try:
                write_textfile(path, text)  # a temporary file renamed into place
            except FileNotFoundError:  # no directory yet: made on first use
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
                write_textfile(path, text)
        except OSError as e:
            problems.append(f'the metrics file {path} could not be written: {e}')
    return lambda: problems + answer()
