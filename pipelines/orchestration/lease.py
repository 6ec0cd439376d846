"""A run's lease: which process drives it, recorded in ML-Metadata.

One live process drives a run at a time. Its lease is a context ``<run id>@<epoch>`` holding the
holder's identity (pid, host, boot id, pid namespace: ``process_identity``), command and heartbeat.
Another process takes the run over only when the holder is gone, silent, or when told to
(``--take-over``), by creating epoch + 1: the database's unique context names make that a
compare-and-swap, so two processes can never both take it. A holder whose lease was taken over can
publish nothing more (see ``MetadataStore.publish_execution``).

Gone: on this machine and in this pid namespace, its pid no longer runs. Silent: no heartbeat for
``$SLUICE_LEASE_SECONDS`` (default 60 s). Heartbeat times are written by the holder's clock, so
their age is read off that clock only on the holder's own machine (same host and boot id); a holder
on another machine is silent when its heartbeat has not changed for that long as timed here (a
monotonic clock), so a clock skew between machines can neither take a live holder over nor keep a
dead one.
"""
from __future__ import annotations

import os
import shlex
import threading
import time

from sluice.metadata.records import (LeaseConflict, LeaseRecord, MetadataStoreError, process_identity, process_start,
                                     same_machine, same_pid_space)
from sluice.metadata.store import MetadataStore

LEASE_SECONDS_ENV = 'SLUICE_LEASE_SECONDS'
DEFAULT_LEASE_SECONDS = 60.0


def lease_seconds() -> float:
    """How long a lease holder may stay silent before others may take the run over (default 60 s,
    ``$SLUICE_LEASE_SECONDS``); the holder beats four times in that period."""
    try:
        return float(os.environ.get(LEASE_SECONDS_ENV, DEFAULT_LEASE_SECONDS))
    except ValueError:
        return DEFAULT_LEASE_SECONDS


class LeaseLost(RuntimeError):
    """This process no longer holds the run's lease (another process took the run over)."""


class LeaseHeld(MetadataStoreError):
    """Another live process drives this run; the message names it and says how to wait or take over."""


def process_gone(owner: dict) -> str | None:
    """'its process (pid P on H) is gone' when that process shares this machine and pid namespace and
    no longer runs (or its pid now belongs to a later process), else None (alive, or elsewhere:
    unknown here)."""
    pid, host = owner.get('pid'), owner.get('host')
    recorded_before_identities = 'boot_id' not in owner and host == process_identity()['host']
    if not isinstance(pid, int) or not (same_pid_space(owner) or recorded_before_identities):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return f'its process (pid {pid} on {host}) is gone'
    except PermissionError:
        pass
    if owner.get('pid_start') and process_start(pid) != owner['pid_start']:
        return f'its process (pid {pid} on {host}) is gone'
    return None


def holder_gone(record: LeaseRecord, now: float | None = None) -> str | None:
    """Why the holder of a lease no longer drives its run (released, process gone, silent), or None if
    it is alive or, on another machine, not known here to be gone (``watch_silence`` finds out)."""
    if record.released:
        return f"released by {record.owner.get('command', 'its holder')} (pid {record.owner.get('pid')})"
    gone = process_gone(record.owner)
    if gone or not same_machine(record.owner):
        return gone
    silent = (time.time() if now is None else now) - record.heartbeat
    if silent > lease_seconds():
        return (f"no heartbeat from pid {record.owner.get('pid')} on {record.owner.get('host')} for {silent:.0f}s "
                f'(limit {lease_seconds():.0f}s)')
    return None


def earlier_attempt(record: LeaseRecord, attempt: int | None) -> str | None:
    """Why the holder is over when it was an earlier try of this task, else None."""
    theirs = record.owner.get('attempt')
    if isinstance(theirs, int) and attempt is not None and attempt > theirs:
        return (f"it was attempt {theirs} of this task (pid {record.owner.get('pid')} on {record.owner.get('host')}); "
                f'this is attempt {attempt}')
    return None


def watch_silence(store: MetadataStore, record: LeaseRecord) -> str | None:
    """For a holder on another machine: watch its heartbeat for up to one lease period on this
    machine's monotonic clock. The reason it is silent, or None once it beats, is released or the
    lease changes hands (then the caller looks again)."""
    limit = lease_seconds()
    started = time.monotonic()
    while time.monotonic() - started <= limit:
        time.sleep(min(max(limit / 16, 0.05), 2.0))
        now = store.lease_latest(record.scope)
        if now is None or now.epoch != record.epoch or now.heartbeat != record.heartbeat or now.released:
            return None
    return (f"no heartbeat from pid {record.owner.get('pid')} on {record.owner.get('host')} for "
            f'{time.monotonic() - started:.0f}s as timed here (limit {limit:.0f}s)')


class Lease:
    """This process's hold on a run (``scope`` = the run id). ``acquire`` takes it or raises
    LeaseHeld; while held, a daemon thread refreshes its heartbeat. ``check()`` raises LeaseLost once
    another process has taken the run over."""

    def __init__(self, store: MetadataStore, record: LeaseRecord, beat: bool = True) -> None:
        self.store, self.record = store, record
        self.lost_to = ''
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if beat:
            self._thread = threading.Thread(target=self._beat, name=f'sluice-lease-{record.name}', daemon=True)
            self._thread.start()

    @property
    def name(self) -> str:
        return self.record.name

    @classmethod
    def acquire(cls, store: MetadataStore, scope: str, command: str, take_over: bool = False,
                attempt: int | None = None) -> Lease:
        """``attempt``: the orchestrator's try number of this task (``run-node --attempt``); a holder
        recorded with an earlier try of the same task is over (the orchestrator retries only after it
        ended or was declared dead), so it is taken over at once, wherever it ran."""
        owner = {**process_identity(), 'command': command, 'started': time.time()}
        if attempt is not None:
            owner['attempt'] = attempt
        for _ in range(20):
            latest = store.lease_latest(scope)
            if latest is not None and not take_over:
                why = holder_gone(latest) or earlier_attempt(latest, attempt)
                if why is None and not same_machine(latest.owner):
                    why = watch_silence(store, latest)
                    now = store.lease_latest(scope) if why is None else latest
                    if why is None and (now is None or now.epoch != latest.epoch or now.released):
                        continue  # the lease changed hands or was released: judge again
                if why is None:
                    raise LeaseHeld(held_message(store, latest, scope))
            try:
                record = store.lease_create(scope, (latest.epoch if latest else 0) + 1, owner)
            except LeaseConflict:  # another process took it at the same moment: look again
                continue
            lease = cls(store, record)
            lease.previous = latest  # type: ignore[attr-defined]
            return lease
        if latest is not None and holder_gone(latest) is None and not take_over:
            raise LeaseHeld(held_message(store, latest, scope))
        raise LeaseHeld(f'Run {scope}: could not take its lease; other processes keep taking it.')

    @classmethod
    def attach(cls, store: MetadataStore, name: str) -> Lease:
        """The lease ``name`` as seen from a worker process of its holder: checked, never beaten."""
        scope, _, epoch = name.rpartition('@')
        record = LeaseRecord(id=0, scope=scope, epoch=int(epoch), owner={}, heartbeat=0.0, released=False)
        return cls(store, record, beat=False)

    def _beat(self) -> None:
        every = max(lease_seconds() / 4, 0.05)
        while not self._stop.wait(every):
            try:
                if self.store.lease_superseded(self.name):
                    self.lost_to = self.store.describe_lease_holder(self.name)
                    return
                self.store.lease_update(self.record)
            except Exception:  # a missed beat must never break the run; silence is what others see
                pass

    def check(self) -> None:
        """Raise LeaseLost if another process has taken the run over."""
        if not self.lost_to and self.store.lease_superseded(self.name):
            self.lost_to = self.store.describe_lease_holder(self.name)
        if self.lost_to:
            raise LeaseLost(f'the run was taken over by {self.lost_to}; this process stops and publishes nothing more')

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            if not self.lost_to and not self.store.lease_superseded(self.name):
                self.store.lease_update(self.record, released=True)


def held_message(store: MetadataStore, latest: LeaseRecord, scope: str) -> str:
    """Who holds the lease on ``scope``, since when, and how to wait or take over."""
    o = latest.owner
    beat = (f'last heartbeat {time.time() - latest.heartbeat:.0f}s ago' if same_machine(o) else
            f"heartbeat still changing; its clock is {o.get('host')}'s")
    return (f"Run {scope} is being driven by another process: sluice {o.get('command')}, pid "
            f"{o.get('pid')} on {o.get('host')}, since {time.strftime('%H:%M:%S', time.localtime(o.get('started', 0)))}"
            f" ({beat}). Wait for it to finish (sluice show {scope.split('/')[0]} --metadata {shlex.quote(store.url)}), or "
            f"stop it (kill {o.get('pid')} on {o.get('host')}); a holder that stays silent for "
            f'{lease_seconds():.0f}s is taken over automatically, and --take-over takes it now '
            '(its unfinished work is then abandoned and can no longer be published).')
