"""OnnxExporter: the ONNX copy of a trained model, checked against its SavedModel, as a node of its own.

A Trainer with ``export_onnx`` (the default) brings one along: the node ``<trainer id>.onnx``, which a
pipeline runs after the Trainer and beside the Evaluator, so converting and checking the model is off
the path from training to the blessing. Pushers and InfraValidators fed that Trainer's model wait for
it and take its output; nothing is pushed whose ONNX copy failed its check.

It writes ``model.onnx``: the model's ``serving_default`` with the raw features as inputs (no tf.Example
parsing, the transform embedded; a signature of dense per-feature inputs, as a Keras model saved with
its default signature has, keeps those inputs). It runs both models on up to 2000 examples of the
``eval_split`` (the raw examples a Transform read, found through lineage), records the largest
absolute difference as ``onnx_max_abs_diff`` and fails if it exceeds ``onnx_tolerance`` or if the
signature cannot be exported. Beside the model, ``serving_samples.json``: a request made of the
first rows and the answers, which servers warm up on and check. ``export_onnx='if_possible'`` makes
a failure no failure: the OnnxModel then holds no file, says why in ``onnx_skipped``, and the model is
pushed without an ONNX copy (a pipeline written for TFX, whose Trainer exports no ONNX, runs as it
did there).
"""
from __future__ import annotations

import glob
import logging
import os
import shutil
from typing import Any

from sluice.components.component import Component, Input, Output, Parameter
from sluice.components.driver import Driver
from sluice.components.executor import Executor
from sluice.components.production.destination import ONNX_FILE, SERVING_DIR
from sluice.metadata.artifact import Artifact, Examples, Model, OnnxModel, TransformGraph

ONNX_CHECK_ROWS = 2000
ONNX_IF_POSSIBLE = 'if_possible'  # export_onnx: export where it works, else record why and go on
ONNX_SKIPPED = 'onnx_skipped'     # the OnnxModel's property saying why it holds no ONNX copy (ONNX_IF_POSSIBLE)
_ONNX_WAYS = ("Set export_onnx=False to train without the ONNX copy, or export_onnx='if_possible' to keep it "
              'only when the export works.')

logger = logging.getLogger(__name__)


def check_export_onnx(value: bool | str) -> None:
    if isinstance(value, str) and value != ONNX_IF_POSSIBLE:
        raise ValueError(f"export_onnx must be True, False or {ONNX_IF_POSSIBLE!r}, got {value!r}")


def _check_exporting(value: bool | str) -> None:
    check_export_onnx(value)
    if value is False:
        raise ValueError("export_onnx=False makes no ONNX copy: leave the OnnxExporter out (a Trainer with "
                         'export_onnx=False brings none)')


class OnnxExporterDriver(Driver):
    """Also resolves ``raw_examples`` (what the check runs on): the examples a Transform read, found
    through lineage when ``examples`` are its transformed examples. A Transform is recognised by what
    it did, not by its name: the execution that produced ``examples`` also produced a TransformGraph
    and read Examples under the input key ``examples`` (so a subclass or a renamed node counts)."""

    def resolve_inputs(self) -> dict[str, Artifact | None]:
        inputs = super().resolve_inputs()
        if inputs.get('raw_examples') is None and inputs.get('examples') is not None:
            inputs['raw_examples'] = raw_examples_of(self.store, inputs['examples'])
        return inputs

    def cache_key_parts(self, inputs: dict[str, Artifact | None]) -> dict[str, Any]:
        """Adds the Model artifact itself: an input's fingerprint comes from the key of the execution
        that made it, and a Trainer run again under the same key (``--no-cache Trainer``) makes other
        weights, whose ONNX copy an earlier model's is not."""
        parts = super().cache_key_parts(inputs)
        parts['external'] = {**parts['external'], 'model_id': str(inputs['model'].id)}
        return parts


def raw_examples_of(store: Any, examples: Artifact) -> Artifact:
    """The examples behind ``examples``: those the Transform(s) that made them read, else themselves."""
    node = store.lineage(examples.id)
    while node.execution is not None and _is_transform(node.execution):
        node = node.inputs['examples'][0]
    return node.artifact


def _is_transform(execution: Any) -> bool:
    """Did this execution transform examples: read Examples under 'examples' and write a TransformGraph?"""
    read = execution.inputs.get('examples') or []
    wrote = [a for artifacts in execution.outputs.values() for a in artifacts]
    return len(read) == 1 and isinstance(read[0], Examples) and any(isinstance(a, TransformGraph) for a in wrote)


class OnnxExporterExecutor(Executor):
    def run(self, *, model: Model, examples: Examples, transform_graph: TransformGraph | None,
            raw_examples: Examples | None, onnx_model: OnnxModel, export_onnx: bool | str, onnx_tolerance: float,
            eval_split: str) -> None:
        from sluice.components.onnx_export import OnnxExportError

        onnx_model.set('model_id', model.id)
        try:
            inputs, diff = self._export(model, onnx_model, raw_examples or examples, eval_split, transform_graph,
                                        onnx_tolerance)
        except OnnxExportError as e:
            if export_onnx != ONNX_IF_POSSIBLE:
                raise
            # No ONNX copy at all (a server or a Pusher must not find half of one), and why.
            for name in os.listdir(onnx_model.uri):
                path = os.path.join(onnx_model.uri, name)
                shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
            reason = ' '.join(str(e).split())  # one line, for the log and the property
            onnx_model.set(ONNX_SKIPPED, reason)
            logger.warning("%s: no ONNX copy of model #%s (export_onnx='%s', recorded as the OnnxModel's %s): %s",
                           self.node_id or 'OnnxExporter', model.id, ONNX_IF_POSSIBLE, ONNX_SKIPPED, reason)
            return
        onnx_model.set('onnx_inputs', [dict(d, missing=None if d['missing'] is None else str(d['missing']))
                                       for d in inputs])
        onnx_model.set('onnx_max_abs_diff', diff)

    @staticmethod
    def _export(model: Model, onnx_model: OnnxModel, raw_examples: Examples, eval_split: str,
                transform_graph: TransformGraph | None, onnx_tolerance: float) -> tuple[list[dict], float]:
        """Writes model.onnx and serving_samples.json and checks the ONNX model against the SavedModel
        on the eval examples; returns its inputs and the largest difference. Raises OnnxExportError
        (with the ways out) when the signature cannot be exported, the check cannot run, or the
        difference exceeds the tolerance."""
        from sluice.components import onnx_export
        from sluice.components.onnx_export.loading import SAMPLE_ROWS, write_samples

        serving_dir = os.path.join(model.uri, SERVING_DIR)
        if not os.path.isfile(os.path.join(serving_dir, 'saved_model.pb')):
            raise onnx_export.OnnxExportError(f'{model!r} holds no {SERVING_DIR}/saved_model.pb to export')
        onnx_path = os.path.join(onnx_model.uri, ONNX_FILE)
        raw_spec = None
        if transform_graph is not None:
            import tensorflow_transform as tft
            raw_spec = tft.TFTransformOutput(transform_graph.uri).raw_feature_spec()
        try:
            inputs = onnx_export.export_onnx(serving_dir, onnx_path, raw_spec)
        except onnx_export.OnnxExportError as e:
            raise onnx_export.OnnxExportError(f'{e}. {_ONNX_WAYS}') from e
        except Exception as e:  # loading the SavedModel failed: the converter's own reason, said plainly
            raise onnx_export.OnnxExportError(
                f'tf2onnx could not convert the serving_default signature of {serving_dir}: {type(e).__name__}: '
                f'{e}. {_ONNX_WAYS}') from e
        records = read_records(raw_examples, eval_split, ONNX_CHECK_ROWS)
        try:
            diff = onnx_export.max_abs_diff(serving_dir, onnx_path, inputs, records)
            # A request of the first rows and the answers, for servers to warm up on and check (sluice.serving).
            sample = records[:SAMPLE_ROWS]
            write_samples(onnx_path, onnx_export.dense_features(sample, inputs), inputs)
        except Exception as e:
            raise onnx_export.OnnxExportError(
                f"The ONNX export (inputs {', '.join(d['name'] for d in inputs)}) could not be checked against the "
                f"SavedModel on the '{eval_split}' examples: {type(e).__name__}: {e}. {_ONNX_WAYS}") from e
        if diff > onnx_tolerance:
            raise onnx_export.OnnxExportError(
                f"The ONNX export (inputs {', '.join(d['name'] for d in inputs)}) differs from the SavedModel by up "
                f"to {diff:.3g} on the '{eval_split}' examples (tolerance onnx_tolerance={onnx_tolerance:g}). "
                f'{_ONNX_WAYS}')
        return inputs, diff


def read_records(examples: Examples, split: str, limit: int) -> list[bytes]:
    import tensorflow as tf

    files = sorted(glob.glob(os.path.join(examples.split_uri(split), '*')))
    if not files:
        raise FileNotFoundError(f"No '{split}' examples under {examples.uri} to check the ONNX export on.")
    dataset = tf.data.TFRecordDataset(files, compression_type='GZIP' if files[0].endswith('.gz') else '')
    return [bytes(r) for r in dataset.take(limit).as_numpy_iterator()]


class OnnxExporter(Component):
    """Exports ``model`` to ONNX and checks it against the SavedModel on ``eval_split``. A Trainer with
    ``export_onnx`` makes one (``trainer.onnx_exporter``, node id ``<trainer id>.onnx``); wire one by
    hand only for a model that no such Trainer made."""
    model = Input(Model)
    examples = Input(Examples)  # what the model was trained on; the check reads the raw examples behind them
    transform_graph = Input(TransformGraph, optional=True)
    raw_examples = Input(Examples, optional=True)
    onnx_model = Output(OnnxModel)
    export_onnx = Parameter((bool, str), default=True, check=_check_exporting)  # True or 'if_possible'
    onnx_tolerance = Parameter(float, default=1e-4)
    eval_split = Parameter(str, default='eval')
    libraries = ('tensorflow', 'tf-keras', 'tensorflow-transform', 'tf2onnx', 'onnx', 'onnxruntime',
                 'onnxruntime-extensions')
    executor = OnnxExporterExecutor
    driver = OnnxExporterDriver
    # tf2onnx's conversion is Python: in threads beside the Evaluator's TFMA, the two took as long as
    # one after the other (bench/README.md, "The ONNX export beside the Evaluator").
    apart_when_parallel = True

    def __init__(self, owner: Component | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.owner = owner  # the Trainer this export belongs to: its id names this node

    @property
    def id(self) -> str:
        if self._id is None and getattr(self, 'owner', None) is not None:
            return f'{self.owner.id}.onnx'
        return super().id


def onnx_channel(model_channel: Any) -> Any:
    """The OnnxModel channel that goes with a Model channel: the output of the OnnxExporter its
    Trainer brought along, or None (a Trainer with ``export_onnx=False``, or another producer)."""
    producer = getattr(model_channel, 'producer', None)
    return next((c.outputs['onnx_model'] for c in getattr(producer, 'companions', ())
                 if isinstance(c, OnnxExporter) and c.inputs['model'] is model_channel), None)


def onnx_model_of(store: Any, model: Artifact) -> OnnxModel | None:
    """The newest live OnnxModel made from ``model`` and recorded in ``store``, or None: what a Pusher
    fed a model from elsewhere (a resolver, ``sluice promote``) pushes as its ONNX copy."""
    found = [a for a in store.artifacts_of_type(OnnxModel.type_name())
             if a.get('model_id') == model.id and a.state == 'LIVE']
    return max(found, key=lambda a: a.id) if found else None


def onnx_dir(onnx_model: OnnxModel | None) -> str | None:
    """The directory whose files are pushed beside the SavedModel: the OnnxModel's, unless it holds
    no ONNX copy (``export_onnx='if_possible'`` where the export failed)."""
    if onnx_model is None or onnx_model.get(ONNX_SKIPPED):
        return None
    return onnx_model.uri


class WithOnnxDriver(Driver):
    """For a component that takes a Model and its ``onnx_model`` (Pusher, InfraValidator): a model that
    comes with no ``onnx_model`` channel (from a resolver or an importer) gets the ONNX copy recorded
    for it in the store, if there is one."""

    def resolve_inputs(self) -> dict[str, Artifact | None]:
        inputs = super().resolve_inputs()
        if inputs.get('onnx_model') is None and inputs.get('model') is not None:
            inputs['onnx_model'] = onnx_model_of(self.store, inputs['model'])
        return inputs


def wire_onnx(kwargs: dict) -> dict:
    """A component's arguments with ``onnx_model`` wired to the ONNX copy of its ``model``, if the
    producer of that model brings one (a Trainer's OnnxExporter) and none is given."""
    if kwargs.get('onnx_model') is None:
        kwargs = {**kwargs, 'onnx_model': onnx_channel(kwargs.get('model'))}
    return kwargs


def check_onnx_of(onnx_model: OnnxModel | None, model: Artifact, who: str) -> None:
    if onnx_model is not None and onnx_model.get('model_id') != model.id:
        raise ValueError(f'{onnx_model!r} is the ONNX copy of model #{onnx_model.get("model_id")}, not {model!r}; '
                         f"wire the same Trainer's outputs into {who}(model=..., onnx_model=...).")
