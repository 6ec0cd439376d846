"""Which nodes run when: every node whose upstream nodes have ended, up to ``parallel`` at once.

Each node runs in a thread of this process through ``Session.node`` (its lease, fencing, retries,
timeouts, progress and span as when nodes run one at a time), so two nodes the DAG does not order,
such as CsvExampleGen and ImportSchemaGen, or ExampleValidator and Transform, overlap. A node is
started as soon as its last upstream node ends, in the pipeline's (topological) order among those
ready; with ``parallel=1`` that is the pipeline's order, one at a time, in this thread.

Ctrl-C arrives in this thread while nodes run in others: the executions in flight are ended
CANCELED at once (fenced: what their threads do afterwards cannot be published) and the interrupt
goes on, ending the process as before; ``sluice resume`` runs those nodes again. A kill leaves them
RUNNING under a dead holder, which resume settles as it does for one node.
"""
from __future__ import annotations

import ast
import functools
import os
import queue
import threading
from typing import Any

from sluice.orchestration.core import Session
from sluice.orchestration.launcher import NodeResult


def available_cores() -> int:
    """The cores this process may run on (its affinity), the default bound of nodes at once."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def run_nodes(session: Session, parallel: int | None = None) -> dict[str, NodeResult]:
    """Run (or reuse, or skip) every node of the session's pipeline; the results by node id."""
    parallel = available_cores() if parallel is None else parallel
    components = session.pipeline.components
    results: dict[str, NodeResult] = {}
    if parallel <= 1 or len(components) <= 1:
        for component in components:
            results[component.id] = session.node(component, [results[u.id] for u in component.upstream])
        return results

    serialise_ast_parse()
    session.parallel = parallel
    done: queue.Queue[tuple[Any, NodeResult | None, BaseException | None]] = queue.Queue()

    def work(component: Any, upstream: list[NodeResult]) -> None:
        try:
            done.put((component, session.node(component, upstream), None))
        except BaseException as e:  # noqa: BLE001 - handed to the scheduling thread, which raises it
            done.put((component, None, e))

    waiting, running, error = list(components), 0, None
    try:
        while waiting or running:
            if error is None:
                for component in [c for c in waiting if all(u.id in results for u in c.upstream)]:
                    if running >= parallel:
                        break
                    waiting.remove(component)
                    running += 1
                    threading.Thread(target=work, args=(component, [results[u.id] for u in component.upstream]),
                                     name=f'sluice-node-{component.id}', daemon=True).start()
            if not running:
                break
            component, result, raised = done.get()
            running -= 1
            if raised is not None:
                error = error or raised  # start nothing more; let the nodes in flight end
            else:
                results[component.id] = result
    except KeyboardInterrupt:
        session.cancel_in_flight('interrupted by the user')
        raise
    if error is not None:
        raise error
    return results


_AST_LOCK = threading.RLock()


def serialise_ast_parse() -> None:
    """Make ``ast.parse`` one call at a time in this process. CPython 3.11 keeps the AST builder's
    recursion depth in state shared by all threads, so two threads parsing at once can fail with
    "SystemError: AST constructor recursion depth mismatch" (python/cpython#106905; seen here when two
    nodes' drivers computed their cache keys at once). Sluice's cache key and libraries that run in
    nodes (TensorFlow's AutoGraph, through gast) parse through ``ast.parse``."""
    if getattr(ast.parse, 'sluice_serialised', False):
        return
    original = ast.parse

    @functools.wraps(original)
    def parse(*args: Any, **kwargs: Any) -> Any:
        with _AST_LOCK:
            return original(*args, **kwargs)

    parse.sluice_serialised = True  # type: ignore[attr-defined]
    ast.parse = parse
