"""A module file in the shape of TFX's penguin_utils_keras.py: ``preprocessing_fn`` for Transform,
``tuner_fn`` for the Tuner (a keras_tuner.RandomSearch over the learning rate and the number of
hidden layers) and ``run_fn`` for the Trainer, which builds its model from
``keras_tuner.HyperParameters.from_config(fn_args.hyperparameters)``.

Written for this repository's tests (not copied from TFX). ``run_fn`` also records, in
``fn_args.model_run_dir``, the hyperparameters it was given and what the model it trained has (its
number of hidden layers and its optimizer's learning rate), for the tests to read back.
``custom_config``: ``max_trials`` (2), ``seed`` (1), and ``objective`` (the metric the search ranks
trials by, 'val_sparse_categorical_accuracy').
"""
from __future__ import annotations

import json
import os

import keras_tuner
import tensorflow as tf
import tensorflow_transform as tft
from tfx_bsl.public import tfxio

from sluice.components.tuner import TunerFnResult  # TFX: tfx.components.TunerFnResult

FEATURES = ['culmen_length_mm', 'culmen_depth_mm', 'flipper_length_mm', 'body_mass_g']
LABEL = 'species'
BATCH_SIZE = 20
USED_FILE = 'hyperparameters_used.json'


def preprocessing_fn(inputs):
    """Each measurement as a z-score over the analyzed split; the label as it is."""
    outputs = {name: tft.scale_to_z_score(inputs[name]) for name in FEATURES}
    outputs[LABEL] = inputs[LABEL]
    return outputs


def _input_fn(file_pattern, data_accessor, tf_transform_output, batch_size):
    return data_accessor.tf_dataset_factory(
        file_pattern, tfxio.TensorFlowDatasetOptions(batch_size=batch_size, label_key=LABEL, shuffle_seed=7),
        tf_transform_output.transformed_metadata.schema).repeat()


def _get_hyperparameters() -> keras_tuner.HyperParameters:
    """The search space, and the values used when no Tuner ran."""
    hp = keras_tuner.HyperParameters()
    hp.Choice('learning_rate', [1e-2, 1e-3], default=1e-2)
    hp.Int('num_layers', 1, 3, default=2)
    return hp


def _make_keras_model(hparams: keras_tuner.HyperParameters) -> tf.keras.Model:
    inputs = [tf.keras.layers.Input(shape=(1,), name=name) for name in FEATURES]
    x = tf.keras.layers.concatenate(inputs)
    for i in range(int(hparams.get('num_layers'))):
        x = tf.keras.layers.Dense(8, activation='relu', name=f'hidden_{i}')(x)
    outputs = tf.keras.layers.Dense(3, name='logits')(x)
    model = tf.keras.Model(inputs=inputs, outputs=outputs)
    model.compile(optimizer=tf.keras.optimizers.Adam(hparams.get('learning_rate')),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[tf.keras.metrics.SparseCategoricalAccuracy()])
    return model


def tuner_fn(fn_args):
    """A RandomSearch over _get_hyperparameters(), its trials kept in fn_args.working_dir."""
    config = fn_args.custom_config or {}
    tuner = keras_tuner.RandomSearch(
        _make_keras_model,
        max_trials=int(config.get('max_trials', 2)),
        hyperparameters=_get_hyperparameters(),
        allow_new_entries=False,
        objective=keras_tuner.Objective(config.get('objective', 'val_sparse_categorical_accuracy'), 'max'),
        seed=int(config.get('seed', 1)),
        directory=fn_args.working_dir,
        project_name='penguin_tuning')
    transform_graph = tft.TFTransformOutput(fn_args.transform_graph_path)
    train_dataset = _input_fn(fn_args.train_files, fn_args.data_accessor, transform_graph, BATCH_SIZE)
    eval_dataset = _input_fn(fn_args.eval_files, fn_args.data_accessor, transform_graph, BATCH_SIZE)
    return TunerFnResult(
        tuner=tuner,
        fit_kwargs={'x': train_dataset, 'validation_data': eval_dataset, 'steps_per_epoch': fn_args.train_steps,
                    'validation_steps': fn_args.eval_steps, 'verbose': 0})


def _serving_signature(model, tf_transform_output):
    """serving_default: serialized tf.Examples in, logits out (the transform embedded)."""
    model.tft_layer = tf_transform_output.transform_features_layer()

    @tf.function(input_signature=[tf.TensorSpec(shape=[None], dtype=tf.string, name='examples')])
    def serve(serialized):
        spec = tf_transform_output.raw_feature_spec()
        spec.pop(LABEL)
        transformed = model.tft_layer(tf.io.parse_example(serialized, spec))
        return {'outputs': model([transformed[name] for name in FEATURES])}

    return serve


def run_fn(fn_args):
    """Trains the model the hyperparameters describe (the Tuner's best, or the defaults)."""
    tf.keras.utils.set_random_seed(7)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    train_dataset = _input_fn(fn_args.train_files, fn_args.data_accessor, tf_transform_output, BATCH_SIZE)
    eval_dataset = _input_fn(fn_args.eval_files, fn_args.data_accessor, tf_transform_output, BATCH_SIZE)
    if fn_args.hyperparameters:
        hparams = keras_tuner.HyperParameters.from_config(fn_args.hyperparameters)
    else:
        hparams = _get_hyperparameters()
    model = _make_keras_model(hparams)
    model.fit(train_dataset, steps_per_epoch=fn_args.train_steps, validation_data=eval_dataset,
              validation_steps=fn_args.eval_steps, verbose=0)
    with open(os.path.join(fn_args.model_run_dir, USED_FILE), 'w') as f:
        json.dump({'given': fn_args.hyperparameters,
                   'hidden_layers': sum(layer.name.startswith('hidden_') for layer in model.layers),
                   'learning_rate': float(model.optimizer.learning_rate.numpy())}, f)
    tf.saved_model.save(model, fn_args.serving_model_dir,
                        signatures={'serving_default': _serving_signature(model, tf_transform_output)})
