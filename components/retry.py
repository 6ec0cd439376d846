"""Retry policies: how often a failed node is tried again, and how long to wait in between.

    >>> trainer.with_retry(Retry(attempts=3, delay=1.0, backoff=2.0, max_delay=60.0))
    >>> Pipeline(..., retry=Retry(attempts=2))       # every node without a policy of its own

Attempt n (n >= 2) starts ``min(delay * backoff ** (n - 2), max_delay)`` seconds after attempt n-1
failed. Each attempt is its own execution in the run. Errors that cannot succeed on a second try
are never retried: an exception whose class (or instance) has ``retryable = False``, which every
Sluice error about bad input, bad code or bad wiring has.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Retry:
    """``attempts`` in all (1 = no retry), the first ``delay`` in seconds, multiplied by ``backoff``
    after each further failure, never more than ``max_delay``."""
    attempts: int = 3
    delay: float = 1.0
    backoff: float = 2.0
    max_delay: float = 60.0

    def __post_init__(self) -> None:
        if not isinstance(self.attempts, int) or isinstance(self.attempts, bool) or self.attempts < 1:
            raise ValueError(f'Retry(attempts={self.attempts!r}): attempts counts every try, the first included; '
                             'give an integer of at least 1.')
        for name in ('delay', 'backoff', 'max_delay'):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ValueError(f'Retry({name}={value!r}): give a number of seconds (or a factor) of at least 0.')
        if self.backoff < 1:
            raise ValueError(f'Retry(backoff={self.backoff!r}): the wait is multiplied by backoff after each '
                             'failure; give 1 (constant waits) or more.')

    def wait_before(self, attempt: int) -> float:
        """Seconds to wait before attempt number ``attempt`` (2 for the first retry)."""
        if attempt < 2:
            return 0.0
        return float(min(self.delay * self.backoff ** (attempt - 2), self.max_delay))


def retryable(error: BaseException | type[BaseException] | None) -> bool:
    """Whether a retry could change the outcome: False for errors marked ``retryable = False`` (bad
    input, anomalies, a module file that does not import, a wiring error, a refused push)."""
    if error is None:
        return True
    return bool(getattr(error, 'retryable', True))


def describe(policy: Any) -> str:
    return (f'up to {policy.attempts} attempts, waits from {policy.delay:g}s x{policy.backoff:g} '
            f'up to {policy.max_delay:g}s') if policy else 'no retries'
