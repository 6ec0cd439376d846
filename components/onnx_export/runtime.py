"""Running an exported model with onnxruntime, without TensorFlow: the input convention (one [batch, 1]
input per raw feature, ``MISSING`` standing for an absent value), sessions that load the custom ops an
export may use, feeding raw features, and the check of an export against the SavedModel it came from
(that one needs TensorFlow). ``OnnxExportError`` and the custom-op names are here because the export
(``export``, ``graph``) uses them too.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from sluice.components.onnx_export.farmhash import fingerprint64

CONTRIB_DOMAIN = 'ai.onnx.contrib'  # onnxruntime-extensions' custom op domain
# The exact StringToHashBucketFast, a Python custom op registered by make_session().
EXACT_HASH_OP = 'SluiceStringToHashBucketFast'
INT64_MIN = np.iinfo(np.int64).min

MISSING = {'float32': float('nan'), 'int64': int(INT64_MIN), 'string': ''}

# What serving_default took, in the ONNX model's metadata (SIGNATURE_PROP): serialized tf.Examples
# (the parsing cut off: the inputs are the parsed features, [batch, 1]) or dense per-feature tensors
# (the inputs are the signature's own, [batch] or [batch, 1]). Models exported before this was
# recorded took serialized tf.Examples.
SIGNATURE_PROP = 'sluice.serving_signature'
SERIALIZED_EXAMPLES = 'serialized_examples'
DENSE = 'dense'


class OnnxExportError(RuntimeError):
    """The model cannot be exported to ONNX as Sluice promises; the message says why."""
    retryable = False


def make_session(onnx_path: str, intra_op_threads: int | None = None):
    """An onnxruntime InferenceSession that can run every model export_onnx writes: it registers
    onnxruntime-extensions' ops and the exact string-hash Python op (when the extensions are
    installed; models without OOV hashing need neither). ``intra_op_threads``: onnxruntime's threads
    for one run (None: its default, one per core)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    if intra_op_threads is not None:
        options.intra_op_num_threads = intra_op_threads
    try:
        import onnxruntime_extensions
    except ImportError:
        onnxruntime_extensions = None
    if onnxruntime_extensions is not None:
        _register_python_ops()
        options.register_custom_ops_library(onnxruntime_extensions.get_library_path())
    return ort.InferenceSession(onnx_path, options, providers=['CPUExecutionProvider'])


def run_onnx(onnx_path: str, features: dict, session=None) -> dict:
    """Runs the exported model on raw features given in the dense convention.

    ``features`` maps each input name to a numpy array (or list) of shape [batch] or [batch, 1]
    (either way: each is reshaped to its input's rank).
    Strings are passed to onnxruntime as Python ``str`` (object dtype); bytes are decoded first
    (onnxruntime would otherwise read b'Cash' as the text "b'Cash'"). ``session`` (from
    make_session) avoids creating one per call. Returns {output name: array}.
    """
    session = session or make_session(onnx_path)
    feed = {}
    for inp in session.get_inputs():
        if inp.name not in features:
            raise KeyError(f'missing input feature {inp.name!r}')
        value = np.asarray(features[inp.name])
        if inp.type == 'tensor(string)':
            value = np.array([v.decode('utf-8') if isinstance(v, bytes) else str(v) for v in value.reshape(-1)],
                             dtype=object)
        elif inp.type == 'tensor(float)':
            value = value.astype(np.float32)
        elif inp.type == 'tensor(int64)':
            value = value.astype(np.int64)
        feed[inp.name] = value.reshape(-1) if len(inp.shape or [None, 1]) == 1 else value.reshape(-1, 1)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feed)))


def dense_features(records: Sequence[bytes], description: list[dict]) -> dict[str, np.ndarray]:
    """Serialized tf.Examples -> the ONNX inputs, missing values given as ``description`` says."""
    from tensorflow.core.example import example_pb2

    columns: dict[str, list] = {d['name']: [] for d in description}
    for record in records:
        features = example_pb2.Example.FromString(record).features.feature
        for d in description:
            feature = features.get(d['name'])
            kind = feature.WhichOneof('kind') if feature is not None else None
            values = list(getattr(feature, kind).value) if kind else []
            if not values:
                if d['missing'] is None:
                    raise OnnxExportError(f"example has no value for the required feature {d['name']!r}")
                columns[d['name']].append(d['missing'])
            else:
                value = values[0]
                columns[d['name']].append(value.decode('utf-8') if isinstance(value, bytes) else value)
    dtypes = {'float32': np.float32, 'int64': np.int64, 'string': object}
    return {d['name']: np.array(columns[d['name']], dtype=dtypes[d['dtype']]).reshape(-1, 1)
            for d in description}


def signature_kind(session) -> str:
    """What the exported serving_default took: SERIALIZED_EXAMPLES or DENSE (see SIGNATURE_PROP)."""
    return session.get_modelmeta().custom_metadata_map.get(SIGNATURE_PROP, SERIALIZED_EXAMPLES)


def max_abs_diff(saved_model_dir: str, onnx_path: str, description: list[dict], records: Sequence[bytes],
                 batch_size: int = 256) -> float:
    """The largest absolute difference between the SavedModel's serving_default and the ONNX model
    over every output, on the same examples: the SavedModel is fed them serialized (a signature of
    serialized tf.Examples) or as its dense per-feature inputs (a dense signature), the ONNX model
    as raw features (``dense_features``)."""
    import tensorflow as tf

    serving = tf.saved_model.load(saved_model_dir).signatures['serving_default']
    specs = serving.structured_input_signature[1]
    session = make_session(onnx_path)
    dense = signature_kind(session) == DENSE
    if dense:
        unfed = sorted(set(specs) - {d['name'] for d in description})
        if unfed:
            raise OnnxExportError(f'serving_default takes {unfed}, which the ONNX model does not')
    else:
        [input_name] = specs.keys()
    worst = 0.0
    for start in range(0, len(records), batch_size):
        chunk = list(records[start:start + batch_size])
        features = dense_features(chunk, description)
        if dense:
            feed = {name: tf.reshape(tf.constant(_tf_value(features[name], spec.dtype), spec.dtype),
                                     [-1] if spec.shape.rank == 1 else [-1, 1])
                    for name, spec in specs.items()}
        else:
            feed = {input_name: tf.constant(chunk)}
        expected = {k: v.numpy() for k, v in serving(**feed).items()}
        got = run_onnx(onnx_path, features, session)
        for name, value in expected.items():
            if name not in got:
                raise OnnxExportError(f'the ONNX model has no output {name!r}; its outputs: {sorted(got)}')
            diff = np.abs(np.asarray(got[name], dtype=np.float64).reshape(value.shape) - value.astype(np.float64))
            worst = max(worst, float(np.nanmax(diff)) if diff.size else 0.0)
            if np.isnan(diff).any() and not np.array_equal(np.isnan(value), np.isnan(np.asarray(got[name]).reshape(value.shape))):
                return float('inf')
    return worst


def _tf_value(array: np.ndarray, dtype) -> np.ndarray:
    """A dense feature column as TensorFlow takes it (strings as UTF-8 bytes)."""
    if dtype.name == 'string':
        return np.array([v.encode('utf-8') if isinstance(v, str) else v for v in array.reshape(-1)], dtype=object)
    return array.reshape(-1)


# ------------------------------------------------------------------------------------------------
# The exact StringToHashBucketFast (farmhash.fingerprint64) as a Python custom op for
# onnxruntime-extensions.
# ------------------------------------------------------------------------------------------------
_python_ops_registered = False


def _register_python_ops():
    global _python_ops_registered
    if _python_ops_registered:
        return
    from onnxruntime_extensions import PyCustomOpDef, onnx_op

    @onnx_op(op_type=EXACT_HASH_OP, inputs=[PyCustomOpDef.dt_string, PyCustomOpDef.dt_int64],
             outputs=[PyCustomOpDef.dt_int64])
    def _string_to_hash_bucket_fast(strings, num_buckets):
        n = int(np.asarray(num_buckets).reshape(-1)[0])
        buckets = {}  # per distinct string
        flat = np.asarray(strings).reshape(-1)
        for s in flat:
            if s not in buckets:
                buckets[s] = fingerprint64(s.encode('utf-8')) % n
        return np.array([buckets[s] for s in flat], dtype=np.int64).reshape(np.shape(strings))

    _python_ops_registered = True
