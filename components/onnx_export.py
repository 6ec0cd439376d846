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
* UpperBound / LowerBound (tft.bucketize, tf.searchsorted): no tf2onnx handler; custom handler.
* StringToHashBucketFast (the OOV buckets of tft.compute_and_apply_vocabulary /
  tf.lookup.StaticVocabularyTable): TensorFlow computes farmhash Fingerprint64(s) % num_buckets.
  onnxruntime-extensions has an op of that name but it computes a different hash (checked on
  0.15.2: it disagrees with TensorFlow on most strings, '' included), so OOV strings would land in
  other buckets than in TensorFlow. See ``string_hash`` in export_onnx for the choices.

Conversion needs TensorFlow; running the ONNX model needs only onnxruntime, plus
onnxruntime-extensions if the model hashes strings into more than one OOV bucket.
"""
from __future__ import annotations

import json
import logging
import os
import time
from typing import Sequence

import numpy as np

logger = logging.getLogger(__name__)

_CONTRIB_DOMAIN = 'ai.onnx.contrib'  # onnxruntime-extensions' custom op domain
# The exact StringToHashBucketFast, a Python custom op registered by make_session().
_EXACT_HASH_OP = 'SluiceStringToHashBucketFast'
_INT64_MIN = np.iinfo(np.int64).min
# A lookup table added to the graph to test string inputs for '' (missing) with a standard ONNX
# op (ai.onnx.ml CategoryMapper): ONNX Equal accepts strings only from opset 19.
_EMPTY_STRING_TABLE = b'sluice_onnx_export_empty_string'
_IMPORT_SCOPE = 'serving'  # name scope of the imported serving graph

MISSING = {'float32': float('nan'), 'int64': int(_INT64_MIN), 'string': ''}
STRING_HASH_MODES = ('exact', 'extensions')


class OnnxExportError(RuntimeError):
    """The model cannot be exported to ONNX as Sluice promises; the message says why."""
    retryable = False


# ------------------------------------------------------------------------------------------------
# Public API
# ------------------------------------------------------------------------------------------------
def export_onnx(saved_model_dir: str, onnx_path: str, raw_feature_spec: dict | None = None, opset: int = 17,
                *, string_hash: str = 'exact') -> list:
    """Converts the SavedModel's ``serving_default`` signature to ONNX with raw features as inputs.

    Args:
        saved_model_dir: a SavedModel whose serving_default takes serialized tf.Examples.
        onnx_path: where to write the ONNX model.
        raw_feature_spec: the raw feature spec (tf.io.FixedLenFeature / VarLenFeature by name), to
            check the parsing against and to order the inputs; the label may be in it: only the
            features the signature parses become ONNX inputs. None: take them from the graph.
        opset: the ONNX opset.
        string_hash: how StringToHashBucketFast (OOV buckets) is exported when num_buckets > 1
            (with one bucket the result is always 0 and is exported as such, exact, no custom op):
            'exact': a Python custom op (ai.onnx.contrib SluiceStringToHashBucketFast) computing
                TensorFlow's Fingerprint64 bit for bit; the model then runs only in a Python
                onnxruntime session made by make_session() (onnxruntime-extensions + this module).
            'extensions': onnxruntime-extensions' native StringToHashBucketFast, with '' mapped to
                TensorFlow's bucket; runs in any onnxruntime that loads the extensions library
                (C++, Java, C#, ...), but non-empty OOV strings land in other buckets than in
                TensorFlow, so predictions differ for them.

    Returns:
        One dict per ONNX input, in ONNX input order: {'name', 'dtype' ('float32'|'int64'|'string'),
        'shape': [None, 1], 'missing': the value that stands for a missing value, or None when the
        feature is a FixedLenFeature (a value is required)}.
    """
    if string_hash not in STRING_HASH_MODES:
        raise ValueError(f'string_hash must be one of {STRING_HASH_MODES}, got {string_hash!r}')
    import onnx
    from tf2onnx import tf_loader

    t0 = time.perf_counter()
    graph_def, inputs, outputs, tables, renames = tf_loader.from_saved_model(
        saved_model_dir, None, None, tag='serve', signatures=['serving_default'],
        return_initialized_tables=True, return_tensors_to_rename=True)
    t_load = time.perf_counter() - t0
    if len(inputs) != 1:
        raise OnnxExportError(f'serving_default must take exactly one input (serialized tf.Examples), got {inputs}')

    parse_node = _find_parse_node(graph_def)
    features = _parsed_features(graph_def, parse_node, raw_feature_spec or {})
    new_graph_def, input_names, output_names, tensors_to_rename = _replace_parsing(
        graph_def, parse_node, features, outputs, renames)
    tables = dict(tables)
    tables[_EMPTY_STRING_TABLE] = (np.array([b''], dtype=object), np.array([1], dtype=np.int64))

    t1 = time.perf_counter()
    model_proto = _convert(new_graph_def, input_names, output_names, tensors_to_rename, tables, opset,
                           string_hash)
    t_convert = time.perf_counter() - t1

    # Name the batch dimension of the inputs (tf2onnx writes 'unk__N').
    for inp in model_proto.graph.input:
        inp.type.tensor_type.shape.dim[0].dim_param = 'batch'
    _drop_unused_contrib_opset(model_proto)
    description = [{'name': f.name, 'dtype': f.dtype, 'shape': [None, 1],
                    'missing': MISSING[f.dtype] if f.sparse else None} for f in features]
    # Self-description for ONNX users: the input convention and what a runtime needs.
    onnx.helper.set_model_props(model_proto, {
        'sluice.inputs': json.dumps([dict(d, missing=None if d['missing'] is None else str(d['missing']))
                                     for d in description]),
        'sluice.custom_ops': ','.join(sorted({n.op_type for n in model_proto.graph.node
                                              if n.domain == _CONTRIB_DOMAIN})),
    })
    onnx.checker.check_model(model_proto)
    os.makedirs(os.path.dirname(os.path.abspath(onnx_path)), exist_ok=True)
    onnx.save(model_proto, onnx_path)
    logger.info('ONNX export of %s: load+freeze %.1fs, convert %.1fs, total %.1fs',
                saved_model_dir, t_load, t_convert, time.perf_counter() - t0)
    return description


def make_session(onnx_path: str):
    """An onnxruntime InferenceSession that can run every model export_onnx writes: it registers
    onnxruntime-extensions' ops and the exact string-hash Python op (when the extensions are
    installed; models without OOV hashing need neither)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
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

    ``features`` maps each input name to a numpy array (or list) of shape [batch] or [batch, 1].
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
        feed[inp.name] = value.reshape(-1, 1)
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


def max_abs_diff(saved_model_dir: str, onnx_path: str, description: list[dict], records: Sequence[bytes],
                 batch_size: int = 256) -> float:
    """The largest absolute difference between the SavedModel's serving_default (fed serialized
    tf.Examples) and the ONNX model (fed the same examples as raw features), over every output."""
    import tensorflow as tf

    serving = tf.saved_model.load(saved_model_dir).signatures['serving_default']
    [input_name] = serving.structured_input_signature[1].keys()
    session = make_session(onnx_path)
    worst = 0.0
    for start in range(0, len(records), batch_size):
        chunk = list(records[start:start + batch_size])
        expected = {k: v.numpy() for k, v in serving(**{input_name: tf.constant(chunk)}).items()}
        got = run_onnx(onnx_path, dense_features(chunk, description), session)
        for name, value in expected.items():
            if name not in got:
                raise OnnxExportError(f'the ONNX model has no output {name!r}; its outputs: {sorted(got)}')
            diff = np.abs(np.asarray(got[name], dtype=np.float64).reshape(value.shape) - value.astype(np.float64))
            worst = max(worst, float(np.nanmax(diff)) if diff.size else 0.0)
            if np.isnan(diff).any() and not np.array_equal(np.isnan(value), np.isnan(np.asarray(got[name]).reshape(value.shape))):
                return float('inf')
    return worst


# ------------------------------------------------------------------------------------------------
# Cutting the graph at ParseExampleV2
# ------------------------------------------------------------------------------------------------
class _Feature:
    """One feature parsed by ParseExampleV2 and the op outputs it feeds."""

    def __init__(self, name, dtype, sparse, outputs, dense_shape=None):
        self.name = name                # feature name (the ONNX input name)
        self.dtype = dtype              # 'float32' | 'int64' | 'string'
        self.sparse = sparse            # VarLenFeature (-> indices, values, dense_shape)
        self.outputs = outputs          # ParseExampleV2 output indices
        self.dense_shape = dense_shape  # FixedLenFeature shape per example: [] or [1]


def _find_parse_node(graph_def):
    nodes = [n for n in graph_def.node if n.op == 'ParseExampleV2']
    if len(nodes) != 1:
        others = sorted({n.op for n in graph_def.node if n.op.startswith('Parse')})
        raise OnnxExportError(f'serving_default must parse serialized tf.Examples with one tf.io.parse_example '
                              f'(ParseExampleV2 op); found {len(nodes)} (other parse ops: {others})')
    return nodes[0]


def _const_value(graph_def, tensor_name):
    from tensorflow.python.framework import tensor_util
    name = tensor_name.split(':')[0]
    node = next(n for n in graph_def.node if n.name == name)
    if node.op != 'Const':
        raise ValueError(f'ParseExampleV2 input {tensor_name} is a {node.op}, not a constant')
    return tensor_util.MakeNdarray(node.attr['value'].tensor)


def _parsed_features(graph_def, parse_node, raw_feature_spec):
    """The features ParseExampleV2 parses, in raw_feature_spec order, checked against the spec.

    ParseExampleV2(serialized, names, sparse_keys, dense_keys, ragged_keys, dense_defaults...) has
    outputs sparse_indices[S], sparse_values[S], sparse_shapes[S], dense_values[D], ragged...
    """
    import tensorflow as tf
    attr = parse_node.attr
    sparse_keys = [k.decode() for k in _const_value(graph_def, parse_node.input[2]).reshape(-1)]
    dense_keys = [k.decode() for k in _const_value(graph_def, parse_node.input[3]).reshape(-1)]
    ragged_keys = _const_value(graph_def, parse_node.input[4]).reshape(-1)
    if len(ragged_keys):
        raise OnnxExportError(f'RaggedFeature inputs cannot be exported to ONNX: {list(ragged_keys)}')
    n_sparse = attr['num_sparse'].i
    assert n_sparse == len(sparse_keys)

    def dtype_name(enum):
        return {tf.float32: 'float32', tf.int64: 'int64', tf.string: 'string'}[tf.dtypes.as_dtype(enum)]

    parsed = {}
    for i, (key, t) in enumerate(zip(sparse_keys, attr['sparse_types'].list.type)):
        parsed[key] = _Feature(key, dtype_name(t), True, [i, n_sparse + i, 2 * n_sparse + i])
    for j, (key, t, shape) in enumerate(zip(dense_keys, attr['Tdense'].list.type, attr['dense_shapes'].list.shape)):
        dims = [d.size for d in shape.dim]
        if dims not in ([], [1]):
            raise OnnxExportError(f'FixedLenFeature {key!r} has shape {dims}; the ONNX export supports [] and [1]')
        parsed[key] = _Feature(key, dtype_name(t), False, [3 * n_sparse + j], dims)

    for key, f in parsed.items():
        spec = raw_feature_spec.get(key)
        if spec is None:
            if raw_feature_spec:
                logger.warning('feature %r is parsed by serving_default but not in raw_feature_spec', key)
            continue
        sparse = isinstance(spec, tf.io.VarLenFeature)
        if sparse != f.sparse or dtype_name(spec.dtype) != f.dtype:
            raise OnnxExportError(f'feature {key!r}: raw_feature_spec has {spec}, the serving graph parses it as '
                                  f'{"VarLen" if f.sparse else "FixedLen"} {f.dtype}')
    order = [k for k in raw_feature_spec if k in parsed] + [k for k in parsed if k not in raw_feature_spec]
    return [parsed[k] for k in order]


def _is_missing(tf, x, dtype):
    """Boolean mask of the missing-value sentinels in a dense [batch, 1] input."""
    if dtype == 'float32':
        return tf.math.is_nan(x)
    if dtype == 'int64':
        return tf.equal(x, tf.constant(_INT64_MIN, tf.int64))
    # '' -> 1 through a one-entry table, i.e. an ai.onnx.ml CategoryMapper in ONNX.
    table = tf.raw_ops.HashTableV2(key_dtype=tf.string, value_dtype=tf.int64,
                                   shared_name=_EMPTY_STRING_TABLE.decode())
    found = tf.raw_ops.LookupTableFindV2(table_handle=table, keys=x, default_value=tf.constant(0, tf.int64))
    found.set_shape(x.shape)
    return tf.equal(found, 1)


def _replace_parsing(graph_def, parse_node, features, outputs, renames):
    """A graph_def whose inputs are one [batch, 1] placeholder per feature, feeding the serving graph
    in place of ParseExampleV2's outputs. Returns (graph_def, input names, output names,
    tensors_to_rename for tf2onnx)."""
    import tensorflow as tf

    # Control dependencies on the parse op cannot be input_map'ped; they order nothing we keep.
    graph_def_copy = type(graph_def)()
    graph_def_copy.CopyFrom(graph_def)
    for node in graph_def_copy.node:
        kept = [i for i in node.input if i != '^' + parse_node.name]
        del node.input[:]
        node.input.extend(kept)

    tf_dtype = {'float32': tf.float32, 'int64': tf.int64, 'string': tf.string}
    input_map, input_names, tensors_to_rename = {}, [], {}
    graph = tf.Graph()
    with graph.as_default():
        for i, f in enumerate(features):
            # Node names are generic (feature names need not be valid TF op names); tf2onnx renames.
            x = tf.compat.v1.placeholder(tf_dtype[f.dtype], [None, 1], name=f'raw_feature_{i}')
            input_names.append(x.name)
            tensors_to_rename[x.name] = f.name
            with tf.name_scope(f'to_parsed_{i}'):
                if f.sparse:
                    # What ParseExampleV2 returns for a VarLen feature with 0 or 1 value per example.
                    present = tf.logical_not(_is_missing(tf, x, f.dtype))
                    indices = tf.where(present)                                       # [n, 2] int64
                    values = tf.gather_nd(x, indices)                                 # [n]
                    width = tf.cast(tf.reduce_any(present, axis=[0, 1]), tf.int64)     # max values per row
                    shape = tf.stack([tf.shape(x, out_type=tf.int64)[0], width])      # [batch, 0|1]
                    replacements = [indices, values, shape]
                else:
                    replacements = [x if f.dense_shape == [1] else tf.reshape(x, [-1])]
            for index, tensor in zip(f.outputs, replacements):
                input_map[f'{parse_node.name}:{index}'] = tensor
        # Table shared names are node attributes, so the import scope does not affect them.
        tf.import_graph_def(graph_def_copy, input_map=input_map, name=_IMPORT_SCOPE)

    output_names = [f'{_IMPORT_SCOPE}/{name}' for name in outputs]
    for name in outputs:
        tensors_to_rename[f'{_IMPORT_SCOPE}/{name}'] = renames.get(name, name.split(':')[0])
    # Keep what the outputs need, and every feature placeholder (one ONNX input per feature even
    # if the model ignores it).
    pruned = _prune(graph.as_graph_def(), [n.split(':')[0] for n in output_names + input_names])
    leftovers = [n.name for n in pruned.node if n.name.startswith(_IMPORT_SCOPE + '/')
                 and n.op in ('ParseExampleV2', 'Placeholder')]
    if leftovers:
        raise OnnxExportError(f'the serving outputs still depend on the serialized examples via {leftovers}')
    return pruned, input_names, output_names, tensors_to_rename


def _prune(graph_def, keep):
    """The sub-graph of the nodes in ``keep`` and everything they depend on (data and control)."""
    by_name = {n.name: n for n in graph_def.node}
    needed, stack = set(), list(keep)
    while stack:
        name = stack.pop()
        if name in needed:
            continue
        needed.add(name)
        stack.extend(i.lstrip('^').split(':')[0] for i in by_name[name].input)
    pruned = type(graph_def)()
    pruned.versions.CopyFrom(graph_def.versions)
    pruned.library.CopyFrom(graph_def.library)
    pruned.node.extend(n for n in graph_def.node if n.name in needed)
    return pruned


# ------------------------------------------------------------------------------------------------
# tf2onnx conversion and custom op handlers
# ------------------------------------------------------------------------------------------------
def _convert(graph_def, input_names, output_names, tensors_to_rename, tables, opset, string_hash):
    import tensorflow as tf
    from tf2onnx import convert, utils

    # TensorFlow's bucket for '' for each StringToHashBucketFast in the graph, computed eagerly
    # here (handlers run while a TF graph is the default one). Only the 'extensions' mode uses it.
    empty_buckets = {}
    for node in graph_def.node:
        if node.op == 'StringToHashBucketFast':
            n = node.attr['num_buckets'].i
            empty_buckets[n] = int(tf.strings.to_hash_bucket_fast([''], n).numpy()[0])

    def string_to_hash_bucket_fast(ctx, node, name, args):
        _string_to_hash_bucket_fast_handler(ctx, node, name, string_hash, empty_buckets)

    # tf2onnx's public converters either take no tables (from_graph_def) or start from a saved
    # model (from_saved_model); _convert_common is the shared step that accepts both.
    model_proto, _ = convert._convert_common(  # pylint: disable=protected-access
        graph_def,
        name='sluice_serving',
        continue_on_error=False,  # an unsupported op must fail the export, not write a broken model
        opset=opset,
        extra_opset=[utils.make_opsetid(_CONTRIB_DOMAIN, 1)],  # dropped later if unused
        custom_op_handlers={
            'UpperBound': (_bound_handler, []),
            'LowerBound': (_bound_handler, []),
            'StringToHashBucketFast': (string_to_hash_bucket_fast, []),
        },
        input_names=input_names,
        output_names=output_names,
        tensors_to_rename=tensors_to_rename,
        initialized_tables=tables)
    return model_proto


def _bound_handler(ctx, node, name, args):
    """UpperBound / LowerBound (tf.searchsorted side='right' / 'left', used by tft.bucketize).

    sorted [B, K], values [B, M] -> out[b, m] = number of k with !(values < sorted) (UpperBound) or
    sorted < values (LowerBound): the position std::upper_bound / lower_bound return for a sorted
    row, NaN included (UpperBound gives K for NaN, LowerBound 0, as in TensorFlow).
    """
    from onnx import TensorProto
    from tf2onnx.graph_builder import GraphBuilder
    op_type = node.type
    sorted_seq, values = node.input
    out_dtype = ctx.get_dtype(node.output[0]) or TensorProto.INT64
    shapes, dtypes, outputs = node.output_shapes, node.output_dtypes, node.output
    ctx.remove_node(node.name)
    gb = GraphBuilder(ctx)
    seq = gb.make_unsqueeze({'data': sorted_seq, 'axes': [1]})  # [B, 1, K]
    val = gb.make_unsqueeze({'data': values, 'axes': [2]})      # [B, M, 1]
    if op_type == 'UpperBound':
        hit = ctx.make_node('Not', [ctx.make_node('Less', [val, seq]).output[0]]).output[0]
    else:
        hit = ctx.make_node('Less', [seq, val]).output[0]
    counts = ctx.make_node('Cast', [hit], attr={'to': out_dtype}).output[0]
    gb.make_reduce_sum({'data': counts, 'axes': [2], 'keepdims': 0, 'outputs': outputs},
                       name=name, shapes=shapes, dtypes=dtypes)


def _string_to_hash_bucket_fast_handler(ctx, node, name, string_hash, empty_buckets):
    """StringToHashBucketFast(strings, num_buckets) = Fingerprint64(s) % num_buckets (see the
    module docstring and export_onnx's string_hash)."""
    from onnx import TensorProto, helper
    from tf2onnx import utils
    num_buckets = node.get_attr_int('num_buckets')
    strings = node.input[0]
    shapes, dtypes, outputs = node.output_shapes, node.output_dtypes, node.output
    ctx.remove_node(node.name)

    if num_buckets == 1:  # anything % 1 == 0: zeros shaped like the input, plain ONNX
        shape = ctx.make_node('Shape', [strings]).output[0]
        ctx.make_node('ConstantOfShape', [shape], name=name, outputs=outputs, shapes=shapes, dtypes=dtypes,
                      attr={'value': helper.make_tensor('value', TensorProto.INT64, [1], [0])})
        return
    n_buckets = ctx.make_const(utils.make_name(f'{name}/num_buckets'), np.array([num_buckets], np.int64)).output[0]
    if string_hash == 'exact':
        ctx.make_node(_EXACT_HASH_OP, [strings, n_buckets], name=name, outputs=outputs, domain=_CONTRIB_DOMAIN,
                      shapes=shapes, dtypes=dtypes)
        return
    # 'extensions': the native op (a different hash), with at least '' put in TensorFlow's bucket:
    # it is what a missing categorical value becomes once tf.Transform fills it in.
    hashed = ctx.make_node('StringToHashBucketFast', [strings, n_buckets], name=f'{name}/hash',
                           domain=_CONTRIB_DOMAIN, shapes=shapes, dtypes=dtypes).output[0]
    is_empty = ctx.make_node('CategoryMapper', [strings], domain='ai.onnx.ml',
                             attr={'cats_strings': [b''], 'cats_int64s': [1], 'default_int64': 0}).output[0]
    is_empty = ctx.make_node('Cast', [is_empty], attr={'to': TensorProto.BOOL}).output[0]
    empty = ctx.make_const(utils.make_name(f'{name}/empty_bucket'),
                           np.array(empty_buckets[num_buckets], np.int64)).output[0]
    ctx.make_node('Where', [is_empty, empty, hashed], name=name, outputs=outputs, shapes=shapes, dtypes=dtypes)


def _drop_unused_contrib_opset(model_proto):
    """Keep the ai.onnx.contrib opset import only if a node uses it (then onnxruntime-extensions is
    required to load the model)."""
    if not any(n.domain == _CONTRIB_DOMAIN for n in model_proto.graph.node):
        kept = [o for o in model_proto.opset_import if o.domain != _CONTRIB_DOMAIN]
        del model_proto.opset_import[:]
        model_proto.opset_import.extend(kept)


# ------------------------------------------------------------------------------------------------
# The exact StringToHashBucketFast: farmhash Fingerprint64 (farmhashna::Hash64, which TensorFlow's
# Fingerprint64 is), as a Python custom op for onnxruntime-extensions.
# ------------------------------------------------------------------------------------------------
_python_ops_registered = False


def _register_python_ops():
    global _python_ops_registered
    if _python_ops_registered:
        return
    from onnxruntime_extensions import PyCustomOpDef, onnx_op

    @onnx_op(op_type=_EXACT_HASH_OP, inputs=[PyCustomOpDef.dt_string, PyCustomOpDef.dt_int64],
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


_M64 = (1 << 64) - 1
_K0, _K1, _K2 = 0xc3a5c85c97cb3127, 0xb492b66fbe98f273, 0x9ae16a3b2f90404f


def fingerprint64(s: bytes) -> int:
    """farmhash Fingerprint64 of ``s`` (= tf.fingerprint / the hash of tf.strings.to_hash_bucket_fast)."""
    n = len(s)
    if n <= 16:
        return _hash_len_0_to_16(s, n)
    if n <= 32:
        return _hash_len_17_to_32(s, n)
    if n <= 64:
        return _hash_len_33_to_64(s, n)
    # > 64 bytes: 64-byte blocks, then the last 64 bytes.
    x = 81
    y = (81 * _K1 + 113) & _M64
    z = (_shift_mix((y * _K2 + 113) & _M64) * _K2) & _M64
    v0 = v1 = w0 = w1 = 0
    x = (x * _K2 + _fetch64(s, 0)) & _M64
    end = ((n - 1) // 64) * 64
    last64 = end + ((n - 1) & 63) - 63
    i = 0
    while True:
        x = (_rotate((x + y + v0 + _fetch64(s, i + 8)) & _M64, 37) * _K1) & _M64
        y = (_rotate((y + v1 + _fetch64(s, i + 48)) & _M64, 42) * _K1) & _M64
        x ^= w1
        y = (y + v0 + _fetch64(s, i + 40)) & _M64
        z = (_rotate((z + w0) & _M64, 33) * _K1) & _M64
        v0, v1 = _weak_hash_len_32_with_seeds(s, i, (v1 * _K1) & _M64, (x + w0) & _M64)
        w0, w1 = _weak_hash_len_32_with_seeds(s, i + 32, (z + w1) & _M64, (y + _fetch64(s, i + 16)) & _M64)
        z, x = x, z
        i += 64
        if i == end:
            break
    mul = _K1 + ((z & 0xff) << 1)
    i = last64
    w0 = (w0 + ((n - 1) & 63)) & _M64
    v0 = (v0 + w0) & _M64
    w0 = (w0 + v0) & _M64
    x = (_rotate((x + y + v0 + _fetch64(s, i + 8)) & _M64, 37) * mul) & _M64
    y = (_rotate((y + v1 + _fetch64(s, i + 48)) & _M64, 42) * mul) & _M64
    x ^= (w1 * 9) & _M64
    y = (y + v0 * 9 + _fetch64(s, i + 40)) & _M64
    z = (_rotate((z + w0) & _M64, 33) * mul) & _M64
    v0, v1 = _weak_hash_len_32_with_seeds(s, i, (v1 * mul) & _M64, (x + w0) & _M64)
    w0, w1 = _weak_hash_len_32_with_seeds(s, i + 32, (z + w1) & _M64, (y + _fetch64(s, i + 16)) & _M64)
    z, x = x, z
    return _hash_len_16((_hash_len_16(v0, w0, mul) + _shift_mix(y) * _K0 + z) & _M64,
                        (_hash_len_16(v1, w1, mul) + x) & _M64, mul)


def _fetch64(s, i):
    return int.from_bytes(s[i:i + 8], 'little')


def _fetch32(s, i):
    return int.from_bytes(s[i:i + 4], 'little')


def _rotate(v, shift):
    return ((v >> shift) | (v << (64 - shift))) & _M64 if shift else v


def _shift_mix(v):
    return v ^ (v >> 47)


def _hash_len_16(u, v, mul):
    a = ((u ^ v) * mul) & _M64
    a ^= a >> 47
    b = ((v ^ a) * mul) & _M64
    b ^= b >> 47
    return (b * mul) & _M64


def _hash_len_0_to_16(s, n):
    if n >= 8:
        mul = _K2 + n * 2
        a = (_fetch64(s, 0) + _K2) & _M64
        b = _fetch64(s, n - 8)
        c = (_rotate(b, 37) * mul + a) & _M64
        d = ((_rotate(a, 25) + b) * mul) & _M64
        return _hash_len_16(c, d, mul)
    if n >= 4:
        mul = _K2 + n * 2
        return _hash_len_16(n + (_fetch32(s, 0) << 3), _fetch32(s, n - 4), mul)
    if n > 0:
        y = s[0] + (s[n >> 1] << 8)
        z = n + (s[n - 1] << 2)
        return (_shift_mix(((y * _K2) ^ (z * _K0)) & _M64) * _K2) & _M64
    return _K2


def _hash_len_17_to_32(s, n):
    mul = _K2 + n * 2
    a = (_fetch64(s, 0) * _K1) & _M64
    b = _fetch64(s, 8)
    c = (_fetch64(s, n - 8) * mul) & _M64
    d = (_fetch64(s, n - 16) * _K2) & _M64
    return _hash_len_16((_rotate((a + b) & _M64, 43) + _rotate(c, 30) + d) & _M64,
                        (a + _rotate((b + _K2) & _M64, 18) + c) & _M64, mul)


def _hash_len_33_to_64(s, n):
    mul = _K2 + n * 2
    a = (_fetch64(s, 0) * _K2) & _M64
    b = _fetch64(s, 8)
    c = (_fetch64(s, n - 8) * mul) & _M64
    d = (_fetch64(s, n - 16) * _K2) & _M64
    y = (_rotate((a + b) & _M64, 43) + _rotate(c, 30) + d) & _M64
    z = _hash_len_16(y, (a + _rotate((b + _K2) & _M64, 18) + c) & _M64, mul)
    e = (_fetch64(s, 16) * mul) & _M64
    f = _fetch64(s, 24)
    g = ((y + _fetch64(s, n - 32)) * mul) & _M64
    h = ((z + _fetch64(s, n - 24)) * mul) & _M64
    return _hash_len_16((_rotate((e + f) & _M64, 43) + _rotate(g, 30) + h) & _M64,
                        (e + _rotate((f + a) & _M64, 18) + g) & _M64, mul)


def _weak_hash_len_32_with_seeds(s, i, a, b):
    w, x, y, z = _fetch64(s, i), _fetch64(s, i + 8), _fetch64(s, i + 16), _fetch64(s, i + 24)
    a = (a + w) & _M64
    b = _rotate((b + a + z) & _M64, 21)
    c = a
    a = (a + x + y) & _M64
    b = (b + _rotate(a, 44)) & _M64
    return (a + z) & _M64, (b + c) & _M64
