"""The ONNX export's special cases against TensorFlow itself: bucket boundaries (with NaN and
infinities), out-of-vocabulary string hashing, missing values, and the clear errors."""
from __future__ import annotations

import numpy as np
import pytest

from sluice.components.onnx_export import OnnxExportError, dense_features, export_onnx, max_abs_diff, run_onnx
from sluice.components.onnx_export.farmhash import fingerprint64


def test_fingerprint64_is_tensorflows_string_hash():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    strings = ['', 'Cash', 'Credit Card', 'é', '日本語', ' '] + [
        ''.join(chr(c) for c in rng.integers(32, 0x2FF, size=n)) for n in range(0, 200, 3)]
    buckets = 2 ** 62 + 7
    expected = tf.strings.to_hash_bucket_fast(strings, buckets).numpy()
    assert [fingerprint64(s.encode('utf-8')) % buckets for s in strings] == list(expected)


def _example(x=None, s=None, n=None):
    import tensorflow as tf

    ex = tf.train.Example()
    if x is not None:
        ex.features.feature['x'].float_list.value.append(x)
    if s is not None:
        ex.features.feature['s'].bytes_list.value.append(s.encode('utf-8'))
    if n is not None:
        ex.features.feature['n'].int64_list.value.append(n)
    return ex.SerializeToString()


@pytest.fixture(scope='module')
def ops_model(tmp_path_factory):
    """A serving_default over serialized tf.Examples using the ops that need special handling."""
    import tensorflow as tf

    spec = {'x': tf.io.FixedLenFeature([1], tf.float32), 's': tf.io.VarLenFeature(tf.string),
            'n': tf.io.VarLenFeature(tf.int64)}
    boundaries = tf.constant([-1.0, 0.0, 0.5, 2.0])

    def dense(sparse, default):
        return tf.reshape(tf.sparse.to_dense(
            tf.SparseTensor(sparse.indices, sparse.values, [sparse.dense_shape[0], 1]), default), [-1])

    @tf.function(input_signature=[tf.TensorSpec(shape=[None], dtype=tf.string, name='examples')])
    def serve(serialized):
        parsed = tf.io.parse_example(serialized, spec)
        x = tf.reshape(parsed['x'], [-1])
        s = dense(parsed['s'], '')
        n = dense(parsed['n'], tf.constant(-1, tf.int64))
        return {'upper': tf.searchsorted(boundaries, x, side='right', out_type=tf.int64),
                'lower': tf.searchsorted(boundaries, x, side='left', out_type=tf.int64),
                'hash10': tf.strings.to_hash_bucket_fast(s, 10),
                'hash2': tf.strings.to_hash_bucket_fast(s, 2),
                'hash1': tf.strings.to_hash_bucket_fast(s, 1),
                'n_plus_1': n + 1}

    directory = str(tmp_path_factory.mktemp('ops') / 'model')
    tf.saved_model.save(tf.Module(), directory, signatures={'serving_default': serve.get_concrete_function()})
    onnx_path = directory + '.onnx'
    description = export_onnx(directory, onnx_path, spec)
    return directory, onnx_path, description


def test_inputs_are_the_raw_features_with_a_missing_value_convention(ops_model):
    _, _, description = ops_model
    by_name = {d['name']: d for d in description}
    assert set(by_name) == {'x', 's', 'n'}
    assert by_name['x'] == {'name': 'x', 'dtype': 'float32', 'shape': [None, 1], 'missing': None}
    assert by_name['s']['dtype'] == 'string' and by_name['s']['missing'] == ''
    assert by_name['n']['dtype'] == 'int64' and by_name['n']['missing'] == np.iinfo(np.int64).min


def test_special_ops_match_tensorflow_exactly(ops_model):
    directory, onnx_path, description = ops_model
    values = [-2.0, -1.0, 0.0, 0.25, 0.5, 1.0, 2.0, 3.0, float('nan'), float('inf'), float('-inf')]
    strings = [None, '', 'Cash', 'Credit Card', 'Unseen Co', 'é', ' ', 'x' * 300]
    records = [_example(x, strings[i % len(strings)], None if i % 3 == 0 else i)
               for i, x in enumerate(values * 3)]
    assert max_abs_diff(directory, onnx_path, description, records) == 0.0
    # One example at a time too (batch of 1), and a batch where every optional feature is missing.
    assert max_abs_diff(directory, onnx_path, description, records[:1], batch_size=1) == 0.0
    assert max_abs_diff(directory, onnx_path, description, [_example(1.0), _example(0.1)]) == 0.0
    out = run_onnx(onnx_path, dense_features([_example(0.3, 'Cash', 4)], description))
    assert int(np.reshape(out['n_plus_1'], -1)[0]) == 5 and int(np.reshape(out['upper'], -1)[0]) == 2


def test_a_required_feature_without_value_is_an_error(ops_model):
    _, _, description = ops_model
    with pytest.raises(OnnxExportError, match=r"example has no value for the required feature 'x'"):
        dense_features([_example(None, 'a')], description)


def test_a_signature_without_tf_example_parsing_is_a_clear_error(tmp_path):
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec(shape=[None, 2], dtype=tf.float32, name='x')])
    def serve(x):
        return {'y': x * 2.0}

    directory = str(tmp_path / 'model')
    tf.saved_model.save(tf.Module(), directory, signatures={'serving_default': serve.get_concrete_function()})
    with pytest.raises(OnnxExportError, match=r'serving_default must parse serialized tf\.Examples with one '
                                              r'tf\.io\.parse_example \(ParseExampleV2 op\); found 0'):
        export_onnx(directory, str(tmp_path / 'model.onnx'))
