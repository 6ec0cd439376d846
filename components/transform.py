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

import glob
import json
import hashlib
import os
import re
import shutil
from typing import Any, Callable

from sluice.components.tf_setup import libraries_without_autograph
from sluice.components.component import Component, Input, Output, Parameter
from sluice.components.driver import Driver
from sluice.components.executor import Executor
from sluice.components.module_file import load_module_file
from sluice.components.schema_gen import load_schema
from sluice.metadata.artifact import Artifact, Examples, Schema, TransformCache, TransformGraph


class TransformExecutor(Executor):
    imports = ('tensorflow', 'tfx_bsl.public.tfxio', 'tensorflow_transform.beam')

    def run(self, *, examples: Examples, schema: Schema, module_file: str, analyze_split: str,
            transform_graph: TransformGraph, transformed_examples: Examples,
            analyzer_cache: TransformCache | None = None, cache_analyzers: bool = False,
            updated_analyzer_cache: TransformCache | None = None, custom_config: dict | None = None) -> None:
        import apache_beam as beam
        import tensorflow_transform as tft
        import tensorflow_transform.beam as tft_beam
        from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io
        from tfx_bsl.public import tfxio

        libraries_without_autograph()  # tf.Transform's and tfx_bsl's own code, not the preprocessing_fn
        module = load_module_file(module_file, required=['preprocessing_fn'])
        preprocessing_fn = with_custom_config(module.preprocessing_fn, custom_config or {}, module_file)
        splits = examples.split_names
        if analyze_split not in splits:
            raise ValueError(f"Transform analyzes split '{analyze_split}', but the examples have only "
                             f'{", ".join(splits)}; pass analyze_split=... to choose one.')
        schema_proto = load_schema(schema)
        raw_metadata = dataset_metadata.DatasetMetadata(schema_proto)
        metadata_io.write_metadata(raw_metadata, os.path.join(transform_graph.uri,
                                                              tft.TFTransformOutput.RAW_METADATA_DIR))

        def source(split: str, files: list[str] | None = None) -> tfxio.TFExampleRecord:
            return tfxio.TFExampleRecord(file_pattern=files or os.path.join(examples.split_uri(split), '*'),
                                         schema=schema_proto, telemetry_descriptors=['sluice', 'Transform'])

        def write(split: str, transformed_dataset: tuple) -> None:
            out = transformed_examples.split_uri(split)
            os.makedirs(out, exist_ok=True)
            _ = (transformed_dataset | f'Encode[{split}]' >> tft_beam.EncodeTransformedDataset()
                 | f'Write[{split}]' >> beam.io.WriteToTFRecord(
                     os.path.join(out, 'transformed_examples'), file_name_suffix='.gz',
                     compression_type=beam.io.filesystem.CompressionTypes.GZIP))

        with self.beam_pipeline() as p, tft_beam.Context(temp_dir=os.path.join(self.tmp_dir, 'tft')):
            analyzed = source(analyze_split)
            if cache_analyzers and updated_analyzer_cache is not None:
                transform_fn = self._analyze_with_cache(p, preprocessing_fn, examples, analyze_split,
                                                        source, analyzer_cache, updated_analyzer_cache)
                remaining = splits
            else:  # the analyzed split is read once: it feeds the analyzers and, then, its own transform
                raw = p | f'Read[{analyze_split}]' >> analyzed.BeamSource()
                transformed, transform_fn = (
                    (raw, analyzed.TensorAdapterConfig())
                    | f'AnalyzeAndTransform[{analyze_split}]' >> tft_beam.AnalyzeAndTransformDataset(
                        preprocessing_fn, output_record_batches=True))
                write(analyze_split, transformed)
                remaining = [split for split in splits if split != analyze_split]
            _ = transform_fn | 'WriteTransformFn' >> tft_beam.WriteTransformFn(transform_graph.uri)
            for split in remaining:
                data = source(split)
                raw_split = p | f'Read[{split}]' >> data.BeamSource()
                transformed = (((raw_split, data.TensorAdapterConfig()), transform_fn)
                               | f'Transform[{split}]' >> tft_beam.TransformDataset(output_record_batches=True))
                write(split, transformed)
        transformed_examples.set('split_names', splits)
        if cache_analyzers and updated_analyzer_cache is not None:
            _carry_forward(analyzer_cache, updated_analyzer_cache, self._cached_keys)
            updated_analyzer_cache.set('dataset_keys', json.dumps(sorted(os.listdir(updated_analyzer_cache.uri))))
            updated_analyzer_cache.set('read_from_cache', json.dumps(sorted(self._cached_keys)))
        transformed_examples.set('span', examples.get('span', 0) or 0)
        transformed_examples.set('version', examples.get('version', 0) or 0)


    def _analyze_with_cache(self, p: Any, preprocessing_fn: Callable, examples: Examples, split: str,
                            source: Callable, cache: TransformCache | None, updated: TransformCache) -> Any:
        """Analyse ``split`` with tf.Transform's analyzer cache: one dataset per span (keyed by its
        content), read only when the cache lacks a result its analyzers need."""
        import tensorflow_transform.beam as tft_beam
        from tensorflow_transform.beam import analysis_graph_builder
        from tensorflow_transform.beam import analyzer_cache as tft_cache
        from tfx_bsl.tfxio import tensor_adapter

        members = span_datasets(examples, split)
        keys = {name: tft_cache.DatasetKey(name) for name in members}
        config = source(split).TensorAdapterConfig()
        needed = analysis_graph_builder.get_analysis_cache_entry_keys(
            preprocessing_fn, tensor_adapter.TensorAdapter(config).OriginalTypeSpecs(), list(keys.values()), False)
        have = {key: cached_entries(cache, key) for key in keys.values()} if cache is not None else {}
        self._cached_keys = [key.key for key, entries in have.items() if needed and needed <= entries]
        data = {key: None if key.key in self._cached_keys  # analysed before: the results come from the cache
                else p | f'Read[{name}]' >> source(split, members[name]).BeamSource()
                for name, key in keys.items()}
        input_cache = {}
        if any(have.values()):
            input_cache = p | 'ReadAnalyzerCache' >> tft_cache.ReadAnalysisCacheFromFS(
                cache.uri, [key for key, entries in have.items() if entries])
        transform_fn, output_cache = ((data, input_cache, config)
                                      | 'AnalyzeWithCache' >> tft_beam.AnalyzeDatasetWithCache(preprocessing_fn))
        _ = output_cache | 'WriteAnalyzerCache' >> tft_cache.WriteAnalysisCacheToFS(p, updated.uri, list(keys.values()))
        return transform_fn


def with_custom_config(preprocessing_fn: Callable, custom_config: dict, module_file: str) -> Callable:
    """``preprocessing_fn`` as tf.Transform calls it (with the inputs only): given ``custom_config`` too
    when it declares that parameter (TFX's contract, ``preprocessing_fn(inputs, custom_config)``)."""
    import inspect

    if 'custom_config' not in inspect.signature(preprocessing_fn).parameters:
        if custom_config:
            raise ValueError(f'Transform was given custom_config={custom_config!r}, but preprocessing_fn in '
                             f'{module_file} takes no custom_config parameter; declare it: '
                             'def preprocessing_fn(inputs, custom_config).')
        return preprocessing_fn

    def configured(inputs: Any) -> Any:
        return preprocessing_fn(inputs, custom_config=custom_config)
    return configured


def span_datasets(examples: Examples, split: str) -> dict[str, list[str]]:
    """The split's files by span (a LatestSpans window names them ``*-span<N>-*``), each under a
    dataset key made of the split, the span and a digest of the files' bytes: the same data gets the
    same key in every run, and changed data a new one."""
    groups: dict[int, list[str]] = {}
    for path in sorted(glob.glob(os.path.join(examples.split_uri(split), '*'))):
        found = re.search(r'-span(\d+)-', os.path.basename(path))
        groups.setdefault(int(found.group(1)) if found else int(examples.get('span', 0) or 0), []).append(path)
    out = {}
    for span, files in sorted(groups.items()):
        digest = hashlib.sha256()
        for path in files:
            with open(path, 'rb') as f:
                for block in iter(lambda: f.read(1 << 20), b''):
                    digest.update(block)
        out[f'{split}-span{span}-{digest.hexdigest()[:16]}'] = files
    return out


def cached_entries(cache: TransformCache | None, key: Any) -> set[bytes]:
    """The cache entry keys an analyzer cache holds for a dataset (empty if none). Reads the cache's
    manifest with tf.Transform's own reader (not public API: if it moves, nothing counts as cached and
    every dataset is analysed again)."""
    from tensorflow_transform.beam import analyzer_cache as tft_cache

    path = os.path.join(cache.uri, key.key) if cache is not None else ''
    manifest = getattr(tft_cache, '_ManifestFile', None)
    if not path or manifest is None or not os.path.isdir(path):
        return set()
    try:
        return set(manifest(path).read())
    except Exception:  # noqa: BLE001 - an unreadable cache only costs the analysis it would have saved
        return set()


def _carry_forward(cache: TransformCache | None, updated: TransformCache, keys: list[str]) -> None:
    """Datasets answered from the cache were not written again: copy their entries into the new cache,
    so that the next run, which starts from this one's, still finds them."""
    for key in keys:
        target = os.path.join(updated.uri, key)
        if cache is not None and not os.path.exists(os.path.join(target, 'MANIFEST')):
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(os.path.join(cache.uri, key), target)


class TransformDriver(Driver):
    """With ``cache_analyzers``, the analyzer cache is this node's newest one from an earlier run of the
    pipeline (unless one is wired in). It only saves work: tf.Transform reuses a cached analyzer result
    only for the same data and the same analyzer, so the cache is not part of the cache key."""

    def resolve_inputs(self) -> dict[str, Artifact | None]:
        resolved = super().resolve_inputs()
        if self.component.parameters['cache_analyzers'] and resolved.get('analyzer_cache') is None:
            resolved['analyzer_cache'] = self._newest_cache()
        return resolved

    def _newest_cache(self) -> Artifact | None:
        for record in reversed(self.store.node_executions_across_runs(self.pipeline.name, self.component.id)):
            for artifact in record.outputs.get('updated_analyzer_cache', []):
                if artifact.state == 'LIVE' and artifact.get('dataset_keys') and artifact.exists():
                    return artifact
        return None

    def cache_key_parts(self, inputs: dict[str, Artifact | None]) -> dict[str, Any]:
        return super().cache_key_parts({k: v for k, v in inputs.items() if k != 'analyzer_cache'})


class Transform(Component):
    """Runs ``preprocessing_fn`` from ``module_file`` with tf.Transform (analyze on train, apply to all).
    ``cache_analyzers=True`` keeps tf.Transform's analyzer cache (``updated_analyzer_cache``) and starts
    from the previous one, so that data analysed before (the spans of a window seen by an earlier run,
    or the same data after an edit elsewhere in the module file) is not analysed again."""
    examples = Input(Examples)
    schema = Input(Schema)
    analyzer_cache = Input(TransformCache, optional=True)
    transform_graph = Output(TransformGraph)
    transformed_examples = Output(Examples)
    updated_analyzer_cache = Output(TransformCache)
    module_file = Parameter(str, user_code=True)
    analyze_split = Parameter(str, default='train')
    cache_analyzers = Parameter(bool, default=False)
    custom_config = Parameter(dict, default={})  # preprocessing_fn(inputs, custom_config), where it declares it
    libraries = ('tensorflow', 'tensorflow-transform', 'apache-beam', 'tfx-bsl')
    executor = TransformExecutor
    driver = TransformDriver
