"""Trainer: calls the user's ``run_fn(fn_args)``; its ONNX copy is made by the node it brings along.

    >>> trainer = Trainer(module_file='penguin_module.py', examples=tf.outputs['transformed_examples'],
    ...                   transform_graph=tf.outputs['transform_graph'], schema=schema.outputs['schema'],
    ...                   train_steps=100, eval_steps=5)

``fn_args`` carries TFX's field names (train_files, eval_files, train_steps, eval_steps, schema_path,
schema_file, transform_graph_path, transform_output, data_accessor, serving_model_dir,
eval_model_dir, model_run_dir, working_dir, base_model, hyperparameters, custom_config), so a TFX
module file runs after changing only its ``tfx`` import lines. ``run_fn`` must save a SavedModel
to ``fn_args.serving_model_dir`` whose ``serving_default`` takes serialized tf.Examples (the
transform embedded), as most TFX modules do, or the raw features as dense tensors named after them
(a Keras model saved with its default signature, as in TFX's penguin_simple tutorial).

The ONNX copy of the model (``export_onnx``, the default) is made by a node of its own that the
Trainer brings along, ``<trainer id>.onnx`` (``sluice.components.onnx_exporter``): it runs beside the
Evaluator, and Pushers and InfraValidators fed this Trainer's model wait for it. ``export_onnx``
(True, False or ``'if_possible'``) and ``onnx_tolerance`` are its parameters, given here; ``export_onnx=False``
makes none.

Tuned hyperparameters: ``best_hyperparameters=tuner.outputs['best_hyperparameters']`` (a Tuner's
HyperParameters, TFX's ``Trainer(hyperparameters=...)``) hands ``run_fn`` the KerasTuner config the Tuner
found, as TFX does (``keras_tuner.HyperParameters.from_config(fn_args.hyperparameters)``). The
``hyperparameters={name: value}`` parameter then fixes values over the tuned ones (each replaces or adds
that name in the config's ``values``); without the input, ``fn_args.hyperparameters`` is the parameter as
given.

Warm starts: ``warm_start_from=DESTINATION`` sets ``fn_args.base_model`` to the SavedModel in
production there (as the destination says, so a rolled-back or hand-pushed version counts), or None
while nothing is; the version is part of the cache key, so a new push reruns the Trainer. A
``base_model`` input channel, if wired, takes precedence.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable

from sluice.components.component import Channel, Component, Input, Output, Parameter, WiringError
from sluice.components.driver import Driver
from sluice.components.executor import Executor
from sluice.components.module_file import load_module_file
from sluice.components.onnx_exporter import OnnxExporter, check_export_onnx
from sluice.components.tf_setup import libraries_without_autograph
from sluice.components.production.destination import SERVING_DIR, production, serving_path
from sluice.components.production.record import version_artifact
from sluice.metadata.artifact import Artifact, Examples, HyperParameters, Model, ModelRun, Schema, TransformGraph

HYPERPARAMETERS_FILE = 'best_hyperparameters.txt'  # a HyperParameters artifact's file (TFX's name)


@dataclass
class DataAccessor:
    """How ``run_fn`` reads examples, as in TFX: ``tf_dataset_factory(file_pattern, options, schema)``.
    ``data_view_decode_fn`` is None, as TFX's is for a Trainer given no DataView (Sluice has none)."""
    tf_dataset_factory: Callable[..., Any]
    record_batch_factory: Callable[..., Any]
    data_view_decode_fn: Callable[..., Any] | None = None


def _patterns(file_pattern: Any) -> list[str]:
    return [file_pattern] if isinstance(file_pattern, str) else list(file_pattern)


def _tf_dataset_factory(file_pattern: Any, dataset_options: Any, schema: Any = None) -> Any:
    from tfx_bsl.public import tfxio

    source = tfxio.TFExampleRecord(file_pattern=_patterns(file_pattern), schema=schema,
                                   telemetry_descriptors=['sluice', 'Trainer'])
    return source.TensorFlowDataset(dataset_options)


def _record_batch_factory(file_pattern: Any, options: Any, schema: Any = None) -> Any:
    from tfx_bsl.public import tfxio

    source = tfxio.TFExampleRecord(file_pattern=_patterns(file_pattern), schema=schema,
                                   telemetry_descriptors=['sluice', 'Trainer'])
    return source.RecordBatches(options)


@dataclass
class FnArgs:
    """What ``run_fn`` receives; field names follow TFX's FnArgs."""
    working_dir: str = ''
    train_files: list[str] = field(default_factory=list)
    eval_files: list[str] = field(default_factory=list)
    train_steps: int | None = None
    eval_steps: int | None = None
    schema_path: str | None = None
    schema_file: str | None = None
    transform_graph_path: str | None = None
    transform_output: str | None = None
    data_accessor: DataAccessor | None = None
    serving_model_dir: str = ''
    eval_model_dir: str = ''
    model_run_dir: str = ''
    base_model: str | None = None
    hyperparameters: dict | None = None
    custom_config: dict = field(default_factory=dict)


class TrainerDriver(Driver):
    """Also resolves ``base_model`` from ``warm_start_from``: the model in production there."""

    warm_start_version = ''  # the production version resolved as base_model (warm_start_from), if any

    def resolve_inputs(self) -> dict[str, Artifact | None]:
        inputs = super().resolve_inputs()
        destination = self.component.parameters.get('warm_start_from')
        if destination and inputs.get('base_model') is None:
            inputs['base_model'] = self._in_production(destination)
        return inputs

    def external_fingerprints(self) -> dict[str, str]:
        # The base model's content is in its fingerprint; its version says which one it was.
        return {'warm_start_version': self.warm_start_version} if self.warm_start_version else {}

    def _in_production(self, destination: str) -> Artifact | None:
        """The model in production at ``destination`` (as the destination says), or None if empty."""

        current = production(destination).current
        if current is None:
            return None
        self.warm_start_version = str(current.number)
        return version_artifact(self.store, destination, current.number, current.fingerprint or '', current.record)


def split_files(examples: Examples, split: str, who: str = 'Trainer') -> list[str]:
    if split not in examples.split_names:
        raise ValueError(f"{who} needs a '{split}' split; {examples!r} has {', '.join(examples.split_names)}.")
    return [os.path.join(examples.split_uri(split), '*')]


def common_fn_args(*, examples: Examples, transform_graph: TransformGraph | None, schema: Schema | None,
                   base_model: Model | None, train_split: str, eval_split: str, train_steps: int | None,
                   eval_steps: int | None, custom_config: dict, working_dir: str, who: str = 'Trainer') -> FnArgs:
    """The FnArgs that training and tuning share (TFX's common fn args): the examples' files, steps,
    schema, transform graph, data accessor, base model, custom_config and working directory. The
    Trainer adds its output directories and the hyperparameters."""
    schema_path = os.path.join(schema.uri, 'schema.pbtxt') if schema is not None else None
    return FnArgs(
        working_dir=working_dir,
        train_files=split_files(examples, train_split, who),
        eval_files=split_files(examples, eval_split, who),
        train_steps=train_steps, eval_steps=eval_steps,
        schema_path=schema_path, schema_file=schema_path,
        transform_graph_path=transform_graph.uri if transform_graph is not None else None,
        transform_output=transform_graph.uri if transform_graph is not None else None,
        data_accessor=DataAccessor(_tf_dataset_factory, _record_batch_factory),
        base_model=serving_path(base_model.uri) if base_model is not None else None,
        custom_config=dict(custom_config))


class HyperParametersError(ValueError):
    """The best_hyperparameters input holds no KerasTuner config."""
    retryable = False


def read_hyperparameters(artifact: HyperParameters) -> dict:
    """The KerasTuner config (``{'space': [...], 'values': {...}}``) a HyperParameters artifact holds:
    its ``best_hyperparameters.txt``, or else its only file (as TFX reads it)."""
    path = os.path.join(artifact.uri, HYPERPARAMETERS_FILE)
    if not os.path.isfile(path):
        files = [f for f in (os.listdir(artifact.uri) if os.path.isdir(artifact.uri) else [])
                 if os.path.isfile(os.path.join(artifact.uri, f))]
        if len(files) != 1:
            raise HyperParametersError(
                f'Trainer: the best_hyperparameters input {artifact!r} holds no {HYPERPARAMETERS_FILE} (files there: '
                f"{', '.join(sorted(files)) or 'none'}); wire a Tuner's outputs['best_hyperparameters'].")
        path = os.path.join(artifact.uri, files[0])
    try:
        with open(path) as f:
            config = json.load(f)
    except ValueError as e:
        raise HyperParametersError(f'Trainer: {path} (the best_hyperparameters input) is not JSON: {e}.') from None
    if not (isinstance(config, dict) and isinstance(config.get('space'), list)
            and isinstance(config.get('values'), dict)):
        raise HyperParametersError(
            f"Trainer: {path} (the best_hyperparameters input) is not a KerasTuner config ({{'space': [...], "
            "'values': {...}}, what keras_tuner.HyperParameters.get_config() returns).")
    return config


def hyperparameters_for_run_fn(tuned: dict | None, given: dict) -> dict:
    """``fn_args.hyperparameters``: the tuned KerasTuner config with the given values fixed over its
    ``values`` (each name replaced or added), or, with nothing tuned, the given dict itself."""
    if tuned is None:
        return dict(given)
    return {**tuned, 'values': {**tuned['values'], **given}}


class TrainerExecutor(Executor):
    imports = ('tensorflow', 'tfx_bsl.public.tfxio')

    def run(self, *, examples: Examples, transform_graph: TransformGraph | None, schema: Schema | None,
            base_model: Model | None, model: Model, model_run: ModelRun,
            module_file: str, train_steps: int | None, eval_steps: int | None, custom_config: dict,
            hyperparameters: dict, train_split: str, eval_split: str, warm_start_from: str | None = None,
            best_hyperparameters: HyperParameters | None = None) -> None:

        module = load_module_file(module_file, required=['run_fn'])
        tuned = read_hyperparameters(best_hyperparameters) if best_hyperparameters is not None else None
        libraries_without_autograph()
        serving_dir = os.path.join(model.uri, SERVING_DIR)
        working_dir = os.path.join(self.tmp_dir, 'working')  # scratch, not published with the model (as TFX)
        os.makedirs(working_dir, exist_ok=True)
        fn_args = common_fn_args(examples=examples, transform_graph=transform_graph, schema=schema,
                                 base_model=base_model, train_split=train_split, eval_split=eval_split,
                                 train_steps=train_steps, eval_steps=eval_steps, custom_config=custom_config,
                                 working_dir=working_dir)
        fn_args.serving_model_dir = fn_args.eval_model_dir = serving_dir
        fn_args.model_run_dir = model_run.uri
        fn_args.hyperparameters = hyperparameters_for_run_fn(tuned, hyperparameters)
        module.run_fn(fn_args)
        if not os.path.isfile(os.path.join(serving_dir, 'saved_model.pb')):
            raise RuntimeError(f'run_fn in {module_file} returned without saving a SavedModel to '
                               f'fn_args.serving_model_dir ({serving_dir}); save the model there, e.g. '
                               "model.save(fn_args.serving_model_dir, save_format='tf', signatures=...).")


class Trainer(Component):
    """Trains a model with ``run_fn`` from ``module_file`` into a SavedModel; with ``export_onnx``, its
    ``onnx_exporter`` node makes the checked ONNX copy."""
    examples = Input(Examples)
    transform_graph = Input(TransformGraph, optional=True)
    schema = Input(Schema, optional=True)
    base_model = Input(Model, optional=True)
    best_hyperparameters = Input(HyperParameters, optional=True)  # a Tuner's; TFX's Trainer(hyperparameters=...)
    model = Output(Model)
    model_run = Output(ModelRun)
    module_file = Parameter(str, user_code=True)
    train_steps = Parameter(int, default=None)
    eval_steps = Parameter(int, default=None)
    custom_config = Parameter(dict, default={})
    hyperparameters = Parameter(dict, default={})
    train_split = Parameter(str, default='train')
    eval_split = Parameter(str, default='eval')
    warm_start_from = Parameter(str, default=None, path=True)
    libraries = ('tensorflow', 'tf-keras', 'tensorflow-transform', 'tfx-bsl')
    executor = TrainerExecutor
    driver = TrainerDriver
    ONNX_PARAMETERS = ('export_onnx', 'onnx_tolerance')  # taken by the constructor, for its OnnxExporter
    WIRED_ONLY = ('onnx_exporter.py',)  # its OnnxExporter's code is in that node's key, not in the Trainer's

    def __init__(self, *, export_onnx: bool | str = True, onnx_tolerance: float = 1e-4,
                 raw_examples: Channel | None = None, **kwargs: Any) -> None:
        given = kwargs.get('hyperparameters')
        if isinstance(given, (Channel, Component)):
            wire = repr(given) if isinstance(given, Channel) else f"{given.id}.outputs['best_hyperparameters']"
            raise WiringError(f"Trainer(hyperparameters=...) takes a dict of values; wire a Tuner's output as "
                              f'best_hyperparameters={wire} (values given in hyperparameters={{...}} are then '
                              'fixed over the tuned ones).')
        if kwargs.get('best_hyperparameters') is not None and isinstance(given, dict) \
                and {'space', 'values'} <= set(given):
            raise WiringError('Trainer(hyperparameters=...) with best_hyperparameters=...: give the values to fix '
                              "over the tuned ones as {name: value}; got a whole KerasTuner config ('space', 'values').")
        super().__init__(**kwargs)
        if not isinstance(export_onnx, (bool, str)):
            raise WiringError(f"Trainer(export_onnx=...) expects True, False or 'if_possible'; got {export_onnx!r}.")
        try:
            check_export_onnx(export_onnx)
        except ValueError as e:
            raise WiringError(f'Trainer(export_onnx=...): {e}') from None
        self.export_onnx = export_onnx
        self.onnx_exporter: OnnxExporter | None = None
        if export_onnx:  # raw_examples and onnx_tolerance are checked by the exporter, named as the Trainer's
            try:
                self.onnx_exporter = OnnxExporter(
                    owner=self, model=self.outputs['model'], examples=self.inputs['examples'],
                    transform_graph=self.inputs['transform_graph'], raw_examples=raw_examples,
                    export_onnx=export_onnx, onnx_tolerance=onnx_tolerance, eval_split=self.parameters['eval_split'])
            except WiringError as e:
                raise WiringError(f"Trainer: {e} (given to the Trainer for its ONNX export)") from None
        elif raw_examples is not None:
            raise WiringError('Trainer(raw_examples=...) is what the ONNX check reads; with export_onnx=False '
                              'there is no check: leave raw_examples out.')

    @property
    def companions(self) -> list[Component]:
        exporter = getattr(self, 'onnx_exporter', None)  # None in a pipeline pickled before the export was a node
        return [exporter] if exporter is not None else []
