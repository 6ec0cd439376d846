"""Production in ML-Metadata: the store's identity, push destinations, the models they hold, and the
rollbacks and promotions made with ``sluice rollback`` and ``sluice promote``.

What is in production is decided by the destination itself (see
``sluice.components.production.destination``); the store records what happened, with lineage:

- **store identity**: a UUID created once per store (a context of type ``sluice_store``), written into
  push records so that a model is identified across stores, never by a bare integer id;
- **destinations**: a context of type ``push_destination`` per destination, named by its absolute path
  (or its URL, for one on an object store);
- **destination versions**: a Model artifact per (destination, version, content fingerprint), with
  ``external_id`` ``<destination>@<version>#<fingerprint>`` and the content fingerprint as its cache
  fingerprint, created on first use (the Evaluator's baseline, a rollback's target);
- **rollbacks and promotions**: executions of type ``Rollback`` / ``Promote`` whose INPUT is the model
  and OUTPUT a PushedModel for the new version, attributed to the destination's context and to the
  pipeline the model came from.
"""
from __future__ import annotations

import uuid
from typing import Any

from ml_metadata import errors as mlmd_errors
from ml_metadata.proto import metadata_store_pb2 as pb

from sluice.metadata import storage
from sluice.components.production.destination import inspect_version, location
from sluice.metadata.artifact import Artifact, Model, PushedModel
from sluice.metadata.records import PIPELINE, PIPELINE_RUN, set_value
from sluice.metadata.store import MetadataStore

STORE_IDENTITY, DESTINATION = 'sluice_store', 'push_destination'
IDENTITY_NAME = 'identity'


def store_identity(store: MetadataStore, create: bool = True) -> str | None:
    """This store's UUID (created on first use; the same for every process using the store)."""
    try:
        ctx = store.context(STORE_IDENTITY, IDENTITY_NAME, {'uuid': str(uuid.uuid4())}, create)
    except mlmd_errors.NotFoundError:  # the context type does not exist yet and create=False
        return None
    return ctx.custom_properties['uuid'].string_value if ctx is not None else None


def destination_context(store: MetadataStore, destination: str, create: bool = True) -> pb.Context | None:
    """The ``push_destination`` context of a destination (named by its absolute path or URL)."""
    try:
        return store.context(DESTINATION, location(destination), create=create)
    except mlmd_errors.NotFoundError:
        return None


def version_external_id(destination: str, version: int | str, fingerprint: str) -> str:
    return f'{location(destination)}@{version}#{fingerprint}'


def _find_external(store: MetadataStore, external_id: str) -> Artifact | None:
    try:
        found = store.retry(lambda: store.mlmd.get_artifacts_by_external_ids([external_id]))
    except mlmd_errors.NotFoundError:
        return None
    return store.artifacts([found[0].id])[0] if found else None


def version_artifact(store: MetadataStore, destination: str, version: int | str, fingerprint: str,
                     record: dict | None = None) -> Artifact:
    """The Model artifact standing for ``<destination>/<version>/`` with this content (created on first
    use, then reused): its uri is the version directory, its cache fingerprint the content fingerprint,
    and its custom properties say where the model came from (from the version's push record)."""
    destination = location(destination)
    external_id = version_external_id(destination, version, fingerprint)
    found = _find_external(store, external_id)
    if found is not None:
        return found
    if record is None:  # no record of its own: a copy of another version says where its model came from
        version_now = inspect_version(destination, version)
        if version_now is not None and version_now.fingerprint == fingerprint:
            record = version_now.facts()
    record = record or {}
    model = record.get('model') or {}
    proto = pb.Artifact(type_id=store.artifact_type_id(Model), uri=storage.join(destination, str(version)),
                        external_id=external_id, state=pb.Artifact.LIVE)
    proto.properties['fingerprint'].string_value = fingerprint
    facts: dict[str, Any] = {
        'external_id': external_id, 'destination': destination, 'version': str(version),
        'content_fingerprint': fingerprint, 'push_kind': record.get('kind') or 'hand-pushed',
        'pushed_at': record.get('time') or '', 'source_store_id': model.get('store_id') or '',
        'source_artifact_id': model.get('artifact_id') or 0, 'source_pipeline': model.get('pipeline') or '',
        'source_run_id': model.get('run_id') or ''}
    for k, v in facts.items():
        set_value(proto.custom_properties, k, v if isinstance(v, int) else str(v))
    try:
        [artifact_id] = store.retry(lambda: store.mlmd.put_artifacts([proto]))
    except mlmd_errors.AlreadyExistsError:  # created meanwhile by another process
        again = _find_external(store, external_id)
        if again is None:
            raise
        return again
    ctx = destination_context(store, destination)
    store.retry(lambda: store.mlmd.put_attributions_and_associations(
        [pb.Attribution(artifact_id=artifact_id, context_id=ctx.id)], []))
    [artifact] = store.artifacts([artifact_id])
    artifact.external_id = external_id
    return artifact


def stands_for_version(artifact: Artifact) -> bool:
    """Whether a Model artifact stands for a destination version (made by ``version_artifact``)."""
    return bool(artifact.external_id and artifact.get('content_fingerprint') is not None
                and artifact.get('destination') is not None and artifact.get('source_store_id') is not None)


def model_origin(store: MetadataStore, artifact_id: int) -> dict:
    """Where a Model artifact of this store comes from: store id, artifact id, pipeline, run. For an
    artifact standing for a destination version (an Evaluator's baseline, a rollback's target), the
    model's own origin, from the version's push record (the run that used it as a baseline is not
    where it came from), and which version it is."""
    [artifact] = store.artifacts([artifact_id])
    if stands_for_version(artifact):
        return {'store_id': artifact.get('source_store_id') or None,
                'artifact_id': int(artifact.get('source_artifact_id') or 0) or None,
                'pipeline': artifact.get('source_pipeline') or None, 'run_id': artifact.get('source_run_id') or None,
                'from_version': {'destination': artifact.get('destination'), 'version': int(artifact.get('version')),
                                 'fingerprint': artifact.get('content_fingerprint'),
                                 'kind': artifact.get('push_kind'), 'artifact_id': artifact_id}}
    contexts = store.retry(lambda: store.mlmd.get_contexts_by_artifact(artifact_id))
    names: dict[str, str] = {}
    for ctx in contexts:
        [t] = store.retry(lambda: store.mlmd.get_context_types_by_id([ctx.type_id]))
        names.setdefault(t.name, ctx.name)
    return {'store_id': store_identity(store), 'artifact_id': artifact_id, 'pipeline': names.get(PIPELINE),
            'run_id': names.get(PIPELINE_RUN)}


def record_change(store: MetadataStore, kind: str, destination: str, model: Artifact, version: int,
                  fingerprint: str, record: dict) -> tuple[int, Artifact]:
    """Record a rollback or promotion: an execution of type ``kind`` (``Rollback`` / ``Promote``) with
    INPUT the model put into production and OUTPUT a PushedModel for the new version, attributed to the
    destination's context and to the pipeline the model came from (when it is in this store).
    Returns (execution id, the PushedModel)."""
    destination = location(destination)
    contexts = [destination_context(store, destination)]
    source = record.get('model') or {}
    if source.get('pipeline') and source.get('store_id') == store_identity(store):
        pipeline = store.retry(lambda: store.mlmd.get_context_by_type_and_name(PIPELINE, source['pipeline']))
        if pipeline is not None:
            contexts.append(pipeline)
    ex = pb.Execution(type_id=store.execution_type_id(kind), last_known_state=pb.Execution.COMPLETE)
    facts = {'node_id': kind.lower(), 'destination': destination, 'version': str(version),
             'target_version': str((record.get('target') or {}).get('version') or ''),
             'previous_version': str((record.get('previous') or {}).get('version') or ''),
             'reason': record.get('reason') or '', 'user': (record.get('operator') or {}).get('user', ''),
             'host': (record.get('operator') or {}).get('host', '')}
    for k, v in facts.items():
        set_value(ex.custom_properties, k, v)
    [model_proto] = store.retry(lambda: store.mlmd.get_artifacts_by_id([model.id]))
    pushed = PushedModel(uri=storage.join(destination, str(version)), pushed=1,
                         pushed_destination=storage.join(destination, str(version)),
                         pushed_version=str(version), pushed_fingerprint=fingerprint)
    pushed.set('push_destination', destination)
    pushed.set('reason', f'{kind.lower()}: ' + (record.get('reason') or f'version {facts["target_version"]}'))
    pushed.set('kind', kind.lower())
    out = pb.Artifact(type_id=store.artifact_type_id(PushedModel), uri=pushed.uri, state=pb.Artifact.LIVE)
    for k, v in pushed.properties.items():
        if isinstance(v, int):
            out.properties[k].int_value = v
        else:
            out.properties[k].string_value = str(v)
    for k, v in pushed.custom_properties.items():
        set_value(out.custom_properties, k, str(v))

    def event(kind_: int, key: str) -> pb.Event:
        return pb.Event(type=kind_, path=pb.Event.Path(steps=[pb.Event.Path.Step(key=key),
                                                                 pb.Event.Path.Step(index=0)]))

    ex_id, ids, _ = store.retry(lambda: store.mlmd.put_execution(
        ex, [(model_proto, event(pb.Event.INPUT, 'model')), (out, event(pb.Event.OUTPUT, 'pushed_model'))],
        contexts))
    pushed.id, pushed.state = ids[1], 'LIVE'
    return ex_id, pushed
