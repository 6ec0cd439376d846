"""Transform: the user's ``preprocessing_fn`` with tf.Transform on Beam.

    >>> tf = Transform(examples=gen.outputs['examples'], schema=schema.outputs['schema'],
    ...                module_file='penguin_module.py')

The analyzers (means, vocabularies, quantiles, ...) run over the train split; every split is then
transformed. Outputs: ``transform_graph`` (tf.Transform's output directory; as in TFX it also holds
the raw data's metadata, so ``tft.TFTransformOutput(dir).raw_feature_spec()`` works) and
``transformed_examples`` (``Split-<split>/transformed_examples-*.gz``, gzipped TFRecords of
tf.Example).

The data stays in Apache Arrow record batches from end to end: each split is read once through
tfx_bsl's TFXIO (the analyzed split feeds both the analyzers and its own transform), transformed
with ``output_record_batches=True``, and the record batches are encoded to tf.Examples by tfx_bsl's
``RecordBatchToExamplesEncoder`` (through ``tft_beam.EncodeTransformedDataset``). No per-instance
Python dicts are built.
"""
from __future__ import annotations

import os

from sluice.components.tf_setup import libraries_without_autograph
from sluice.components.component import Component, Input, Output, Parameter
from sluice.components.executor import Executor
from sluice.components.module_file import load_module_file
from sluice.components.schema_gen import load_schema
from sluice.metadata.artifact import Examples, Schema, TransformGraph


class TransformExecutor(Executor):
    def run(self, *, examples: Examples, schema: Schema, module_file: str, analyze_split: str,
            transform_graph: TransformGraph, transformed_examples: Examples) -> None:
        import apache_beam as beam
        import tensorflow_transform as tft
        import tensorflow_transform.beam as tft_beam
        from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io
        from tfx_bsl.public import tfxio

        libraries_without_autograph()  # tf.Transform's and tfx_bsl's own code, not the preprocessing_fn
        module = load_module_file(module_file, required=['preprocessing_fn'])
        splits = examples.split_names
        if analyze_split not in splits:
            raise ValueError(f"Transform analyzes split '{analyze_split}', but the examples have only "
                             f'{", ".join(splits)}; pass analyze_split=... to choose one.')
        schema_proto = load_schema(schema)
        raw_metadata = dataset_metadata.DatasetMetadata(schema_proto)
        metadata_io.write_metadata(raw_metadata, os.path.join(transform_graph.uri,
                                                              tft.TFTransformOutput.RAW_METADATA_DIR))

        def source(split: str) -> tfxio.TFExampleRecord:
            return tfxio.TFExampleRecord(file_pattern=os.path.join(examples.split_uri(split), '*'),
                                         schema=schema_proto, telemetry_descriptors=['sluice', 'Transform'])

        def write(split: str, transformed_dataset: tuple) -> None:
            out = transformed_examples.split_uri(split)
            os.makedirs(out, exist_ok=True)
            _ = (transformed_dataset | f'Encode[{split}]' >> tft_beam.EncodeTransformedDataset()
                 | f'Write[{split}]' >> beam.io.WriteToTFRecord(
                     os.path.join(out, 'transformed_examples'), file_name_suffix='.gz',
                     compression_type=beam.io.filesystem.CompressionTypes.GZIP))

        with self.beam_pipeline() as p, tft_beam.Context(temp_dir=os.path.join(self.tmp_dir, 'tft')):
            # The analyzed split is read once: the same record batches feed the analyzers and, once
            # the transform function is known, its own transform.
            analyzed = source(analyze_split)
            raw = p | f'Read[{analyze_split}]' >> analyzed.BeamSource()
            transformed, transform_fn = (
                (raw, analyzed.TensorAdapterConfig())
                | f'AnalyzeAndTransform[{analyze_split}]' >> tft_beam.AnalyzeAndTransformDataset(
                    module.preprocessing_fn, output_record_batches=True))
            _ = transform_fn | 'WriteTransformFn' >> tft_beam.WriteTransformFn(transform_graph.uri)
            write(analyze_split, transformed)
            for split in splits:
                if split == analyze_split:
                    continue
                data = source(split)
                raw_split = p | f'Read[{split}]' >> data.BeamSource()
                transformed = (((raw_split, data.TensorAdapterConfig()), transform_fn)
                               | f'Transform[{split}]' >> tft_beam.TransformDataset(output_record_batches=True))
                write(split, transformed)
        transformed_examples.set('split_names', splits)
        transformed_examples.set('span', examples.get('span', 0) or 0)
        transformed_examples.set('version', examples.get('version', 0) or 0)


class Transform(Component):
    """Runs ``preprocessing_fn`` from ``module_file`` with tf.Transform (analyze on train, apply to all)."""
    examples = Input(Examples)
    schema = Input(Schema)
    transform_graph = Output(TransformGraph)
    transformed_examples = Output(Examples)
    module_file = Parameter(str, user_code=True)
    analyze_split = Parameter(str, default='train')
    libraries = ('tensorflow', 'tensorflow-transform', 'apache-beam', 'tfx-bsl')
    executor = TransformExecutor
