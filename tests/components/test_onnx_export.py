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


def _save(directory, serve, module=None):
    import tensorflow as tf

    tf.saved_model.save(module or tf.Module(), directory, signatures={'serving_default': serve})
    return directory


def _dense_serving():
    """A serving_default of dense per-feature inputs (no tf.Example parsing): a string [None, 1] looked
    up in a vocabulary, an int64 [None] and a float32 [None, 1]."""
    import tensorflow as tf

    class Serving(tf.Module):
        def __init__(self):
            super().__init__()
            self.vocabulary = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
                ['Biscoe', 'Dream'], tf.constant([1, 2], tf.int64)), default_value=-1)

        @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.string, name='island'),
                                      tf.TensorSpec([None], tf.int64, name='year'),
                                      tf.TensorSpec([None, 1], tf.float32, name='x')])
        def serve(self, island, year, x):
            code = tf.cast(self.vocabulary.lookup(island), tf.float32)
            return {'score': code * x + tf.cast(tf.reshape(year, [-1, 1]), tf.float32) / 1000.0,
                    'code': self.vocabulary.lookup(island)}

    return Serving()


def test_a_dense_signature_is_exported_with_its_own_inputs(tmp_path):
    """A signature taking the features themselves (as a Keras model saved with its default signature
    does) keeps its inputs: same names, dtypes and shapes, a value required; the check feeds the
    SavedModel the same rows as dense tensors, and a server answers rows by the features' names."""
    from sluice.components.onnx_export.loading import open_model, write_samples

    module = _dense_serving()
    directory = _save(str(tmp_path / 'model'), module.serve, module)
    onnx_path = str(tmp_path / 'model.onnx')
    description = export_onnx(directory, onnx_path)
    assert description == [
        {'name': 'island', 'dtype': 'string', 'shape': [None, 1], 'missing': None},
        {'name': 'x', 'dtype': 'float32', 'shape': [None, 1], 'missing': None},
        {'name': 'year', 'dtype': 'int64', 'shape': [None], 'missing': None}]
    records = [tf_example(island=island, x=i / 7 - 1.0, year=2007 + i % 3)
               for i, island in enumerate(['Biscoe', 'Dream', 'Torgersen', '', 'é'] * 3)]
    assert max_abs_diff(directory, onnx_path, description, records) == 0.0
    out = run_onnx(onnx_path, dense_features(records[:3], description))
    assert np.reshape(out['code'], -1).tolist() == [1, 2, -1]

    served = open_model(onnx_path)
    assert {name: [d['size'] for d in spec['tensor_shape']['dim']]
            for name, spec in served.signature()['inputs'].items()} == {
        'island': ['-1', '1'], 'x': ['-1', '1'], 'year': ['-1']}
    answer, _ = served.predict({'instances': [{'island': 'Dream', 'x': 0.5, 'year': 2008}]})
    assert answer['predictions'] == [{'code': [2], 'score': [pytest.approx(1.0 + 2.008)]}]
    with pytest.raises(ValueError, match=r'feature "year" of instance 0 is missing: expected int64'):
        served.predict({'instances': [{'island': 'Dream', 'x': 0.5}]})
    write_samples(onnx_path, dense_features(records, description), description)  # the warm-up rows


def test_bucketize_matches_tensorflow_exactly(tmp_path):
    """Bucketize (Keras' Discretization layer), which tf2onnx has no handler for, on float32 (NaN and
    infinities included), int64 and float64 values, and with no boundaries at all."""
    import tensorflow as tf

    class Serving(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name='x'),
                                      tf.TensorSpec([None], tf.int64, name='n')])
        def serve(self, x, n):
            return {'x_bucket': tf.raw_ops.Bucketize(input=x, boundaries=[-1.0, 0.0, 0.5, 2.0]),
                    'n_bucket': tf.raw_ops.Bucketize(input=n, boundaries=[0.0, 3.0, 10.0]),
                    'x64': tf.raw_ops.Bucketize(input=tf.cast(x, tf.float64) + 1e-9, boundaries=[0.0, 0.5]),
                    'one_bucket': tf.raw_ops.Bucketize(input=x, boundaries=[])}

    module = Serving()
    directory = _save(str(tmp_path / 'model'), module.serve, module)
    export_onnx(directory, str(tmp_path / 'model.onnx'))
    x = np.array([-2, -1, -0.5, 0, 1e-10, 0.25, 0.5, 1, 2, 3, np.nan, np.inf, -np.inf], np.float32).reshape(-1, 1)
    n = np.array([-5, 0, 1, 3, 4, 10, 11, 2 ** 40, -2 ** 40, 7, 3, 2, 9], np.int64)
    expected = {k: v.numpy() for k, v in module.serve(tf.constant(x), tf.constant(n)).items()}
    got = run_onnx(str(tmp_path / 'model.onnx'), {'x': x, 'n': n})
    for name, value in expected.items():
        assert got[name].dtype == np.int32 and np.array_equal(got[name].reshape(value.shape), value), name


def tf_example(**features):
    import tensorflow as tf

    ex = tf.train.Example()
    for name, value in features.items():
        if isinstance(value, str):
            ex.features.feature[name].bytes_list.value.append(value.encode('utf-8'))
        elif isinstance(value, int):
            ex.features.feature[name].int64_list.value.append(value)
        else:
            ex.features.feature[name].float_list.value.append(value)
    return ex.SerializeToString()


def _refusals():
    import tensorflow as tf

    spec = {'x': tf.io.FixedLenFeature([1], tf.float32)}

    def examples(fn):
        return tf.function(fn, input_signature=[tf.TensorSpec([None], tf.string, name='examples')])

    def dense(fn, shape=(None, 1), dtype=tf.float32):
        return tf.function(fn, input_signature=[tf.TensorSpec(shape, dtype, name='x')])

    return {
        'parsed twice': (examples(lambda s: {'y': tf.io.parse_example(s, spec)['x']
                                             + tf.io.parse_example(s, {'z': spec['x']})['z']}),
                         r'serving_default\(examples: string \[None\]\) cannot be exported to ONNX: serving_default '
                         r'must parse serialized tf\.Examples with one tf\.io\.parse_example \(ParseExampleV2 op\); '
                         r'found 2'),
        'several values per example': (
            dense(lambda x: {'y': x * 2.0}, shape=(None, 2)),
            r"serving_default\(x: float32 \[None, 2\]\) cannot be exported to ONNX: input 'x' has shape \[None, 2\]; "
            r'a signature of dense inputs must take one value per example and input \(shape \[None\] or '
            r'\[None, 1\]\), or one string tensor of serialized tf\.Examples$'),
        'int32': (dense(lambda x: {'y': x * 2}, dtype=tf.int32),
                  r"serving_default\(x: int32 \[None, 1\]\) cannot be exported to ONNX: input 'x' is int32; a "
                  r'signature of dense inputs must take float32, int64 or string tensors'),
        'an output named as an input': (dense(lambda x: {'x': x * 2.0}),
                                        r"serving_default\(x: float32 \[None, 1\]\) cannot be exported to ONNX: "
                                        r"output 'x' has the name of an input; ONNX needs distinct names$"),
        'an op tf2onnx lacks': (dense(lambda x: {'y': tf.math.lgamma(x)}),
                                r'serving_default\(x: float32 \[None, 1\]\) cannot be exported to ONNX: tf2onnx has '
                                r'no conversion for the TensorFlow op\(s\) Lgamma$'),
    }


@pytest.mark.parametrize('case', ['parsed twice', 'several values per example', 'int32', 'an output named as an input',
                                  'an op tf2onnx lacks'])
def test_a_signature_that_cannot_be_exported_is_a_clear_error(tmp_path, case):
    serve, message = _refusals()[case]
    directory = _save(str(tmp_path / 'model'), serve.get_concrete_function())
    with pytest.raises(OnnxExportError, match=message):
        export_onnx(directory, str(tmp_path / 'model.onnx'))
    assert not (tmp_path / 'model.onnx').exists()
