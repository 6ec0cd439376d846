"""The publisher: records the outcome of an execution in the store.

Success is one atomic ``put_execution``: the outputs become LIVE with OUTPUT events and the
execution COMPLETE. Failure removes the output directories and marks the execution FAILED (or
CANCELED) with the error; no artifact of a failed execution ever becomes LIVE. Both are fenced by
the run's lease (``PipelineInfo.lease``): an execution that another process declared abandoned can
be neither published nor failed again (``sluice.metadata.records.FencingError``).
"""
from __future__ import annotations

import logging
from typing import Any

from sluice.metadata import storage
from sluice.components.driver import PipelineInfo
from sluice.metadata.artifact import Artifact
from sluice.metadata.store import MetadataStore

log = logging.getLogger(__name__)


class Publisher:
    def __init__(self, store: MetadataStore, pipeline: PipelineInfo, node_id: str) -> None:
        self.store, self.pipeline, self.node_id = store, pipeline, node_id

    def publish(self, execution_id: int, outputs: dict[str, Artifact],
                properties: dict[str, Any] | None = None) -> None:
        for key, artifact in outputs.items():
            if not artifact.exists():
                # Removed by a process that took the run over? Then say that, not "vanished".
                self.store.check_fence(execution_id, self.pipeline.lease or None)
                raise RuntimeError(f"{self.node_id}: output '{key}' directory {artifact.uri} vanished before "
                                   'publishing; the executor must not remove its output directories.')
        self.store.publish_execution(execution_id, self.pipeline.name, self.pipeline.run_id, self.node_id,
                                     {k: [a] for k, a in outputs.items()}, properties, lease=self.pipeline.lease or None)

    def fail(self, execution_id: int, outputs: dict[str, Artifact], error_type: str, message: str,
             details: str = '', state: str = 'FAILED') -> None:
        remove_outputs(outputs)
        self.store.fail_execution(execution_id, error_type, message, details, state, lease=self.pipeline.lease or None)


def remove_outputs(outputs: dict[str, Artifact]) -> None:
    """Remove the (unpublished) output directories of an execution."""
    for artifact in outputs.values():
        try:
            storage.remove_tree(artifact.uri)
        except storage.StorageError as e:  # what cannot be deleted now, resume or gc deletes later
            log.warning('could not remove %s: %s', artifact.uri, e)
