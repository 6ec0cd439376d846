"""A module file written as for TFX (``preprocessing_fn`` and ``run_fn(fn_args)``), whose only change
is its ``tfx`` import line: ``from sluice.tfx import v1 as tfx`` instead of ``from tfx import v1 as tfx``.

``run_fn`` trains a small classifier of the penguins' species from the four measurements. It reads
the schema the way the pipeline gives it: through the Transform graph when there is one (the
examples stay raw and the transform layer is applied in the input pipeline), else from
``fn_args.schema_path``, else from a feature spec written here. The saved model's
``serving_default`` takes serialized tf.Examples, as TFX's Evaluator and Sluice's Trainer expect.
"""
from __future__ import annotations

from typing import List

import tensorflow as tf
import tensorflow_transform as tft
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_transform.tf_metadata import schema_utils
from tfx_bsl.public import tfxio

from sluice.tfx import v1 as tfx

MEASUREMENTS = ['culmen_length_mm', 'culmen_depth_mm', 'flipper_length_mm', 'body_mass_g']
SPECIES = 'species'
BATCH = 16
RAW_SPEC = {**{m: tf.io.FixedLenFeature(shape=[1], dtype=tf.float32) for m in MEASUREMENTS},
            SPECIES: tf.io.FixedLenFeature(shape=[1], dtype=tf.int64)}


def preprocessing_fn(inputs):
    """Each measurement as a z-score over the analyzed split; the species label as it is."""
    out = {m: tft.scale_to_z_score(inputs[m]) for m in MEASUREMENTS}
    out[SPECIES] = inputs[SPECIES]
    return out


def _split_label(features, transform_layer=None):
    if transform_layer is not None:
        features = transform_layer(features)
    features = dict(features)
    label = features.pop(SPECIES)
    return {m: features[m] for m in MEASUREMENTS}, label


def _dataset(files: List[str], accessor: tfx.components.DataAccessor, schema: schema_pb2.Schema,
             transform_layer=None) -> tf.data.Dataset:
    data = accessor.tf_dataset_factory(files, tfxio.TensorFlowDatasetOptions(batch_size=BATCH, shuffle_seed=3),
                                       schema=schema)
    return data.map(lambda f: _split_label(f, transform_layer)).repeat()


def _classifier() -> tf.keras.Model:
    inputs = {m: tf.keras.layers.Input(shape=(1,), name=m) for m in MEASUREMENTS}
    hidden = tf.keras.layers.Dense(8, activation='relu')(tf.keras.layers.concatenate(list(inputs.values())))
    model = tf.keras.Model(inputs=inputs, outputs=tf.keras.layers.Dense(3, activation='softmax')(hidden))
    model.compile(optimizer=tf.keras.optimizers.Adam(0.05), loss='sparse_categorical_crossentropy',
                  metrics=[tf.keras.metrics.SparseCategoricalAccuracy()])
    return model


def _serving(model, raw_spec, transform_output=None):
    spec = {k: v for k, v in raw_spec.items() if k in MEASUREMENTS}
    if transform_output is not None:
        model.tft_layer = transform_output.transform_features_layer()

    @tf.function(input_signature=[tf.TensorSpec(shape=[None], dtype=tf.string, name='examples')])
    def serve(serialized):
        parsed = tf.io.parse_example(serialized, spec)
        if transform_output is not None:
            parsed = model.tft_layer(parsed)
        return {'probabilities': model({m: parsed[m] for m in MEASUREMENTS})}

    return serve


def run_fn(fn_args: tfx.components.FnArgs):
    tf.keras.utils.set_random_seed(int(fn_args.custom_config.get('seed', 7)))
    transform_output = tft.TFTransformOutput(fn_args.transform_output) if fn_args.transform_output else None
    layer = None
    if transform_output is not None:
        schema = transform_output.raw_metadata.schema
        raw_spec = transform_output.raw_feature_spec()
        layer = transform_output.transform_features_layer()
    elif fn_args.schema_path:
        schema = tfx.utils.parse_pbtxt_file(fn_args.schema_path, schema_pb2.Schema())
        raw_spec = schema_utils.schema_as_feature_spec(schema).feature_spec
    else:
        schema = schema_utils.schema_from_feature_spec(RAW_SPEC)
        raw_spec = RAW_SPEC
    model = _classifier()
    model.fit(_dataset(fn_args.train_files, fn_args.data_accessor, schema, layer),
              steps_per_epoch=fn_args.train_steps,
              validation_data=_dataset(fn_args.eval_files, fn_args.data_accessor, schema, layer),
              validation_steps=fn_args.eval_steps, verbose=0)
    model.save(fn_args.serving_model_dir, save_format='tf',
               signatures={'serving_default': _serving(model, raw_spec, transform_output)})
