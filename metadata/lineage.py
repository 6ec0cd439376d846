"""Lineage in the store: which execution made an artifact's files (the COMPLETE one, not a later
CACHED execution that reused them), and from what, recursively.
"""
from __future__ import annotations

from ml_metadata.proto import metadata_store_pb2 as pb

from sluice.metadata.artifact import Artifact
from sluice.metadata.base import StoreBase
from sluice.metadata.records import ExecutionRecord, LineageNode, MetadataStoreError


class LineageMixin(StoreBase):
    """What produced an artifact."""

    def lineage(self, artifact_id: int) -> LineageNode:
        """What produced an artifact: its producing execution and that execution's inputs, recursively."""
        found = self.artifacts([artifact_id])
        if not found:
            raise MetadataStoreError(f'No artifact {artifact_id} in the metadata store {self.url}.')
        memo: dict[int, LineageNode] = {}

        def build(artifact: Artifact) -> LineageNode:
            if artifact.id in memo:
                return memo[artifact.id]
            node = LineageNode(artifact, None)
            memo[artifact.id] = node
            node.execution = self.producing_execution(artifact.id)
            if node.execution is not None:
                node.inputs = {k: [build(a) for a in v] for k, v in sorted(node.execution.inputs.items())}
            return node

        return build(found[0])

    def producing_execution(self, artifact_id: int) -> ExecutionRecord | None:
        """The execution that made an artifact's files (the COMPLETE one, not a later CACHED reuse)."""
        events = self.retry(lambda: self._store.get_events_by_artifact_ids([artifact_id]))
        producers = sorted({e.execution_id for e in events if e.type == pb.Event.OUTPUT})
        if not producers:
            return None
        records = self._records(self.retry(lambda: self._store.get_executions_by_id(producers)))
        records.sort(key=lambda r: (r.state != 'COMPLETE', r.id))
        return records[0]
