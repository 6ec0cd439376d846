"""Being told how a run ended: ``Pipeline(on_failure=[...], on_success=[...])`` callbacks, called with
a ``RunNotice``, and ``Webhook(url)``, a callback that posts the notice as JSON.

A callback never changes the run's outcome: one that raises is said in one line and the others are
still called. ``Webhook`` retries a failed post (no answer, or a 5xx or 429 status) with backoff and
then gives up with a warning; it never raises.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import shlex
import time
from typing import Any, Callable

from sluice.observe.push import where

logger = logging.getLogger('sluice.observe')


@dataclasses.dataclass
class RunNotice:
    """How a run ended: its state, its nodes' states, what failed and why, and how to go on."""
    pipeline: str
    run_id: str
    state: str
    nodes: dict[str, str]
    failed: list[dict[str, str]]
    resume_command: str
    metadata: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def notice_of(result: Any, pipeline: str) -> RunNotice:
    """The notice of a runner's RunResult (or of a run-node's run, read back as one)."""
    failed = [{'node': n.node_id, 'error': n.error or ''} for n in result.nodes.values() if n.state == 'FAILED']
    command = (f'sluice resume {result.run_id} --metadata {shlex.quote(result.metadata)}'
               if result.state != 'COMPLETE' else '')
    return RunNotice(pipeline, result.run_id, result.state, {k: n.state for k, n in result.nodes.items()}, failed,
                     command, result.metadata)


def call_back(callbacks: list[Callable[[RunNotice], Any]], notice: RunNotice) -> list[str]:
    """Calls each callback with the notice; returns what went wrong, in words."""
    problems = []
    for callback in callbacks:
        try:
            callback(notice)
        except Exception as e:  # noqa: BLE001 - a notifier cannot change how the run ended
            problems.append(f'the callback {getattr(callback, "__name__", callback)!r} raised {type(e).__name__}: {e}')
    return problems


def _opener() -> Any:
    """urllib's opener without redirects: urllib would turn the POST into a GET without its body and
    carry the headers (a token) to wherever it points. (urllib.request is imported only here: a
    run that sends no notice does not pay for it.)"""
    import urllib.request

    class NoRedirects(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    return urllib.request.build_opener(NoRedirects)


class Webhook:
    """Posts a RunNotice as JSON to ``url``; retries ``attempts`` times in all, waiting ``delay``
    seconds doubling between tries; ``headers`` are added to the request (e.g. an authorization
    header read from the environment by the pipeline file: it is never logged)."""

    def __init__(self, url: str, attempts: int = 4, delay: float = 1.0, timeout: float = 10.0,
                 headers: dict[str, str] | None = None):
        if attempts < 1:
            raise ValueError(f'Webhook(attempts={attempts}): at least one attempt')
        self.url, self.attempts, self.delay, self.timeout = url, attempts, delay, timeout
        self.headers = dict(headers or {})
        self.__name__ = f'Webhook({where(url)})'

    def __call__(self, notice: RunNotice) -> bool:
        body = json.dumps(notice.to_json()).encode()
        wait, why = self.delay, ''
        for attempt in range(1, self.attempts + 1):
            retry, why = self._post(body)
            if not why:
                return True
            if not retry:
                logger.warning('Webhook %s: %s; not retried (the receiver refused the request)', where(self.url), why)
                return False
            if attempt < self.attempts:
                logger.warning('Webhook %s: %s; trying again in %.1f s', where(self.url), why, wait)
                time.sleep(wait)
                wait *= 2
        logger.warning('Webhook %s: %s; gave up after %d attempts (the run is not affected)', where(self.url), why,
                       self.attempts)
        return False

    def _post(self, body: bytes) -> tuple[bool, str]:
        """(whether to try again, why it failed): why is '' when the post was delivered."""
        import urllib.error
        import urllib.request

        request = urllib.request.Request(self.url, data=body, method='POST',
                                         headers={'Content-Type': 'application/json', **self.headers})
        try:
            with _opener().open(request, timeout=self.timeout) as response:
                response.read()
            return False, ''
        except urllib.error.HTTPError as e:
            e.close()
            if 300 <= e.code < 400:
                return False, f'answered {e.code}, a redirect (not followed: give the URL it points to)'
            return e.code >= 500 or e.code == 429, f'answered {e.code}'
        except OSError as e:
            return True, f'no answer ({type(e).__name__}: {getattr(e, "reason", e)})'
