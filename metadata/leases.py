"""Leases and fencing in the store. A lease on a scope (a run, or one node of it) is a context per
holder, ``<scope>@<epoch>``: taking it over is creating the next epoch, which the database's unique
context names make a compare-and-swap. Ending an execution is fenced: it must still be RUNNING and
its lease not taken over, and the transaction that ends it creates its settlement context, so it is
ended exactly once. The policy (who may take a lease over, heartbeats) is
``sluice.orchestration.lease``'s.
"""
from __future__ import annotations

import time
from typing import Any

from ml_metadata import errors as mlmd_errors
from ml_metadata.proto import metadata_store_pb2 as pb

from sluice.metadata.base import StoreBase
from sluice.metadata.records import (LEASE, SETTLEMENT, FencingError, LeaseConflict, LeaseRecord, set_value,
                                     value_of)


class LeaseMixin(StoreBase):
    """The leases of runs and the fence around ending an execution."""

    # -- leases -------------------------------------------------------------------------------
    def _lease_record(self, ctx: pb.Context) -> LeaseRecord:
        props = {k: value_of(v) for k, v in ctx.custom_properties.items()}
        scope, _, epoch = ctx.name.rpartition('@')
        return LeaseRecord(id=ctx.id, scope=scope, epoch=int(epoch),
                           owner={k: v for k, v in props.items() if k not in ('heartbeat', 'released')},
                           heartbeat=float(props.get('heartbeat', 0.0)), released=bool(props.get('released', 0)))

    def lease_latest(self, scope: str) -> LeaseRecord | None:
        """The newest holder of the lease on ``scope`` (released or not), or None if never taken."""
        latest = None
        epoch = 1
        while True:
            ctx = self.context(LEASE, f'{scope}@{epoch}', create=False)
            if ctx is None:
                return self._lease_record(latest) if latest is not None else None
            latest, epoch = ctx, epoch + 1

    def lease_record(self, name: str) -> LeaseRecord | None:
        """The holder recorded as ``name`` (``<scope>@<epoch>``), or None."""
        ctx = self.context(LEASE, name, create=False)
        return self._lease_record(ctx) if ctx is not None else None

    def lease_create(self, scope: str, epoch: int, owner: dict[str, Any]) -> LeaseRecord:
        """Become holder number ``epoch`` of the lease on ``scope``; LeaseConflict if another process
        did first (the database's unique context name decides)."""
        ctx = pb.Context(type_id=self._context_type_id(LEASE), name=f'{scope}@{epoch}')
        for k, v in {**owner, 'heartbeat': time.time(), 'released': 0}.items():
            set_value(ctx.custom_properties, k, v)
        try:
            [ctx.id] = self.retry(lambda: self._store.put_contexts([ctx]))
        except mlmd_errors.AlreadyExistsError:
            raise LeaseConflict(f'lease {scope}@{epoch} was taken by another process first') from None
        return self._lease_record(ctx)

    def lease_update(self, record: LeaseRecord, released: bool = False) -> None:
        """Refresh the holder's heartbeat, or mark the lease released. Only the holder writes its own
        context, so this never races with another writer."""
        ctx = self.context(LEASE, record.name, create=False)
        if ctx is None:
            return
        set_value(ctx.custom_properties, 'heartbeat', time.time())
        if released:
            set_value(ctx.custom_properties, 'released', 1)
        self.retry(lambda: self._store.put_contexts([ctx]))

    def lease_superseded(self, name: str) -> bool:
        """Whether a later holder took over the lease ``name`` (``<scope>@<epoch>``)."""
        scope, _, epoch = name.rpartition('@')
        return self.context(LEASE, f'{scope}@{int(epoch) + 1}', create=False) is not None

    def describe_lease_holder(self, name: str) -> str:
        """Who holds the lease of ``name``'s scope now, in words."""
        latest = self.lease_latest(name.rpartition('@')[0])
        if latest is None:
            return 'nobody'
        o = latest.owner
        return f"sluice {o.get('command', '?')}, pid {o.get('pid')} on {o.get('host')}"

    # -- fencing ------------------------------------------------------------------------------
    def check_fence(self, execution_id: int, lease: str | None, action: str = 'publish') -> None:
        """Raise FencingError if ``execution_id`` could not be published (or failed) by ``lease`` now.
        Advisory (the publish itself is the atomic check); used to explain a failure."""
        self._fenced_execution(execution_id, lease, action)

    def _fenced_execution(self, execution_id: int, lease: str | None, action: str) -> pb.Execution:
        ex = self._get_execution_proto(execution_id)
        state = pb.Execution.State.Name(ex.last_known_state)
        if state != 'RUNNING':
            why = _error_message(ex)
            raise FencingError(f'Cannot {action} execution #{execution_id}: it is already {state}'
                               + (f' ({why})' if why else '') + '; its outputs are not published.')
        owner = value_of(ex.custom_properties['lease']) if 'lease' in ex.custom_properties else None
        if lease is not None and owner is not None and owner != lease:
            raise FencingError(f'Cannot {action} execution #{execution_id}: it belongs to lease {owner}, '
                               f'not {lease}.')
        if lease is not None and self.lease_superseded(lease):
            raise FencingError(f'Cannot {action} execution #{execution_id}: the run was taken over by '
                               f'another process ({self.describe_lease_holder(lease)}).')
        return ex

    def _settle(self, ex: pb.Execution, events: list, contexts: list[pb.Context], action: str) -> list[int]:
        """Write the execution's final state together with its settlement context: one transaction,
        which the database refuses if the execution was settled before."""
        settlement = pb.Context(type_id=self._context_type_id(SETTLEMENT), name=str(ex.id))
        try:
            _, ids, _ = self.retry(lambda: self._store.put_execution(ex, events, [*contexts, settlement]))
        except mlmd_errors.AlreadyExistsError:
            now = self._get_execution_proto(ex.id)
            why = _error_message(now)
            raise FencingError(f'Cannot {action} execution #{ex.id}: another process ended it first '
                               f'({pb.Execution.State.Name(now.last_known_state)}{": " + why if why else ""}); '
                               'its outputs are not published.') from None
        return list(ids)


def _error_message(ex: pb.Execution) -> str:
    """The error recorded on an ended execution, or ''."""
    return value_of(ex.custom_properties['error_message']) if 'error_message' in ex.custom_properties else ''
