"""A run's lease: which process drives it, recorded in ML-Metadata.

One live process drives a run at a time. Its lease is a context ``<run id>@<epoch>`` holding the
holder's pid, host, command and heartbeat. Another process takes the run over only when the holder
is gone (same host: its pid no longer runs) or silent (no heartbeat for ``$SLUICE_LEASE_SECONDS``,
default 60 s), or when told to (``--take-over``), by creating epoch + 1: the database's unique
context names make that a compare-and-swap, so two processes can never both take it. A holder whose
lease was taken over can publish nothing more (see ``MetadataStore.publish_execution``).
"""
from __future__ import annotations

import os
import socket
import threading
import time

from sluice.metadata.records import LeaseConflict, LeaseRecord, MetadataStoreError, process_start
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


def process_gone(pid: object, host: object, pid_start: str) -> str | None:
    """'its process (pid P on H) is gone' when that process is on this host and no longer runs (or
    its pid now belongs to a later process), else None (alive, or on another host: unknown here)."""
    if host != socket.gethostname() or not isinstance(pid, int):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return f'its process (pid {pid} on {host}) is gone'
    except PermissionError:
        pass
    if pid_start and process_start(pid) != pid_start:
        return f'its process (pid {pid} on {host}) is gone'
    return None


def holder_gone(record: LeaseRecord, now: float | None = None) -> str | None:
    """Why the holder of a lease no longer drives its run (released, process gone, silent), or None
    if it is alive."""
    now = time.time() if now is None else now
    if record.released:
        return f"released by {record.owner.get('command', 'its holder')} (pid {record.owner.get('pid')})"
    pid, host = record.owner.get('pid'), record.owner.get('host')
    gone = process_gone(pid, host, record.owner.get('pid_start') or '')
    if gone:
        return gone
    silent = now - record.heartbeat
    if silent > lease_seconds():
        return f'no heartbeat from pid {pid} on {host} for {silent:.0f}s (limit {lease_seconds():.0f}s)'
    return None


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
    def acquire(cls, store: MetadataStore, scope: str, command: str, take_over: bool = False) -> Lease:
        owner = {'pid': os.getpid(), 'host': socket.gethostname(), 'pid_start': process_start(os.getpid()),
                 'command': command, 'started': time.time()}
        for _ in range(20):
            latest = store.lease_latest(scope)
            if latest is not None:
                why = holder_gone(latest)
                if why is None and not take_over:
                    o = latest.owner
                    silent = time.time() - latest.heartbeat
                    raise LeaseHeld(
                        f"Run {scope} is being driven by another process: sluice {o.get('command')}, pid "
                        f"{o.get('pid')} on {o.get('host')}, since {time.strftime('%H:%M:%S', time.localtime(o.get('started', 0)))}"
                        f' (last heartbeat {silent:.0f}s ago). Wait for it to finish (sluice show {scope} --metadata {store.url}), or '
                        f"stop it (kill {o.get('pid')} on {o.get('host')}); a holder that stays silent for "
                        f'{lease_seconds():.0f}s is taken over automatically, and --take-over takes it now '
                        '(its unfinished work is then abandoned and can no longer be published).')
            try:
                record = store.lease_create(scope, (latest.epoch if latest else 0) + 1, owner)
            except LeaseConflict:  # another process took it at the same moment: look again
                continue
            lease = cls(store, record)
            lease.previous = latest  # type: ignore[attr-defined]
            return lease
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
