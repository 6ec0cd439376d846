"""``export_onnx``: a SavedModel's serving_default to ONNX with raw features as inputs: load and freeze
with tf2onnx, cut the graph at ParseExampleV2 (``graph``) when the signature takes serialized
tf.Examples (a signature of dense per-feature inputs is converted as it is), convert with Sluice's
handlers for the ops tf2onnx lacks or gets wrong on this stack (see the package docstring), and
describe the inputs.
"""
from __future__ import annotations

import json
import logging
import os
import time

import numpy as np

from sluice.components.onnx_export.graph import (EMPTY_STRING_TABLE, describe_signature, find_parse_node,
                                                 parsed_features, replace_parsing, signature_inputs,
                                                 takes_serialized_examples, shape_text)
from sluice.components.onnx_export.runtime import (CONTRIB_DOMAIN, DENSE, EXACT_HASH_OP, MISSING, SERIALIZED_EXAMPLES,
                                                   SIGNATURE_PROP, OnnxExportError)

logger = logging.getLogger(__name__)

STRING_HASH_MODES = ('exact', 'extensions')


def export_onnx(saved_model_dir: str, onnx_path: str, raw_feature_spec: dict | None = None, opset: int = 17,
                *, string_hash: str = 'exact') -> list:
    """Converts the SavedModel's ``serving_default`` signature to ONNX with raw features as inputs.

    The signatures TFX's examples and tutorials write are taken: one string input of serialized
    tf.Examples parsed with one tf.io.parse_example (the tf.Transform graph inside or not: the parsing
    is cut off, each parsed feature becomes a [batch, 1] input), or dense inputs, one per feature, as
    a Keras model saved with its default signature has (TFX's penguin_simple): float32, int64 or
    string tensors of shape [None] or [None, 1], kept as they are (same names, dtypes, shapes).

    Args:
        saved_model_dir: the SavedModel.
        onnx_path: where to write the ONNX model.
        raw_feature_spec: the raw feature spec (tf.io.FixedLenFeature / VarLenFeature by name), to
            check the parsing against and to order the inputs; the label may be in it: only the
            features the signature takes become ONNX inputs. None: take them from the graph.
        opset: the ONNX opset.
        string_hash: how StringToHashBucketFast (OOV buckets) is exported when num_buckets > 1
            (with one bucket the result is always 0 and is exported as such, exact, no custom op):
            'exact': a Python custom op (ai.onnx.contrib SluiceStringToHashBucketFast) computing
                TensorFlow's Fingerprint64 bit for bit; the model then runs only in a Python
                onnxruntime session made by make_session() (onnxruntime-extensions + this package).
            'extensions': onnxruntime-extensions' native StringToHashBucketFast, with '' mapped to
                TensorFlow's bucket; runs in any onnxruntime that loads the extensions library
                (C++, Java, C#, ...), but non-empty OOV strings land in other buckets than in
                TensorFlow, so predictions differ for them.

    Returns:
        One dict per ONNX input, in ONNX input order: {'name', 'dtype' ('float32'|'int64'|'string'),
        'shape': [None, 1] (or [None] for a dense signature's rank-1 input), 'missing': the value
        that stands for a missing value, or None when a value is required (a FixedLenFeature, or
        any input of a dense signature)}.

    Raises:
        OnnxExportError: the signature cannot be exported; the message names its inputs and why.
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
    signature = signature_inputs(graph_def, inputs, renames)
    described = describe_signature(signature)
    try:
        if takes_serialized_examples(graph_def, signature):
            kind = SERIALIZED_EXAMPLES
            description, graph_def, inputs, outputs, renames, tables = _without_parsing(
                graph_def, outputs, renames, tables, raw_feature_spec or {})
        else:
            kind, description = DENSE, _dense_description(signature, raw_feature_spec or {})
            inputs = [next(s.tensor for s in signature if s.name == d['name']) for d in description]
        _check_names(description, outputs, renames)
        t1 = time.perf_counter()
        model_proto = _convert(graph_def, inputs, outputs, dict(renames), tables, opset, string_hash)
        t_convert = time.perf_counter() - t1
        _finish(model_proto, saved_model_dir)
    except OnnxExportError as e:
        raise OnnxExportError(f'serving_default({described}) cannot be exported to ONNX: {e}') from e
    except Exception as e:  # the converter's own reason, said plainly
        raise OnnxExportError(f'serving_default({described}) cannot be exported to ONNX: tf2onnx could not convert '
                              f'it: {type(e).__name__}: {e}') from e

    # Self-description for ONNX users: the input convention and what a runtime needs.
    onnx.helper.set_model_props(model_proto, {
        'sluice.inputs': json.dumps([dict(d, missing=None if d['missing'] is None else str(d['missing']))
                                     for d in description]),
        'sluice.custom_ops': ','.join(sorted({n.op_type for n in model_proto.graph.node
                                              if n.domain == CONTRIB_DOMAIN})),
        SIGNATURE_PROP: kind,
    })
    os.makedirs(os.path.dirname(os.path.abspath(onnx_path)), exist_ok=True)
    onnx.save(model_proto, onnx_path)
    logger.info('ONNX export of %s (%s signature): load+freeze %.1fs, convert %.1fs, total %.1fs',
                saved_model_dir, kind, t_load, t_convert, time.perf_counter() - t0)
    return description


def _without_parsing(graph_def, outputs, renames, tables, raw_feature_spec):
    """A signature of serialized tf.Examples: the graph cut at ParseExampleV2, its inputs the parsed
    features. Returns (description, graph_def, input names, output names, renames, tables)."""
    parse_node = find_parse_node(graph_def)
    features = parsed_features(graph_def, parse_node, raw_feature_spec)
    graph_def, inputs, outputs, renames = replace_parsing(graph_def, parse_node, features, outputs, renames)
    tables = dict(tables)
    tables[EMPTY_STRING_TABLE] = (np.array([b''], dtype=object), np.array([1], dtype=np.int64))
    description = [{'name': f.name, 'dtype': f.dtype, 'shape': [None, 1],
                    'missing': MISSING[f.dtype] if f.sparse else None} for f in features]
    return description, graph_def, inputs, outputs, renames, tables


def _check_names(description, outputs, renames):
    clash = sorted({d['name'] for d in description} & {renames.get(o, o.split(':')[0]) for o in outputs})
    if clash:
        raise OnnxExportError(f'output {", ".join(map(repr, clash))} has the name of an input; ONNX needs '
                              'distinct names')


def _finish(model_proto, saved_model_dir):
    """Checks and completes tf2onnx's model: no op left unconverted, the batch dimension named, output
    shapes known, the contrib opset only if used, and ONNX's checker satisfied."""
    import onnx

    # tf2onnx leaves an op it has no handler for in the graph as it is (and logs it).
    unconverted = sorted({n.op_type for n in model_proto.graph.node
                          if n.domain != CONTRIB_DOMAIN and not onnx.defs.has(n.op_type, n.domain or '')})
    if unconverted:
        raise OnnxExportError(f'tf2onnx has no conversion for the TensorFlow op(s) {", ".join(unconverted)}')
    # Name the batch dimension of the inputs (tf2onnx writes 'unk__N').
    for inp in model_proto.graph.input:
        inp.type.tensor_type.shape.dim[0].dim_param = 'batch'
    _drop_unused_contrib_opset(model_proto)
    _fill_output_shapes(model_proto, saved_model_dir)
    onnx.checker.check_model(model_proto)


def _dense_description(signature, raw_feature_spec):
    """The ONNX inputs of a dense signature: its own inputs, checked against what the export and
    Sluice's runtimes take (one float32, int64 or string value per example and input), in
    raw_feature_spec order, then the signature's."""
    if not signature:
        raise OnnxExportError('it takes no input')
    for s in signature:
        if s.dtype not in MISSING:
            raise OnnxExportError(
                f'input {s.name!r} is {s.dtype}; a signature of dense inputs must take float32, int64 or string '
                'tensors (the types a tf.Example holds), or one string tensor of serialized tf.Examples')
        if s.shape not in ([None], [None, 1]):
            raise OnnxExportError(
                f'input {s.name!r} has shape {shape_text(s.shape)}; a signature of dense inputs must take one '
                'value per example and input (shape [None] or [None, 1]), or one string tensor of serialized '
                'tf.Examples')
    for s in signature:
        if raw_feature_spec and s.name not in raw_feature_spec:
            logger.warning('input %r of serving_default is not in raw_feature_spec', s.name)
    order = sorted(signature, key=lambda s: (0, list(raw_feature_spec).index(s.name)) if s.name in raw_feature_spec
                   else (1, 0))
    return [{'name': s.name, 'dtype': s.dtype, 'shape': list(s.shape), 'missing': None} for s in order]


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
        extra_opset=[utils.make_opsetid(CONTRIB_DOMAIN, 1)],  # dropped later if unused
        custom_op_handlers={
            'Bucketize': (_bucketize_handler, []),
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


def _bucketize_handler(ctx, node, name, args):
    """Bucketize (tf.raw_ops.Bucketize, Keras' Discretization layer): the number of boundaries b with
    !(x < b), compared in float (double for a double input), as TensorFlow's kernel does; NaN falls in
    the last bucket."""
    from onnx import TensorProto, helper
    from tf2onnx import utils
    from tf2onnx.graph_builder import GraphBuilder
    boundaries = [float(b) for b in node.get_attr_value('boundaries')]
    x = node.input[0]
    double = ctx.get_dtype(x) == TensorProto.DOUBLE
    shapes, dtypes, outputs = node.output_shapes, node.output_dtypes, node.output
    ctx.remove_node(node.name)
    if not boundaries:  # one bucket: zeros shaped like the input
        shape = ctx.make_node('Shape', [x]).output[0]
        ctx.make_node('ConstantOfShape', [shape], name=name, outputs=outputs, shapes=shapes, dtypes=dtypes,
                      attr={'value': helper.make_tensor('value', TensorProto.INT32, [1], [0])})
        return
    if not double and ctx.get_dtype(x) != TensorProto.FLOAT:
        x = ctx.make_node('Cast', [x], attr={'to': TensorProto.FLOAT}).output[0]
    edges = ctx.make_const(utils.make_name(f'{name}/boundaries'),
                           np.array(boundaries, np.float64 if double else np.float32)).output[0]  # [K]
    gb = GraphBuilder(ctx)
    column = gb.make_unsqueeze({'data': x, 'axes': [-1]})                                         # [..., 1]
    hit = ctx.make_node('Not', [ctx.make_node('Less', [column, edges]).output[0]]).output[0]      # [..., K]
    counts = ctx.make_node('Cast', [hit], attr={'to': TensorProto.INT32}).output[0]
    gb.make_reduce_sum({'data': counts, 'axes': [-1], 'keepdims': 0, 'outputs': outputs},
                       name=name, shapes=shapes, dtypes=dtypes)


def _string_to_hash_bucket_fast_handler(ctx, node, name, string_hash, empty_buckets):
    """StringToHashBucketFast(strings, num_buckets) = Fingerprint64(s) % num_buckets (see the
    package docstring and export_onnx's string_hash)."""
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
        ctx.make_node(EXACT_HASH_OP, [strings, n_buckets], name=name, outputs=outputs, domain=CONTRIB_DOMAIN,
                      shapes=shapes, dtypes=dtypes)
        return
    # 'extensions': the native op (a different hash), with at least '' put in TensorFlow's bucket:
    # it is what a missing categorical value becomes once tf.Transform fills it in.
    hashed = ctx.make_node('StringToHashBucketFast', [strings, n_buckets], name=f'{name}/hash',
                           domain=CONTRIB_DOMAIN, shapes=shapes, dtypes=dtypes).output[0]
    is_empty = ctx.make_node('CategoryMapper', [strings], domain='ai.onnx.ml',
                             attr={'cats_strings': [b''], 'cats_int64s': [1], 'default_int64': 0}).output[0]
    is_empty = ctx.make_node('Cast', [is_empty], attr={'to': TensorProto.BOOL}).output[0]
    empty = ctx.make_const(utils.make_name(f'{name}/empty_bucket'),
                           np.array(empty_buckets[num_buckets], np.int64)).output[0]
    ctx.make_node('Where', [is_empty, empty, hashed], name=name, outputs=outputs, shapes=shapes, dtypes=dtypes)


def _fill_output_shapes(model_proto, saved_model_dir):
    """Gives an output whose shape tf2onnx could not infer (after a lookup table, say) the shape the
    signature declares (ONNX's checker requires one; unknown dimensions are left unnamed)."""
    from tensorflow.core.protobuf import saved_model_pb2

    missing = [o for o in model_proto.graph.output if not o.type.tensor_type.HasField('shape')]
    if not missing:
        return
    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(saved_model_dir, 'saved_model.pb'), 'rb') as f:
        saved.ParseFromString(f.read())
    declared = {}
    for meta_graph in saved.meta_graphs:
        if 'serving_default' in meta_graph.signature_def:
            declared = meta_graph.signature_def['serving_default'].outputs
    for output in missing:
        info = declared.get(output.name)
        if info is None or info.tensor_shape.unknown_rank:
            raise OnnxExportError(f'the rank of output {output.name!r} is unknown (neither tf2onnx nor the '
                                  'signature says it)')
        shape = output.type.tensor_type.shape
        for d in info.tensor_shape.dim:
            dim = shape.dim.add()
            if d.size >= 0:
                dim.dim_value = d.size


def _drop_unused_contrib_opset(model_proto):
    """Keep the ai.onnx.contrib opset import only if a node uses it (then onnxruntime-extensions is
    required to load the model)."""
    if not any(n.domain == CONTRIB_DOMAIN for n in model_proto.graph.node):
        kept = [o for o in model_proto.opset_import if o.domain != CONTRIB_DOMAIN]
        del model_proto.opset_import[:]
        model_proto.opset_import.extend(kept)

