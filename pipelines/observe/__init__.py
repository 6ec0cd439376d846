"""Watching runs without reading logs: each run's figures in Prometheus' format (``run_metrics``),
written as a textfile or pushed to a Pushgateway when it ends (``export``), and callbacks with a
notice of how it ended, such as a webhook (``notify``). ``after_run`` is what the orchestration core
calls when a run (or a ``run-node`` task) ends."""
from __future__ import annotations

from typing import Any, Callable

from sluice.observe.export import export_run
from sluice.observe.notify import RunNotice, Webhook, call_back, notice_of

__all__ = ['RunNotice', 'Webhook', 'after_run', 'export_run']


def after_run(pipeline: Any, store: Any, result: Any, say: Callable[[str], None], ended: bool = True) -> None:
    """The figures of ``result``'s run exported, and the pipeline's callbacks for its outcome called
    (``on_success`` when it ended COMPLETE, ``on_failure`` when a node FAILED); problems are said,
    never raised. ``ended=False``: a run-node task that did not end the run (no ``on_success``)."""
    problems = export_run(store, result.run_id)
    failed = any(n.state == 'FAILED' for n in result.nodes.values())
    callbacks = pipeline.on_failure if failed else pipeline.on_success if ended and result.state == 'COMPLETE' \
        else []
    if callbacks:
        problems += call_back(list(callbacks), notice_of(result, pipeline.name))
    for problem in problems:
        say(f'Note: {problem} (the run is not affected).')
