"""What is in production at a push destination: the destination's own files are the truth
(versions, the push record, the history, the lock); ``record`` mirrors each change in ML-Metadata.
Here, below the Pusher, because the Pusher, the Trainer (warm start) and the Evaluator (baseline)
all read it. Each name is imported from the module that defines it:

- ``destination``: reading a destination: ``versions``, ``inspect_version`` (a ``Version``),
  ``production`` (the highest complete version, and the incomplete ones skipped), ``history``,
  ``content_fingerprint`` / ``model_fingerprint``, ``pushed_files`` (where a
  push puts a Model's files), ``serving_path`` / ``onnx_path`` (both layouts), ``pushed_directory``
  / ``push_destination`` (of a PushedModel), and the file names (``PUSH_RECORD``, ``HISTORY_FILE``);
- ``changes``: writing one: ``change`` (read production, decide, write: under the lock, or on an
  object store with exclusive creates), ``destination_lock``, ``write_version`` (staged, then
  renamed into place, then logged), ``rollback``, ``promote``, ``copy_model`` / ``copy_version``, and
  ``PushError`` / ``ProductionError``;
- ``identity``: ``holds_model``, whether a version holds a given model (its SavedModel, and its ONNX copy);
- ``objectstore``: a destination on an object store (``s3://``, ``gs://``): its keys, the claim, the commit
  marker, the compare-and-swap, the history objects and the ETag fingerprint;
- ``record``: the store's side: ``store_identity``, ``version_artifact``, ``model_origin``,
  ``record_change``.
"""
