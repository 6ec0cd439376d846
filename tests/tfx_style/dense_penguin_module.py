"""A Trainer module file shaped like the one of TFX's getting-started tutorial (penguin_simple): no
Transform, no schema input (the feature spec is written here), and a Keras model saved with Keras'
own default signature, so ``serving_default`` takes the four measurements as dense float32 tensors
of shape [None, 1], one per feature, named after it, instead of serialized tf.Examples. Only its
``tfx`` import line differs from a TFX module file.

``custom_config={'unconvertible': True}`` saves the same model with a ``serving_default`` that
passes the scores through ``tf.math.lgamma`` (TensorFlow's Lgamma op, which tf2onnx cannot
convert), for the tests of a signature that cannot be exported to ONNX.

The tests do not measure the model: it trains a few steps.
"""
from __future__ import annotations

import tensorflow as tf
from tensorflow_transform.tf_metadata import schema_utils
from tfx_bsl.public import tfxio

from sluice.tfx import v1 as tfx

MEASUREMENTS = ['culmen_length_mm', 'culmen_depth_mm', 'flipper_length_mm', 'body_mass_g']
SPECIES = 'species'
SPEC = {**{name: tf.io.FixedLenFeature(shape=[1], dtype=tf.float32) for name in MEASUREMENTS},
        SPECIES: tf.io.FixedLenFeature(shape=[1], dtype=tf.int64)}


def _batches(files, accessor: tfx.components.DataAccessor, batch_size: int) -> tf.data.Dataset:
    options = tfxio.TensorFlowDatasetOptions(batch_size=batch_size, label_key=SPECIES, shuffle_seed=5)
    return accessor.tf_dataset_factory(files, options, schema=schema_utils.schema_from_feature_spec(SPEC)).repeat()


def _model() -> tf.keras.Model:
    inputs = [tf.keras.layers.Input(shape=(1,), name=name) for name in MEASUREMENTS]
    hidden = tf.keras.layers.Dense(6, activation='relu')(tf.keras.layers.concatenate(inputs))
    scores = tf.keras.layers.Dense(3)(hidden)  # logits, one per species
    model = tf.keras.Model(inputs=inputs, outputs=scores)
    model.compile(optimizer=tf.keras.optimizers.Adam(0.02),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def run_fn(fn_args: tfx.components.FnArgs):
    tf.keras.utils.set_random_seed(3)
    model = _model()
    model.fit(_batches(fn_args.train_files, fn_args.data_accessor, 16), steps_per_epoch=fn_args.train_steps,
              validation_data=_batches(fn_args.eval_files, fn_args.data_accessor, 8),
              validation_steps=fn_args.eval_steps, verbose=0)
    if not fn_args.custom_config.get('unconvertible'):
        model.save(fn_args.serving_model_dir, save_format='tf')  # Keras' default serving signature
        return

    @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name=name) for name in MEASUREMENTS])
    def serve(culmen_length_mm, culmen_depth_mm, flipper_length_mm, body_mass_g):
        scores = model([culmen_length_mm, culmen_depth_mm, flipper_length_mm, body_mass_g])
        return {'lgamma_of_scores': tf.math.lgamma(tf.nn.softplus(scores) + 1.0)}

    model.save(fn_args.serving_model_dir, save_format='tf', signatures={'serving_default': serve})
