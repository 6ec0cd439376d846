"""What every part of the store builds on: the ML-Metadata types Sluice registers (artifact types,
execution types named after component types, its context types), contexts found or created by
name, and the conversions between ML-Metadata's protos and Sluice's artifacts and records.
"""
from __future__ import annotations

from typing import Any, Collection, Sequence

from ml_metadata import errors as mlmd_errors
from ml_metadata.proto import metadata_store_pb2 as pb

from sluice.metadata.artifact import STANDARD_TYPES, Artifact
from sluice.metadata.connection import Connection
from sluice.metadata.records import (LEASE, NODE, PIPELINE, PIPELINE_RUN, SETTLEMENT, ExecutionRecord,
                                     MetadataStoreError, set_value, value_of)


def _type_key(kind: str, name: str) -> str:
    """The external id Sluice gives a type it registers. ML-Metadata's type table has no unique
    constraint on names, only on external ids: processes registering a type at the same moment (seen
    on PostgreSQL and on SQLite) each inserted one, and what each then wrote went under its own copy
    (runs of a new shared store missing from ``sluice runs``). With the id, the second insert fails on the
    constraint, is retried (``Connection.retry``, ``creating``) and finds the first. A type that a
    store already has by name is returned as it is, with or without the id."""
    return f'sluice:{kind}:{name}'


CONTEXT_TYPES = (PIPELINE, PIPELINE_RUN, NODE, LEASE, SETTLEMENT)


def _artifact_type(cls: type[Artifact]) -> pb.ArtifactType:
    """The ML-Metadata type of the artifact class ``cls``."""
    t = pb.ArtifactType(name=cls.type_name(), external_id=_type_key('artifact', cls.type_name()))
    for prop, kind in cls.all_properties().items():
        t.properties[prop] = {int: pb.INT, float: pb.DOUBLE, str: pb.STRING}[kind]
    return t


class StoreBase(Connection):
    """A connection with Sluice's types registered; the parts of the store (leases, lineage, runs and
    executions) are written on top of it."""

    def __init__(self, url: str | None = None, create: bool = True) -> None:
        super().__init__(url, create)
        self._type_ids: dict[str, int] = {}
        self._type_names: dict[int, str] = {}
        self._execution_type_names: dict[int, str] = {}  # an id's type never changes its name
        # Contexts whose name fixes them for good (no properties; a context is never deleted): found once.
        self._fixed_contexts: dict[tuple[str, str], pb.Context] = {}
        # The types already in the store, read in two calls: registering each one is a write apiece.
        self._stored_types: dict[str, dict[str, Any] | None] = {
            'artifact': {t.name: t for t in self.retry(lambda: self._store.get_artifact_types())},
            'execution': None}  # read when first needed
        contexts = {t.name: t.id for t in self.retry(lambda: self._store.get_context_types())}
        for name in CONTEXT_TYPES:
            if name in contexts:
                self._type_ids[f'context:{name}'] = contexts[name]
        self._put_missing_types()
        for cls in STANDARD_TYPES:
            self.artifact_type_id(cls)

    # -- types --------------------------------------------------------------------------------
    def _put_missing_types(self) -> None:
        """Register the standard artifact types and the context types the store lacks in one
        transaction (ML-Metadata's PutTypes), not a write apiece: a new store's first connection made
        23 of them."""
        artifacts = [t for t in map(_artifact_type, STANDARD_TYPES) if not self._has(t)]
        contexts = [pb.ContextType(name=name, external_id=_type_key('context', name))
                    for name in CONTEXT_TYPES if f'context:{name}' not in self._type_ids]
        if not artifacts and not contexts:
            return
        from ml_metadata.proto import metadata_store_service_pb2 as service

        if not hasattr(self._store, '_call'):  # PutTypes is no public call of ml-metadata's Python API
            return  # each type is put on its own below
        request = service.PutTypesRequest(artifact_types=artifacts, context_types=contexts, can_add_fields=True)
        response = service.PutTypesResponse()
        self.retry(lambda: self._store._call('PutTypes', request, response), creating=True)
        for t, type_id in zip(artifacts, response.artifact_type_ids):
            self._type_ids[t.name], self._type_names[type_id] = type_id, t.name
        for t, type_id in zip(contexts, response.context_type_ids):
            self._type_ids[f'context:{t.name}'] = type_id

    def _has(self, t: pb.ArtifactType) -> bool:
        """Whether the store has the artifact type ``t`` with every property it declares."""
        stored = self._stored_type('artifact', t.name)
        return stored is not None and all(stored.properties.get(k) == v for k, v in t.properties.items())

    def _stored_type(self, kind: str, name: str) -> Any:
        """The type of that kind and name as the store had it when first asked, or None: a type
        already registered costs no write (each is a transaction, a few milliseconds on SQLite)."""
        if self._stored_types[kind] is None:
            read = {'artifact': self._store.get_artifact_types, 'execution': self._store.get_execution_types}[kind]
            self._stored_types[kind] = {t.name: t for t in self.retry(read)}
        return self._stored_types[kind].get(name)

    def artifact_type_id(self, cls: type[Artifact]) -> int:
        """The id of ``cls``'s type, registered (or given the properties it lacks) if needed."""
        name = cls.type_name()
        if name not in self._type_ids:
            t = _artifact_type(cls)
            if self._has(t):
                type_id = self._stored_type('artifact', name).id
            else:
                type_id = self.retry(lambda: self._store.put_artifact_type(t, can_add_fields=True), creating=True)
            self._type_ids[name], self._type_names[type_id] = type_id, name
        return self._type_ids[name]

    def execution_type_id(self, component_type: str) -> int:
        key = f'execution:{component_type}'
        if key not in self._type_ids:
            stored = self._stored_type('execution', component_type)
            if stored is not None:  # an execution type has no properties: the stored one is it
                self._type_ids[key] = stored.id
            else:
                t = pb.ExecutionType(name=component_type, external_id=_type_key('execution', component_type))
                self._type_ids[key] = self.retry(lambda: self._store.put_execution_type(t, can_add_fields=True),
                                                 creating=True)
        return self._type_ids[key]

    def _context_type_id(self, name: str) -> int:
        key = f'context:{name}'
        if key not in self._type_ids:
            t = pb.ContextType(name=name, external_id=_type_key('context', name))
            self._type_ids[key] = self.retry(lambda: self._store.put_context_type(t, can_add_fields=True),
                                             creating=True)
        return self._type_ids[key]

    def _artifact_type_name(self, type_id: int) -> str:
        if type_id not in self._type_names:
            [t] = self.retry(lambda: self._store.get_artifact_types_by_id([type_id]))
            self._type_names[type_id] = t.name
        return self._type_names[type_id]

    # -- contexts -----------------------------------------------------------------------------
    def context(self, type_name: str, name: str, properties: dict[str, Any] | None = None,
                create: bool = True) -> pb.Context | None:
        """The context of this type and name; created (with ``properties``) if missing and ``create``.
        Safe when several processes create it at once."""
        fixed = self._fixed_contexts.get((type_name, name))
        if fixed is not None:
            copy = pb.Context()
            copy.CopyFrom(fixed)
            return copy
        ctx = self.retry(lambda: self._store.get_context_by_type_and_name(type_name, name))
        if ctx is not None or not create:
            if ctx is not None and type_name in (PIPELINE, NODE) and not ctx.custom_properties:
                self._fixed_contexts[type_name, name] = ctx
            return ctx
        ctx = pb.Context(type_id=self._context_type_id(type_name), name=name)
        for k, v in (properties or {}).items():
            set_value(ctx.custom_properties, k, v)
        try:
            [ctx.id] = self.retry(lambda: self._store.put_contexts([ctx]))
        except mlmd_errors.AlreadyExistsError:  # created meanwhile by another process
            ctx = self.retry(lambda: self._store.get_context_by_type_and_name(type_name, name))
        return ctx

    # -- protos <-> records -------------------------------------------------------------------
    def _artifact_proto(self, artifact: Artifact, state: str | None = None) -> pb.Artifact:
        proto = pb.Artifact(type_id=self.artifact_type_id(type(artifact)), uri=artifact.uri)
        if artifact.id is not None:
            proto.id = artifact.id
        proto.state = pb.Artifact.State.Value(state or artifact.state)
        if getattr(artifact, 'external_id', None):
            proto.external_id = artifact.external_id
        for k, v in artifact.properties.items():
            set_value(proto.properties, k, v, declared=True)
        for k, v in artifact.custom_properties.items():
            set_value(proto.custom_properties, k, v)
        return proto

    def _to_artifact(self, proto: pb.Artifact) -> Artifact:
        cls = Artifact.type_class(self._artifact_type_name(proto.type_id))
        a = cls(uri=proto.uri)
        a.id = proto.id
        a.state = pb.Artifact.State.Name(proto.state)
        if proto.external_id:
            a.external_id = proto.external_id
        a.properties = {k: value_of(v) for k, v in proto.properties.items()}
        a.custom_properties = {k: value_of(v) for k, v in proto.custom_properties.items()}
        return a

    def artifacts(self, ids: Sequence[int], types: Collection[str] | None = None) -> list[Artifact]:
        """The artifacts of ``ids`` the store has (of the type names ``types`` only, when given: the
        others are not converted), in the order of ``ids``."""
        protos = self.retry(lambda: self._store.get_artifacts_by_id(list(ids)))
        if types is not None:
            protos = [p for p in protos if self._artifact_type_name(p.type_id) in types]
        by_id = {p.id: self._to_artifact(p) for p in protos}
        return [by_id[i] for i in ids if i in by_id]

    def _get_execution_proto(self, execution_id: int) -> pb.Execution:
        found = self.retry(lambda: self._store.get_executions_by_id([execution_id]))
        if not found:
            raise MetadataStoreError(f'No execution {execution_id} in {self.url}.')
        return found[0]

    def _records(self, protos: Sequence[pb.Execution], with_events: bool = True,
                 properties: Collection[str] | None = None) -> list[ExecutionRecord]:
        """Records of ``protos``; ``properties``: only these of their properties are decoded (with those
        every record has: ``node_id``, ``run_id``, ``cache_key``), else all."""
        type_names = self._execution_type_names
        keys = None if properties is None else {'node_id', 'run_id', 'cache_key', *properties}
        records = []
        for p in protos:
            if p.type_id not in type_names:
                [t] = self.retry(lambda: self._store.get_execution_types_by_id([p.type_id]))
                type_names[p.type_id] = t.name
            cp = p.custom_properties
            props = {k: value_of(v) for k, v in cp.items()} if keys is None else \
                {k: value_of(cp[k]) for k in keys if k in cp}
            records.append(ExecutionRecord(
                id=p.id, component_type=type_names[p.type_id], node_id=props.get('node_id', ''),
                run_id=props.get('run_id', ''), state=pb.Execution.State.Name(p.last_known_state),
                cache_key=props.get('cache_key', ''), create_time=p.create_time_since_epoch / 1000,
                update_time=p.last_update_time_since_epoch / 1000, properties=props))
        if with_events and records:
            events = self.retry(lambda: self._store.get_events_by_execution_ids([r.id for r in records]))
            arts = {a.id: a for a in self.artifacts(sorted({e.artifact_id for e in events}))}
            by_id = {r.id: r for r in records}
            for e in sorted(events, key=lambda e: [s.index for s in e.path.steps if s.HasField('index')]):
                key = next((s.key for s in e.path.steps if s.HasField('key')), '')
                target = by_id[e.execution_id].inputs if e.type == pb.Event.INPUT else by_id[e.execution_id].outputs
                if e.artifact_id in arts:
                    target.setdefault(key, []).append(arts[e.artifact_id])
        return records

    def execution(self, execution_id: int) -> ExecutionRecord:
        return self._records([self._get_execution_proto(execution_id)])[0]
