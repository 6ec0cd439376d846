"""User code of the penguin example: tf.Transform preprocessing and a small Keras classifier.

The contract is TFX's: ``preprocessing_fn(inputs)`` for Transform, ``run_fn(fn_args)`` for Trainer.
"""
from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft
from tfx_bsl.public import tfxio

FEATURES = ['culmen_length_mm', 'culmen_depth_mm', 'flipper_length_mm', 'body_mass_g']
LABEL = 'species'
BATCH_SIZE = 20


def preprocessing_fn(inputs):
    """Scale each measurement to mean 0, variance 1 (over the train split); keep the label."""
    outputs = {name: tft.scale_to_z_score(inputs[name]) for name in FEATURES}
    outputs[LABEL] = inputs[LABEL]
    return outputs


def _dataset(file_pattern, data_accessor, tf_transform_output, batch_size):
    return data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(batch_size=batch_size, label_key=LABEL, shuffle_seed=7),
        tf_transform_output.transformed_metadata.schema).repeat()


def _model(learning_rate: float) -> tf.keras.Model:
    inputs = [tf.keras.layers.Input(shape=(1,), name=name) for name in FEATURES]
    x = tf.keras.layers.concatenate(inputs)
    for _ in range(2):
        x = tf.keras.layers.Dense(8, activation='relu')(x)
    outputs = tf.keras.layers.Dense(3, activation='softmax')(x)
    model = tf.keras.Model(inputs=inputs, outputs=outputs)
    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(),
                  metrics=[tf.keras.metrics.SparseCategoricalAccuracy()])
    return model


def _serving_fn(model, tf_transform_output):
    """serving_default: serialized tf.Examples in, class probabilities out (transform embedded)."""
    model.tft_layer = tf_transform_output.transform_features_layer()

    @tf.function(input_signature=[tf.TensorSpec(shape=[None], dtype=tf.string, name='examples')])
    def serve(serialized):
        spec = tf_transform_output.raw_feature_spec()
        spec.pop(LABEL)
        parsed = tf.io.parse_example(serialized, spec)
        transformed = model.tft_layer(parsed)
        return {'probabilities': model(transformed)}

    return serve


def run_fn(fn_args):
    tf.keras.utils.set_random_seed(fn_args.custom_config.get('seed', 42))
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    model = _model(fn_args.hyperparameters.get('learning_rate', 1e-2))
    if fn_args.train_steps:  # 0 steps: an untrained model (useful to watch the gate refuse it)
        train = _dataset(fn_args.train_files, fn_args.data_accessor, tf_transform_output, BATCH_SIZE)
        evaluation = _dataset(fn_args.eval_files, fn_args.data_accessor, tf_transform_output, BATCH_SIZE)
        model.fit(train, steps_per_epoch=fn_args.train_steps, validation_data=evaluation,
                  validation_steps=fn_args.eval_steps or 5, verbose=0,
                  callbacks=[tf.keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir)])
    model.save(fn_args.serving_model_dir, save_format='tf',
               signatures={'serving_default': _serving_fn(model, tf_transform_output)})
