"""Which version holds a given model: the Pusher's "already in production" (the Model's SavedModel and
its ONNX copy, exactly the files a push makes) and the Evaluator's "the candidate is in production"
(the same SavedModel, whatever ONNX copy is beside it: the ONNX copy is made from the SavedModel, by a
node that runs beside the Evaluator)."""
from __future__ import annotations

import os

from sluice.metadata import storage
from sluice.components.production import objectstore
from sluice.components.production.destination import (ONNX_FILES, PUSHED_PARTS, SERVING_DIR, Version, _files_under,
                                                       _fingerprint, content_fingerprint, counted, model_fingerprint,
                                                       pushed_files)


def holds_model(version: Version, model_uri: str, onnx_uri: str | None = None, saved_model_only: bool = False) -> bool:
    """Does this version hold exactly the files a push of the Model at ``model_uri`` (with the OnnxModel
    at ``onnx_uri``, if given) makes, in this layout or in the layout of earlier pushes
    (``Format-Serving/`` and ``Format-ONNX/`` kept)? ``saved_model_only`` (the Evaluator, which runs
    before the ONNX copy exists): the same SavedModel, whatever ONNX copy the version has beside it."""
    if not version.fingerprint:
        return False
    local = storage.local_copy(model_uri)
    if saved_model_only:
        return _saved_model_files_match(version, local)
    onnx_local = storage.local_copy(onnx_uri) if onnx_uri else None
    if version.stored is not None:  # on an object store: compared by the MD5s of the model's files
        if onnx_local is None and _old_layout(version):
            files = [(os.path.relpath(path, local).replace(os.sep, '/'), path) for part in PUSHED_PARTS
                     for _, path in _files_under(os.path.join(local, part), local)]
        else:
            files = pushed_files(local, onnx_local)
        return version.fingerprint == objectstore.expected_fingerprint(files)
    if onnx_local is None and _old_layout(version):
        return version.fingerprint == content_fingerprint(local, PUSHED_PARTS)
    return version.fingerprint == model_fingerprint(local, onnx_local)


def _saved_model_files_match(version: Version, model_dir: str) -> bool:
    """Are the version's SavedModel files those of the Model at ``model_dir`` (its ``Format-Serving/``)?"""
    old_layout = _old_layout(version)
    prefix = SERVING_DIR + '/' if old_layout else ''
    ours = [(prefix + rel, path) for rel, path in _files_under(os.path.join(model_dir, SERVING_DIR), model_dir)]
    if version.stored is not None:
        theirs = {rel: o for rel, o in version.stored.items() if counted(rel) and _in_saved_model(rel, old_layout)}
        return bool(theirs) and objectstore.fingerprint(theirs) == objectstore.expected_fingerprint(ours)
    theirs = [(rel, path) for rel, path in _files_under(version.path, version.path) if _in_saved_model(rel, old_layout)]
    return bool(theirs) and _fingerprint(theirs) == _fingerprint(ours)


def _old_layout(version: Version) -> bool:
    """Was this version pushed in the earlier layout (``Format-Serving/`` kept inside it)?"""
    if version.stored is not None:
        return any(rel.startswith(SERVING_DIR + '/') for rel in version.stored)
    return os.path.isdir(os.path.join(version.path, SERVING_DIR))


def _in_saved_model(rel: str, old_layout: bool) -> bool:
    return rel.startswith(SERVING_DIR + '/') if old_layout else rel not in ONNX_FILES
