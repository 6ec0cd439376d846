"""BulkInferrer: a trained model's predictions for every example of some splits, as PredictionLogs.

    >>> inferrer = BulkInferrer(examples=unlabelled.outputs['examples'], model=trainer.outputs['model'],
    ...                         model_blessing=validator.outputs['blessing'])
    >>> inferrer.outputs['inference_result']

The model's serving SavedModel (``Format-Serving/`` of the Model artifact) is run with tfx_bsl's
RunInference on the serialized tf.Examples of each split (all of them, or ``example_splits``), in a
Beam pipeline built from the pipeline's ``beam_pipeline_args``. The signature (``serving_default``
unless ``signature_names`` names others) must take ONE string tensor of serialized tf.Examples, as a
TFX module's serving function does (``tf.io.parse_example`` inside); a predict signature gives a
``predict_log`` per example (the request holds the example, the response every output of the
signature), a classify or regress signature a ``classify_log`` / ``regress_log``, several classify
and regress signatures a ``multi_inference_log``.

The InferenceResult holds, as TFX's does, gzipped TFRecord files ``prediction_logs-NNNNN-of-NNNNN.gz``
of ``tensorflow_serving.apis.prediction_log_pb2.PredictionLog``, one record per example, the splits
together. Its custom properties say what was done: ``inferred`` (1/0), ``split_names`` (JSON list of
the splits inferred), ``example_count`` and ``model_id``.

With a ``model_blessing`` that is NOT_BLESSED nothing is inferred (as in TFX): the InferenceResult
is published empty with ``inferred=0``, a ``reason`` and a ``NOT_INFERRED`` file saying why. A split
the examples do not have, a model without ``Format-Serving/``, or a signature RunInference cannot
feed are errors that say what to change.
"""
from __future__ import annotations

import glob
import json
import os
import re
from typing import Any

from sluice.components.component import Component, Input, Output, Parameter
from sluice.components.driver import Driver
from sluice.components.executor import Executor
from sluice.components.production.destination import SERVING_DIR
from sluice.metadata.artifact import Artifact, Examples, InferenceResult, Model, ModelBlessing

PREDICTION_LOGS = 'prediction_logs'  # TFX's file prefix: <uri>/prediction_logs-00000-of-00001.gz
NOT_INFERRED = 'NOT_INFERRED'  # the file saying why an InferenceResult is empty
DEFAULT_SIGNATURE = 'serving_default'
DEFAULT_TAG = 'serve'
_COUNTER = 'bulk_inferrer_examples'  # Beam counter namespace; one counter per split


class InferenceError(RuntimeError):
    """RunInference cannot run the model (its signature, or on these examples); the message says why."""
    retryable = False


def _check_names(what: str):
    def check(value: list) -> None:
        if not all(isinstance(v, str) and v for v in value):
            raise ValueError(f'{what} is a list of non-empty strings; got {value!r}')
        if len(set(value)) != len(value):
            raise ValueError(f'{what} names one of them twice: {value!r}')
    return check


class BulkInferrerDriver(Driver):
    """Adds the blessing's verdict to the cache key (as the Pusher does): the key of the execution that
    made a blessing does not always decide its verdict, and the verdict decides what is written."""

    def cache_key_parts(self, inputs: dict[str, Artifact | None]) -> dict[str, Any]:
        parts = super().cache_key_parts(inputs)
        blessing = inputs.get('model_blessing')
        if blessing is not None:
            parts['external'] = {**parts['external'], 'model_blessing.blessed': str(blessing.get('blessed'))}
        return parts


class BulkInferrerExecutor(Executor):
    imports = ('tensorflow', 'tfx_bsl.public.tfxio')

    def run(self, *, examples: Examples, model: Model, model_blessing: ModelBlessing | None,
            inference_result: InferenceResult, example_splits: list, signature_names: list, tags: list) -> None:
        splits = self._splits(examples, example_splits)
        inference_result.set('model_id', model.id or 0)
        if model_blessing is not None:
            blessed_id = model_blessing.get('current_model_id')
            if blessed_id and model.id and blessed_id != model.id:
                raise ValueError(f'{model_blessing!r} blesses model #{blessed_id}, not {model!r}; wire the same '
                                 'Trainer output into the ModelValidator (or Evaluator) and the BulkInferrer.')
            if not model_blessing.get('blessed'):
                return self._not_inferred(inference_result, f'{model!r} is NOT_BLESSED ({model_blessing!r}); '
                                                            'nothing was inferred')
        path = os.path.join(model.uri, SERVING_DIR)
        if not os.path.isfile(os.path.join(path, 'saved_model.pb')):
            raise InferenceError(
                f'{model!r} holds no {SERVING_DIR}/saved_model.pb: BulkInferrer runs the serving SavedModel, which '
                "the Trainer's run_fn saves to fn_args.serving_model_dir (model.save(fn_args.serving_model_dir, "
                "signatures={'serving_default': ...})).")
        signatures = list(signature_names) or [DEFAULT_SIGNATURE]
        tag_set = list(tags) or [DEFAULT_TAG]
        check_signatures(model, path, signatures, tag_set)
        counts = self._infer(examples, splits, model, path, signatures, tag_set, inference_result.uri)
        inference_result.set('inferred', 1)
        inference_result.set('split_names', json.dumps(splits))
        inference_result.set('example_count', sum(counts.values()))
        shown = ', '.join(f"'{s}': {counts[s]}" for s in splits)
        print(f"BulkInferrer: {sum(counts.values())} PredictionLogs of {model!r} (signature "
              f"{', '.join(signatures)}) for {shown}", flush=True)

    @staticmethod
    def _splits(examples: Examples, example_splits: list) -> list[str]:
        have = examples.split_names
        if not have:
            raise ValueError(f'{examples!r} records no split_names; BulkInferrer reads Split-<name>/ of an Examples '
                             'artifact made by an ExampleGen.')
        chosen = list(example_splits) or list(have)
        missing = [s for s in chosen if s not in have]
        if missing:
            raise ValueError(f"BulkInferrer(example_splits={chosen!r}): {examples!r} has no split "
                             f"{', '.join(repr(s) for s in missing)}; its splits are {', '.join(have)} "
                             '(example_splits=[] infers on all of them).')
        for split in chosen:
            if not glob.glob(os.path.join(examples.split_uri(split), '*')):
                raise ValueError(f"Split '{split}' of {examples!r} holds no files ({examples.split_uri(split)} is "
                                 'empty or gone); run its ExampleGen again (a new run), or leave the split out.')
        return chosen

    @staticmethod
    def _not_inferred(inference_result: InferenceResult, reason: str) -> None:
        inference_result.set('inferred', 0)
        inference_result.set('split_names', '[]')
        inference_result.set('example_count', 0)
        inference_result.set('reason', reason)
        with open(os.path.join(inference_result.uri, NOT_INFERRED), 'w') as f:
            f.write(reason + '\n')
        print(f'BulkInferrer: {reason}', flush=True)

    def _infer(self, examples: Examples, splits: list[str], model: Model, path: str, signatures: list[str],
               tags: list[str], out_dir: str) -> dict[str, int]:
        import apache_beam as beam
        from apache_beam.metrics.metric import Metrics, MetricsFilter
        from tensorflow_serving.apis import prediction_log_pb2
        from tfx_bsl.public.beam import RunInference
        from tfx_bsl.public.proto import model_spec_pb2

        from sluice.components.tf_setup import libraries_without_autograph

        libraries_without_autograph()
        spec = model_spec_pb2.InferenceSpecType(saved_model_spec=model_spec_pb2.SavedModelSpec(
            model_path=path, signature_name=signatures, tag=tags))
        p = self.beam_pipeline()  # the pipeline's beam_pipeline_args; a bad one is Beam's error, not the model's
        try:
            logs = []
            for split in splits:
                counter = Metrics.counter(_COUNTER, split)

                def counted(record: bytes, counter: Any = counter) -> bytes:
                    counter.inc()
                    return record

                logs.append(p
                            | f'Read[{split}]' >> beam.io.ReadFromTFRecord(
                                os.path.join(examples.split_uri(split), '*'),
                                compression_type=beam.io.filesystem.CompressionTypes.AUTO)
                            | f'Count[{split}]' >> beam.Map(counted)
                            | f'RunInference[{split}]' >> RunInference(spec))
            _ = (logs | 'Flatten' >> beam.Flatten(pipeline=p)
                 | 'WritePredictionLogs' >> beam.io.WriteToTFRecord(
                     os.path.join(out_dir, PREDICTION_LOGS), file_name_suffix='.gz',
                     coder=beam.coders.ProtoCoder(prediction_log_pb2.PredictionLog)))
            result = p.run()
            result.wait_until_finish()
        except Exception as e:  # noqa: BLE001 - said again with the model and the examples it ran on
            raise InferenceError(
                f'RunInference could not run {model!r} (signature {", ".join(signatures)} of {path}) on the '
                f"split(s) {', '.join(splits)} of {examples!r}: {_brief(e).rstrip('.')}. The "
                'signature parses each serialized tf.Example itself: the examples must carry the features it '
                'parses (its raw feature spec, the label may be absent), with the types it expects.') from e
        counts = {s: 0 for s in splits}
        for c in result.metrics().query(MetricsFilter().with_namespace(_COUNTER))['counters']:
            if c.key.metric.name in counts:
                counts[c.key.metric.name] = max(counts[c.key.metric.name], c.committed or c.attempted or 0)
        return counts


def _brief(error: BaseException, limit: int = 600) -> str:
    """What went wrong, on one line: Beam's wrapper and TensorFlow's node lines left out."""
    lines = [ln.strip() for ln in str(error).splitlines()]
    lines = [re.sub(r"\s*\[while running '[^']*'\]$", '', ln) for ln in lines if ln and not ln.startswith('[[')]
    text = ' '.join(ln for ln in lines if ln) or '(no message)'
    if not re.match(r'^[\w.]+(Error|Exception)\b', text):
        text = f'{type(error).__name__}: {text}'
    return text if len(text) <= limit else text[:limit - 3] + '...'


def check_signatures(model: Model, path: str, signatures: list[str], tags: list[str]) -> None:
    """Raise InferenceError unless each signature exists under ``tags`` and takes one string tensor (the
    serialized tf.Examples RunInference feeds) with a predict, classify or regress method."""
    import tensorflow as tf
    from tensorflow.python.saved_model import loader_impl

    saved = loader_impl.parse_saved_model(path)
    graphs = {tuple(sorted(g.meta_info_def.tags)): g for g in saved.meta_graphs}
    graph = graphs.get(tuple(sorted(tags)))
    if graph is None:
        have = '; '.join(','.join(t) for t in graphs) or 'none'
        raise InferenceError(f'{model!r}: its SavedModel ({path}) has no MetaGraph tagged {",".join(tags)} (its '
                             f'tag sets: {have}); give BulkInferrer(tags=[...]) one of them.')
    methods = {tf.saved_model.PREDICT_METHOD_NAME, tf.saved_model.CLASSIFY_METHOD_NAME,
               tf.saved_model.REGRESS_METHOD_NAME}
    for name in signatures:
        if name not in graph.signature_def:
            have = ', '.join(sorted(s for s in graph.signature_def if not s.startswith('__'))) or 'none'
            raise InferenceError(f"{model!r} has no signature '{name}' (its signatures: {have}); name one in "
                                 'BulkInferrer(signature_names=[...]), or export it in the Trainer\'s run_fn.')
        sig = graph.signature_def[name]
        inputs = {k: f'{tf.dtypes.as_dtype(v.dtype).name}' + _shape(v) for k, v in sorted(sig.inputs.items())}
        if len(inputs) != 1 or list(sig.inputs.values())[0].dtype != tf.string.as_datatype_enum:
            raise InferenceError(
                f"Signature '{name}' of {model!r} takes {', '.join(f'{k}: {t}' for k, t in inputs.items()) or 'nothing'}; "
                'RunInference feeds ONE string tensor of serialized tf.Examples. Export a signature that takes '
                "them and parses them (tf.io.parse_example over the raw feature spec, label left out, as the penguin "
                "example's module file does) and save it as 'serving_default' or name it in "
                'BulkInferrer(signature_names=[...]).')
        if sig.method_name not in methods:
            raise InferenceError(f"Signature '{name}' of {model!r} has method {sig.method_name!r}; RunInference runs "
                                 'predict, classify and regress signatures.')


def _shape(tensor_info: Any) -> str:
    if tensor_info.tensor_shape.unknown_rank:
        return '[?]'
    return '[' + ', '.join('None' if d.size < 0 else str(d.size) for d in tensor_info.tensor_shape.dim) + ']'


class BulkInferrer(Component):
    """Runs a (blessed) model over examples: one PredictionLog per example, ``prediction_logs-*.gz``."""
    examples = Input(Examples)
    model = Input(Model)
    model_blessing = Input(ModelBlessing, optional=True)  # given: nothing is inferred unless it is BLESSED
    inference_result = Output(InferenceResult)
    example_splits = Parameter(list, default=[], check=_check_names('example_splits'))  # [] = every split
    signature_names = Parameter(list, default=[], check=_check_names('signature_names'))  # [] = serving_default
    tags = Parameter(list, default=[], check=_check_names('tags'))  # [] = serve
    libraries = ('tensorflow', 'tf-keras', 'tensorflow-transform', 'tfx-bsl', 'tensorflow-serving-api',
                 'apache-beam')
    executor = BulkInferrerExecutor
    driver = BulkInferrerDriver
