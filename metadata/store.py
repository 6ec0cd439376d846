"""The ML-Metadata store behind a pipeline: runs, and the life cycle of executions and their artifacts.

    >>> store = MetadataStore('sqlite:///runs/penguin/metadata.db')   # or None for in-memory
    >>> [run.run_id for run in store.runs('penguin')]

Context types are ``pipeline`` (the pipeline name), ``pipeline_run`` (the run id, child of its
pipeline) and ``node`` (``<pipeline>.<node_id>``); every execution and artifact of a run is linked to
all three. Execution types are named after component types. Artifacts reach the store only when
they are published, as LIVE. ``MetadataStore`` is built in parts: the connection and its retries
(``connection``), types, contexts and records (``base``), leases and fencing (``leases``) and
lineage (``lineage``); the names it reads and writes are in ``records``.
"""
from __future__ import annotations

import json
from typing import Any, Collection, Iterator, Sequence

from ml_metadata import errors as mlmd_errors
from ml_metadata.proto import metadata_store_pb2 as pb

from sluice.metadata.artifact import Artifact
from sluice.metadata.leases import LeaseMixin
from sluice.metadata.lineage import LineageMixin
from sluice.metadata.records import (DONE_STATES, NODE, PIPELINE, PIPELINE_RUN, ExecutionRecord,
                                     MetadataStoreError, RunSummary, process_identity, set_value, value_of)


class MetadataStore(LeaseMixin, LineageMixin):
    """An ML-Metadata store: SQLite file, in-memory, PostgreSQL or MySQL, chosen by URL.

    ``url`` is ``sqlite:///relative/or/abs/path.db``, ``postgresql://user:pw@host:port/db``,
    ``mysql://user:pw@host:port/db``, or None / ``:memory:`` for a private in-memory store.
    Calls that ML-Metadata aborts because another process holds the database (SQLite's
    "database is locked") are retried with backoff.
    """

    # -- runs ---------------------------------------------------------------------------------
    def register_run(self, pipeline_name: str, run_id: str, properties: dict[str, Any]) -> None:
        """Create the pipeline and pipeline_run contexts of a new run (the run is the pipeline's child).
        Raises MetadataStoreError ('... already exists ...') when the run exists, also when another
        process registered it a moment earlier (the database's unique names decide which one did)."""
        pipeline = self.context(PIPELINE, pipeline_name)
        exists = MetadataStoreError(f'Run id {run_id!r} already exists in {self.url}; choose another run id.')
        if self.context(PIPELINE_RUN, run_id, create=False) is not None:
            raise exists
        run = pb.Context(type_id=self._context_type_id(PIPELINE_RUN), name=run_id)
        for k, v in {'pipeline_name': pipeline_name, **properties}.items():
            set_value(run.custom_properties, k, v)
        try:  # the run context and its properties in one write: a run is never seen half-registered
            [run.id] = self.retry(lambda: self._store.put_contexts([run]))
        except mlmd_errors.AlreadyExistsError:  # another process registered it since the check above
            raise exists from None
        self.retry(lambda: self._store.put_parent_contexts(
            [pb.ParentContext(child_id=run.id, parent_id=pipeline.id)]))

    def update_run(self, run_id: str, properties: dict[str, Any]) -> None:
        run = self._require_run(run_id)
        for k, v in properties.items():
            set_value(run.custom_properties, k, v)
        self.retry(lambda: self._store.put_contexts([run]))

    def _require_run(self, run_id: str) -> pb.Context:
        run = self.context(PIPELINE_RUN, run_id, create=False)
        if run is None:
            known = [r.run_id for r in self.runs()][-5:]
            hint = f' Known runs: {", ".join(known)}.' if known else ' The store has no runs.'
            raise MetadataStoreError(f'No run {run_id!r} in the metadata store {self.url}.{hint}')
        return run

    def runs(self, pipeline_name: str | None = None) -> list[RunSummary]:
        """Runs in the store (optionally of one pipeline), oldest first."""
        return [self._summary(ctx, props) for ctx, props in self._run_contexts(pipeline_name)]

    def _run_contexts(self, pipeline_name: str | None) -> list[tuple[pb.Context, dict[str, Any]]]:
        """The runs' contexts (of one pipeline, or all) and their properties, oldest first."""
        found = []
        for ctx in self.retry(lambda: self._store.get_contexts_by_type(PIPELINE_RUN)):
            props = {k: value_of(v) for k, v in ctx.custom_properties.items()}
            if not pipeline_name or props.get('pipeline_name') == pipeline_name:
                found.append((ctx, props))
        return sorted(found, key=lambda found: (found[0].create_time_since_epoch, found[0].name))

    def runs_newest_first(self, pipeline_name: str) -> Iterator[RunSummary]:
        """The pipeline's runs, newest first, each read from the store only when the caller asks for
        it: what looks for the latest run of some kind reads the history back only as far as that."""
        for ctx, props in reversed(self._run_contexts(pipeline_name)):
            yield self._summary(ctx, props)

    def run_properties(self, run_id: str) -> dict[str, Any]:
        """The run's own properties, without reading its executions."""
        return {k: value_of(v) for k, v in self._require_run(run_id).custom_properties.items()}

    def run(self, run_id: str, context: pb.Context | None = None,
            properties: Collection[str] | None = None) -> RunSummary:
        """The run and its executions; ``context``: the run's context, already read; ``properties``:
        only these of the executions' properties are decoded (``_records``)."""
        ctx = context if context is not None else self._require_run(run_id)
        return self._summary(ctx, {k: value_of(v) for k, v in ctx.custom_properties.items()}, properties)

    def _summary(self, ctx: pb.Context, props: dict[str, Any],
                 properties: Collection[str] | None = None) -> RunSummary:
        protos = self.retry(lambda: self._store.get_executions_by_context(ctx.id))
        node_ids = json.loads(props.get('node_ids', '[]'))
        return RunSummary(run_id=ctx.name, pipeline_name=props.get('pipeline_name', ''),
                          create_time=ctx.create_time_since_epoch / 1000, node_ids=node_ids,
                          properties=props, executions=self._records(protos, with_events=False, properties=properties))

    # -- recording executions -----------------------------------------------------------------
    def _node_contexts(self, pipeline_name: str, run_id: str, node_id: str,
                       create: bool = True) -> list[pb.Context]:
        """The pipeline's, the run's and the node's contexts. Without ``create``, a node context the
        store lacks comes without an id: the transaction that records the execution creates it
        (``_put_referencing``), one write fewer in a node's first run."""
        pipeline = self.context(PIPELINE, pipeline_name)
        run = self._require_run(run_id)
        name = f'{pipeline_name}.{node_id}'
        node = self.context(NODE, name, create=create) or pb.Context(type_id=self._context_type_id(NODE), name=name)
        return [pipeline, run, node]

    def _new_execution(self, component_type: str, state: str, run_id: str, node_id: str,
                       properties: dict[str, Any]) -> pb.Execution:
        ex = pb.Execution(type_id=self.execution_type_id(component_type),
                          last_known_state=pb.Execution.State.Value(state))
        base = {'run_id': run_id, 'node_id': node_id, **process_identity()}
        for k, v in {**base, **properties}.items():
            set_value(ex.custom_properties, k, v)
        return ex

    @staticmethod
    def _event(kind: int, key: str, index: int) -> pb.Event:
        return pb.Event(type=kind, path=pb.Event.Path(steps=[pb.Event.Path.Step(key=key),
                                                               pb.Event.Path.Step(index=index)]))

    def _events(self, artifacts: dict[str, Sequence[Artifact]], kind: int,
                state: str | None = None) -> list[tuple[pb.Artifact, pb.Event]]:
        """One event per artifact: MLMD keeps one event of a kind per artifact and execution, so an
        artifact passed under two keys (an ONNX export's examples that are also its raw_examples) is
        recorded under the first key only."""
        seen: set[int] = set()
        events = []
        for key, group in sorted(artifacts.items()):
            for i, a in enumerate(group):
                if a.id is not None:
                    if a.id in seen:
                        continue
                    seen.add(a.id)
                events.append((self._artifact_proto(a, state), self._event(kind, key, i)))
        return events

    def register_execution(self, component_type: str, pipeline_name: str, run_id: str, node_id: str,
                           inputs: dict[str, Sequence[Artifact]], properties: dict[str, Any]) -> int:
        """Record a RUNNING execution with its INPUT events; returns the execution id."""
        contexts = self._node_contexts(pipeline_name, run_id, node_id, create=False)
        ex = self._new_execution(component_type, 'RUNNING', run_id, node_id, properties)
        return self._put_referencing(ex, self._events(inputs, pb.Event.INPUT), contexts)

    def _put_referencing(self, ex: pb.Execution, events: list[tuple[pb.Artifact, pb.Event]],
                         contexts: list[pb.Context]) -> int:
        """Record a new execution with its events, in one transaction, to artifacts already in the store
        without writing them again: a copy read earlier would undo what another process changed since
        (``sluice gc`` marking one DELETED). A context without an id is created, or taken as it is
        when another process created it meanwhile."""
        edges = []
        for artifact, event in events:
            if not artifact.id:
                raise ValueError(f'{artifact.uri}: an execution can only refer to artifacts already in the store.')
            event.artifact_id = artifact.id
            edges.append((0, None, event))
        put = self._store.put_lineage_subgraph
        [ex_id], _, _ = self.retry(lambda: put([ex], [], contexts, edges, reuse_context_if_already_exist=True))
        return ex_id

    def publish_execution(self, execution_id: int, pipeline_name: str, run_id: str, node_id: str,
                          outputs: dict[str, Sequence[Artifact]], properties: dict[str, Any] | None = None,
                          lease: str | None = None) -> None:
        """In one transaction: the outputs become LIVE with OUTPUT events and the execution COMPLETE.

        Fenced: only a RUNNING execution (of ``lease``, when given) can be published, and the same
        transaction settles it, so an execution that was ended meanwhile (declared abandoned by a
        process that took the run over) can never become COMPLETE: FencingError, nothing published.
        """
        contexts = self._node_contexts(pipeline_name, run_id, node_id)
        ex = self._fenced_execution(execution_id, lease, 'publish')
        ex.last_known_state = pb.Execution.COMPLETE
        for k, v in (properties or {}).items():
            set_value(ex.custom_properties, k, v)
        events = self._events(outputs, pb.Event.OUTPUT, 'LIVE')
        ids = self._settle(ex, events, contexts, 'publish')
        flat = [a for _, group in sorted(outputs.items()) for a in group]
        for artifact, new_id in zip(flat, ids):
            artifact.id, artifact.state = new_id, 'LIVE'

    def record_cached_execution(self, component_type: str, pipeline_name: str, run_id: str, node_id: str,
                                inputs: dict[str, Sequence[Artifact]], outputs: dict[str, Sequence[Artifact]],
                                properties: dict[str, Any]) -> int:
        """Record a CACHED execution whose OUTPUT events point at reused LIVE artifacts."""
        contexts = self._node_contexts(pipeline_name, run_id, node_id, create=False)
        ex = self._new_execution(component_type, 'CACHED', run_id, node_id, properties)
        events = self._events(inputs, pb.Event.INPUT) + self._events(outputs, pb.Event.OUTPUT)
        return self._put_referencing(ex, events, contexts)

    def fail_execution(self, execution_id: int, error_type: str, message: str, details: str = '',
                       state: str = 'FAILED', lease: str | None = None) -> None:
        """Mark a RUNNING execution FAILED (or CANCELED) and record why; its outputs never become LIVE.

        Fenced like ``publish_execution``: ``lease`` (when given) must own it, and it must still be
        RUNNING; an execution is ended exactly once (FencingError otherwise). Abandoning another
        process's execution passes ``lease=None``.
        """
        ex = self._fenced_execution(execution_id, lease, 'fail')
        ex.last_known_state = pb.Execution.State.Value(state)
        set_value(ex.custom_properties, 'error_type', error_type)
        set_value(ex.custom_properties, 'error_message', message[:4000])
        if details:
            set_value(ex.custom_properties, 'error_details', details[-8000:])
        self._settle(ex, [], [], 'fail')

    # -- reading executions -------------------------------------------------------------------
    def _executions_in(self, context: pb.Context | None, states: Collection[str],
                       **match: str) -> list[pb.Execution]:
        """The executions of ``context`` (none if it is None) in one of ``states`` whose string
        custom properties equal ``match`` (``node_id=...``, ``cache_key=...``)."""
        if context is None:
            return []
        protos = self.retry(lambda: self._store.get_executions_by_context(context.id))
        return [p for p in protos if pb.Execution.State.Name(p.last_known_state) in states
                and all(k in p.custom_properties and p.custom_properties[k].string_value == v
                        for k, v in match.items())]

    def _node_context(self, pipeline_name: str, node_id: str) -> pb.Context | None:
        """The context of a node across every run of its pipeline, or None if it never ran."""
        return self.context(NODE, f'{pipeline_name}.{node_id}', create=False)

    def executions(self, run_id: str) -> list[ExecutionRecord]:
        """Every execution of a run with its inputs and outputs, oldest first."""
        run = self._require_run(run_id)
        protos = self.retry(lambda: self._store.get_executions_by_context(run.id))
        return sorted(self._records(protos), key=lambda r: r.id)

    def node_done(self, run_id: str, node_id: str) -> ExecutionRecord | None:
        """A node's latest COMPLETE or CACHED execution in a run, or None."""
        done = self._executions_in(self._require_run(run_id), DONE_STATES, node_id=node_id)
        return self._records([max(done, key=lambda p: p.id)])[0] if done else None

    def node_outputs(self, run_id: str, node_id: str) -> dict[str, list[Artifact]] | None:
        """The LIVE outputs of a node's latest COMPLETE or CACHED execution in a run, or None."""
        record = self.node_done(run_id, node_id)
        if record is None:
            return None
        return {k: [a for a in v if a.state == 'LIVE'] for k, v in record.outputs.items()}

    def cache_candidates(self, pipeline_name: str, node_id: str, cache_key: str) -> list[ExecutionRecord]:
        """COMPLETE executions of this node (any run) with this cache key, newest first."""
        hits = self._executions_in(self._node_context(pipeline_name, node_id), ('COMPLETE',), cache_key=cache_key)
        return sorted(self._records(hits), key=lambda r: -r.id)

    def node_executions_across_runs(self, pipeline_name: str, node_id: str) -> list[ExecutionRecord]:
        """The COMPLETE and CACHED executions of a node in every run of a pipeline, oldest first, with
        their inputs and outputs (for resolvers: the spans an ExampleGen ingested in earlier runs)."""
        done = self._executions_in(self._node_context(pipeline_name, node_id), DONE_STATES)
        return sorted(self._records(done), key=lambda r: r.id)

    # -- artifacts ----------------------------------------------------------------------------
    def artifacts_of_type(self, type_name: str) -> list[Artifact]:
        """Every artifact of an MLMD type (none if the type is unknown)."""
        try:
            protos = self.retry(lambda: self._store.get_artifacts_by_type(type_name))
        except mlmd_errors.NotFoundError:
            return []
        return [self._to_artifact(p) for p in protos]

    def mark_deleted(self, artifacts: Sequence[Artifact]) -> None:
        """Set artifacts' state to DELETED (their files are being removed: ``sluice gc``); no cache
        lookup reuses them from then on."""
        self._set_artifact_state([a.id for a in artifacts], pb.Artifact.DELETED)
        for artifact in artifacts:
            artifact.state = 'DELETED'

    def mark_live(self, artifact_ids: Collection[int]) -> None:
        """Set artifacts marked DELETED back to LIVE (``sluice gc`` found a run using them after all)."""
        self._set_artifact_state(artifact_ids, pb.Artifact.LIVE)

    def _set_artifact_state(self, artifact_ids: Collection[int], state: int) -> None:
        if not artifact_ids:
            return
        protos = self.retry(lambda: self._store.get_artifacts_by_id(list(artifact_ids)))
        for proto in protos:
            proto.state = state
        self.retry(lambda: self._store.put_artifacts(protos))

    # -- gc against the cache: each writes, then reads what the other wrote (see sluice.ops.gc) ------
    def all_live(self, artifact_ids: Collection[int]) -> bool:
        """Are these artifacts all still LIVE (none marked DELETED by gc meanwhile)?"""
        protos = self.retry(lambda: self._store.get_artifacts_by_id(list(artifact_ids)))
        return len(protos) == len(set(artifact_ids)) and all(p.state == pb.Artifact.LIVE for p in protos)

    def newest_execution_id(self) -> int:
        """The id of the newest execution recorded (0: none); executions recorded later have larger ids."""
        from ml_metadata.metadata_store import ListOptions, OrderByField

        newest = self.retry(lambda: self._store.get_executions(
            list_options=ListOptions(limit=1, order_by=OrderByField.ID, is_asc=False)))
        return newest[0].id if newest else 0

    def referenced_after(self, artifact_ids: Collection[int], execution_id: int) -> set[int]:
        """Those of ``artifact_ids`` that an execution newer than ``execution_id`` read or wrote."""
        if not artifact_ids:
            return set()
        events = self.retry(lambda: self._store.get_events_by_artifact_ids(list(artifact_ids)))
        return {e.artifact_id for e in events if e.execution_id > execution_id}

    def withdraw_cached_execution(self, execution_id: int, message: str) -> None:
        """Mark a CACHED execution CANCELED, saying why: the outputs it reused were being deleted by gc
        when it was recorded (the node runs instead)."""
        [ex] = self.retry(lambda: self._store.get_executions_by_id([execution_id]))
        ex.last_known_state = pb.Execution.CANCELED
        set_value(ex.custom_properties, 'error_type', 'CacheHitWithdrawn')
        set_value(ex.custom_properties, 'error_message', message)
        self.retry(lambda: self._store.put_executions([ex]))
