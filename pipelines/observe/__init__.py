"""Watching runs without reading logs: each run's figures in Prometheus' format (``run_metrics``),
written as a textfile or pushed to a Pushgateway when it ends (``export``), and callbacks with a
notice of how it ended, such as a webhook (``notify``). ``before_run`` and ``after_run`` are what the
orchestration core calls when a run (or a ``run-node`` task) starts and ends. ``RunNotice`` and
``Webhook`` are imported from ``notify`` when first named (every run imports this package; few have
callbacks)."""
from __future__ import annotations

from typing import Any, Callable

import os

from sluice.observe.export import PUSHGATEWAY_ENV, export_run, start_export

__all__ = ['RunNotice', 'Webhook', 'after_run', 'before_run', 'export_run', 'start_report']


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
    """The run's figures exported up to the Pushgateway's answer (``export.start_export``), for the
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
