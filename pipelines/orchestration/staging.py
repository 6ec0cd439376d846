"""Executors on an object store: their inputs and outputs staged through the local disk.

When a pipeline root is an object store URL (``s3://``, ``gs://``), the executor of a node still
sees local directories: each input artifact is a local copy of its files (kept under
``sluice.metadata.storage.local_cache_root()`` and reused, since a published artifact never changes), each
output artifact a fresh local directory. Only after the executor succeeds are the outputs copied to
their URLs, and only then does the publisher mark them LIVE, so a run killed mid-upload has
published nothing: resume deletes the partial upload with the rest of the abandoned execution.

TensorFlow, TFDV, tf.Transform and TFMA thus read and write the way they do on a local root; the
libraries' own remote file systems are not needed (tensorflow-io 0.37's S3 file system aborts the
process at exit, "pure virtual method called", which would fail every isolated executor). The cost
is a copy of each input and output per node; the bench (bench/storage.py) measures it.
"""
from __future__ import annotations

import copy
import os
import shutil
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from sluice.metadata import storage
from sluice.metadata.artifact import Artifact


@contextmanager
def staged(inputs: dict[str, Any], outputs: dict[str, Artifact], work_dir: str,
           after_first_upload: Callable[[], None] = lambda: None
           ) -> Iterator[tuple[dict[str, Any], dict[str, Artifact]]]:
    """``(inputs, outputs)`` as the executor should see them. With remote URLs: copies of the
    artifacts pointing at local directories (outputs under ``work_dir``); on a normal exit the local
    outputs are uploaded and what the executor recorded on them (properties, custom properties) is
    copied back onto ``outputs``. Local artifacts pass through unchanged."""
    local_inputs = {key: _local_input(a) for key, a in inputs.items()}
    local_outputs: dict[str, Artifact] = {}
    for key, artifact in outputs.items():
        if storage.is_remote(artifact.uri):
            local = copy.copy(artifact)
            local.properties, local.custom_properties = dict(artifact.properties), dict(artifact.custom_properties)
            local.uri = os.path.join(work_dir, 'outputs', key)
            shutil.rmtree(local.uri, ignore_errors=True)
            os.makedirs(local.uri)
            local_outputs[key] = local
        else:
            local_outputs[key] = artifact
    yield local_inputs, local_outputs
    uploaded = 0
    for key, artifact in outputs.items():
        local = local_outputs[key]
        if local is artifact:
            continue
        storage.upload_tree(artifact.uri, local.uri)
        artifact.properties, artifact.custom_properties = local.properties, local.custom_properties
        uploaded += 1
        if uploaded == 1:
            after_first_upload()


def _local_input(value: Any) -> Any:
    if isinstance(value, Artifact) and storage.is_remote(value.uri):
        local = copy.copy(value)
        local.uri, local.stored_uri = storage.local_copy(value.uri), value.uri
        return local
    if isinstance(value, list):
        return [_local_input(v) for v in value]
    return value
