"""User code of the Chicago taxi example: predict the tip of a trip.

Many cells of the data are empty, so the schema declares the features without a shape: they reach
``preprocessing_fn`` as SparseTensors and are filled in here. The transform uses the common
tf.Transform analyzers: z-scores, buckets (quantiles) and vocabularies with out-of-vocabulary
buckets. The contract is TFX's: ``preprocessing_fn(inputs)``, ``run_fn(fn_args)``.
"""
from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft
from tfx_bsl.public import tfxio

DENSE_FEATURES = ['trip_miles', 'fare', 'trip_seconds']
BUCKET_FEATURES = ['pickup_latitude', 'pickup_longitude', 'dropoff_latitude', 'dropoff_longitude']
VOCAB_FEATURES = ['payment_type', 'company']
LABEL = 'tips'
BUCKETS = 10
VOCAB_SIZE = 50
OOV_BUCKETS = 5
BATCH_SIZE = 64


def _fill_in_missing(x, default):
    """A dense [batch] tensor from a (possibly sparse, possibly empty) [batch, 1] feature."""
    if isinstance(x, tf.sparse.SparseTensor):
        x = tf.sparse.to_dense(tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1]), default)
    return tf.reshape(x, [-1])


def preprocessing_fn(inputs):
    outputs = {}
    for name in DENSE_FEATURES:
        value = _fill_in_missing(inputs[name], tf.zeros([], inputs[name].dtype))
        outputs[f'{name}_xf'] = tft.scale_to_z_score(tf.cast(value, tf.float32))
    for name in BUCKET_FEATURES:
        outputs[f'{name}_xf'] = tft.bucketize(_fill_in_missing(inputs[name], 0.0), BUCKETS)
    for name in VOCAB_FEATURES:
        outputs[f'{name}_xf'] = tft.compute_and_apply_vocabulary(
            _fill_in_missing(inputs[name], ''), top_k=VOCAB_SIZE, num_oov_buckets=OOV_BUCKETS)
    outputs[LABEL] = _fill_in_missing(inputs[LABEL], 0.0)
    return outputs


def _dataset(file_pattern, data_accessor, tf_transform_output, batch_size):
    return data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(batch_size=batch_size, label_key=LABEL, shuffle_seed=7),
        tf_transform_output.transformed_metadata.schema).repeat()


def _model(tf_transform_output, learning_rate: float) -> tf.keras.Model:
    inputs, parts = [], []
    for name in DENSE_FEATURES:
        x = tf.keras.layers.Input(shape=(), name=f'{name}_xf', dtype=tf.float32)
        inputs.append(x)
        parts.append(tf.keras.layers.Reshape((1,))(x))
    for name in BUCKET_FEATURES + VOCAB_FEATURES:
        x = tf.keras.layers.Input(shape=(), name=f'{name}_xf', dtype=tf.int64)
        inputs.append(x)
        size = tf_transform_output.num_buckets_for_transformed_feature(f'{name}_xf')
        parts.append(tf.keras.layers.CategoryEncoding(num_tokens=size, output_mode='one_hot')(x))
    x = tf.keras.layers.concatenate(parts)
    x = tf.keras.layers.Dense(32, activation='relu')(x)
    x = tf.keras.layers.Dense(16, activation='relu')(x)
    output = tf.keras.layers.Dense(1)(x)
    model = tf.keras.Model(inputs=inputs, outputs=output)
    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate), loss='mse',
                  metrics=[tf.keras.metrics.MeanAbsoluteError()])
    return model


def _serving_fn(model, tf_transform_output):
    """serving_default: serialized tf.Examples in, the predicted tip out (transform embedded)."""
    model.tft_layer = tf_transform_output.transform_features_layer()

    @tf.function(input_signature=[tf.TensorSpec(shape=[None], dtype=tf.string, name='examples')])
    def serve(serialized):
        spec = tf_transform_output.raw_feature_spec()
        spec.pop(LABEL)
        transformed = model.tft_layer(tf.io.parse_example(serialized, spec))
        transformed.pop(LABEL, None)
        return {'tip': model(transformed)}

    return serve


def run_fn(fn_args):
    tf.keras.utils.set_random_seed(fn_args.custom_config.get('seed', 42))
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    model = _model(tf_transform_output, fn_args.hyperparameters.get('learning_rate', 3e-3))
    if fn_args.train_steps:
        train = _dataset(fn_args.train_files, fn_args.data_accessor, tf_transform_output, BATCH_SIZE)
        evaluation = _dataset(fn_args.eval_files, fn_args.data_accessor, tf_transform_output, BATCH_SIZE)
        model.fit(train, steps_per_epoch=fn_args.train_steps, validation_data=evaluation,
                  validation_steps=fn_args.eval_steps or 5, verbose=0,
                  callbacks=[tf.keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir)])
    model.save(fn_args.serving_model_dir, save_format='tf',
               signatures={'serving_default': _serving_fn(model, tf_transform_output)})
