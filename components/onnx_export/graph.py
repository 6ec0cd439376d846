"""The serving graph's inputs (``signature_inputs``: serialized tf.Examples or dense per-feature
tensors), and cutting it at ParseExampleV2: the features it parses (checked against the raw feature
spec) and a graph that computes its outputs from one dense [batch, 1] input per feature instead, the
sparse ones rebuilt exactly as ParseExampleV2 would have (see the package docstring).
"""
from __future__ import annotations

import logging

from sluice.components.onnx_export.runtime import INT64_MIN, OnnxExportError

logger = logging.getLogger(__name__)

# A lookup table added to the graph to test string inputs for '' (missing) with a standard ONNX
# op (ai.onnx.ml CategoryMapper): ONNX Equal accepts strings only from opset 19.
EMPTY_STRING_TABLE = b'sluice_onnx_export_empty_string'
IMPORT_SCOPE = 'serving'  # name scope of the imported serving graph


class _Feature:
    """One feature parsed by ParseExampleV2 and the op outputs it feeds."""

    def __init__(self, name, dtype, sparse, outputs, dense_shape=None):
        self.name = name                # feature name (the ONNX input name)
        self.dtype = dtype              # 'float32' | 'int64' | 'string'
        self.sparse = sparse            # VarLenFeature (-> indices, values, dense_shape)
        self.outputs = outputs          # ParseExampleV2 output indices
        self.dense_shape = dense_shape  # FixedLenFeature shape per example: [] or [1]


class SignatureInput:
    """One input of the frozen serving_default graph."""

    def __init__(self, tensor, name, dtype, shape):
        self.tensor = tensor  # graph tensor name ('serving_default_x:0')
        self.name = name      # the signature's input name (the ONNX input name)
        self.dtype = dtype    # 'float32' | 'int64' | 'string' | another TensorFlow dtype name
        self.shape = shape    # list of int or None (unknown); None for an unknown rank


def signature_inputs(graph_def, inputs, renames):
    """The inputs of a graph from tf2onnx's tf_loader.from_saved_model: their placeholders' dtypes
    and shapes, named as the signature names them."""
    import tensorflow as tf
    nodes = {n.name: n for n in graph_def.node}
    found = []
    for tensor in inputs:
        node = nodes[tensor.split(':')[0]]
        dtype = tf.dtypes.as_dtype(node.attr['dtype'].type)
        shape = node.attr['shape'].shape
        dims = None if shape.unknown_rank else [d.size if d.size >= 0 else None for d in shape.dim]
        found.append(SignatureInput(tensor, renames.get(tensor, tensor.split(':')[0]),
                                    dtype.name, dims))
    return found


def shape_text(shape):
    return 'unknown' if shape is None else '[' + ', '.join('None' if d is None else str(d) for d in shape) + ']'


def describe_signature(signature):
    """'name: dtype [shape], ...' for messages."""
    return ', '.join(f'{s.name}: {s.dtype} {shape_text(s.shape)}' for s in signature) or 'no inputs'


def takes_serialized_examples(graph_def, signature):
    """One string input, parsed by a Parse* op (TFX's serving signature; ParseExampleV2 is the one
    the export takes, ``find_parse_node`` says so for another): else the inputs are the features."""
    return (len(signature) == 1 and signature[0].dtype == 'string'
            and any(n.op.startswith('Parse') for n in graph_def.node))


def find_parse_node(graph_def):
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


def parsed_features(graph_def, parse_node, raw_feature_spec):
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
        return tf.equal(x, tf.constant(INT64_MIN, tf.int64))
    # '' -> 1 through a one-entry table, i.e. an ai.onnx.ml CategoryMapper in ONNX.
    table = tf.raw_ops.HashTableV2(key_dtype=tf.string, value_dtype=tf.int64,
                                   shared_name=EMPTY_STRING_TABLE.decode())
    found = tf.raw_ops.LookupTableFindV2(table_handle=table, keys=x, default_value=tf.constant(0, tf.int64))
    found.set_shape(x.shape)
    return tf.equal(found, 1)


def replace_parsing(graph_def, parse_node, features, outputs, renames):
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
        tf.import_graph_def(graph_def_copy, input_map=input_map, name=IMPORT_SCOPE)

    output_names = [f'{IMPORT_SCOPE}/{name}' for name in outputs]
    for name in outputs:
        tensors_to_rename[f'{IMPORT_SCOPE}/{name}'] = renames.get(name, name.split(':')[0])
    # Keep what the outputs need, and every feature placeholder (one ONNX input per feature even
    # if the model ignores it).
    pruned = _prune(graph.as_graph_def(), [n.split(':')[0] for n in output_names + input_names])
    leftovers = [n.name for n in pruned.node if n.name.startswith(IMPORT_SCOPE + '/')
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

