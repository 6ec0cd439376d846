"""Export a TFX-style serving SavedModel to ONNX with raw features as inputs.

A TFX trainer module's ``serving_default`` signature takes one input, a 1-D string tensor of
serialized tf.Example protos, and does::

    parsed = tf.io.parse_example(examples, raw_feature_spec_without_label)   # ParseExampleV2
    outputs = model(model.tft_layer(parsed))

tf2onnx cannot convert ParseExampleV2. ``export_onnx`` cuts the graph there and replaces the op's
outputs with tensors computed from one dense input per raw feature (shape [batch, 1]), so the ONNX
model embeds the tf.Transform graph and the Keras model but no tf.Example parsing:

* FixedLenFeature: the input is the value itself (no missing values allowed).
* VarLenFeature (may be absent from an example): a missing value is given as NaN (float32),
  the int64 minimum (int64) or '' (string). The graph rebuilds exactly the SparseTensor
  ParseExampleV2 would have produced (indices of present values, values, dense_shape
  [batch, 0 or 1]) so the tf.Transform graph sees what it sees in TensorFlow.

Ops that need special handling on this stack (tf2onnx 1.17, onnxruntime 1.31,
onnxruntime-extensions 0.15.2):

* Vocabulary tables (LookupTableFindV2/SizeV2): the initialized tables returned by
  tf2onnx.tf_loader.from_saved_model are passed to the converter (-> ai.onnx.ml CategoryMapper).
* UpperBound / LowerBound (tft.bucketize, tf.searchsorted) and Bucketize (Keras' Discretization
  layer): no tf2onnx handler; custom handlers.
* StringToHashBucketFast (the OOV buckets of tft.compute_and_apply_vocabulary /
  tf.lookup.StaticVocabularyTable): TensorFlow computes farmhash Fingerprint64(s) % num_buckets.
  onnxruntime-extensions has an op of that name but it computes a different hash (checked on
  0.15.2: it disagrees with TensorFlow on most strings, '' included), so OOV strings would land in
  other buckets than in TensorFlow. See ``string_hash`` in export_onnx for the choices.

A signature of dense per-feature inputs instead (a Keras model saved with its default signature, as
TFX's penguin_simple tutorial does: one float32, int64 or string tensor of shape [None] or [None, 1]
per feature, named after it) is converted as it is: the ONNX inputs are those tensors, and the check
against the SavedModel feeds both the same rows as dense tensors. The model records which kind of
signature it came from (``sluice.serving_signature``: 'serialized_examples' or 'dense').

Conversion needs TensorFlow; running the ONNX model needs only onnxruntime, plus
onnxruntime-extensions if the model hashes strings into more than one OOV bucket.

Modules: ``export`` (export_onnx: load, cut, convert with the op handlers above), ``graph`` (cutting
the graph at ParseExampleV2), ``runtime`` (running the model: make_session, run_onnx,
dense_features, max_abs_diff; OnnxExportError), ``farmhash`` (Fingerprint64 in Python).
"""
from __future__ import annotations

from sluice.components.onnx_export.export import STRING_HASH_MODES, export_onnx
from sluice.components.onnx_export.runtime import (MISSING, OnnxExportError, dense_features, make_session,
                                                   max_abs_diff, run_onnx)

__all__ = ['MISSING', 'STRING_HASH_MODES', 'OnnxExportError', 'dense_features', 'export_onnx', 'make_session',
           'max_abs_diff', 'run_onnx']
