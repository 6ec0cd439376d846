"""``tfx.components``: TFX's component constructors with TFX's argument names, each returning Sluice's
own component (the same node a Sluice pipeline file would declare, so the same execution type, node
id, parameters and cache key).

Besides TFX's arguments, each takes its Sluice component's own parameters by their Sluice names
(e.g. ``Trainer(..., export_onnx=False)``, ``ExampleValidator(..., fail_on_anomalies=False)``).
An argument Sluice cannot honour fails here, naming it and the Sluice way.
"""
from __future__ import annotations

from typing import Any

import sluice.components as _sluice
from sluice.components.component import Channel as _SluiceChannel
from sluice.components.component import Component, WiringError
from sluice.components.onnx_exporter import ONNX_IF_POSSIBLE
from sluice.components.trainer import DataAccessor, FnArgs
from sluice.components.tuner import TunerFnResult
from sluice.tfx.v1 import proto as _proto
from sluice.tfx.v1._common import check_none, module_getattr, not_offered
from sluice.tfx.v1.dsl import COMPANIONS, Channel, EarlierAnalyzerCache, ProductionBaseline, _Unusable

TrainerFnArgs = FnArgs  # the name TFX's older module files import (tfx.components.trainer.executor)


def _channel(where: str, key: str, value: Any) -> Any:
    """A Sluice channel (or component, or None) for input ``key``; TFX-only placeholders are refused."""
    if value is None or isinstance(value, (_SluiceChannel, Component)):
        return value
    if isinstance(value, ProductionBaseline):
        raise not_offered(f'{where}({key}={value!r})',
                          'the model in production is only the baseline of an Evaluator '
                          '(tfx.components.Evaluator(baseline_model=resolver.outputs["model"]))')
    if isinstance(value, _Unusable):
        raise not_offered(f'{where}({key}={value!r})', value.why)
    if isinstance(value, Channel):
        raise not_offered(f'{where}({key}={value!r}) (a channel without a producer)',
                          "wire a component's output, e.g. other_component.outputs['key']")
    return value  # the Sluice component reports the wrong type with its own message


def _extras(where: str, cls: type[Component], extras: dict[str, Any], taken: set[str]) -> dict[str, Any]:
    """Sluice's own parameters of ``cls`` given by their Sluice names; anything else is refused."""
    own = set(cls.PARAMETERS) | set(getattr(cls, 'ONNX_PARAMETERS', ()))
    for key in extras:
        if key in taken or key not in own:
            known = sorted(own - taken)
            raise WiringError(f"{where}() got an unexpected argument '{key}'. It takes TFX's arguments and, by their "
                              f"Sluice names, {cls.__name__}'s own parameters: {', '.join(known) or 'none'}.")
    return extras


def _with(cls: type[Component], where: str, **kwargs: Any) -> Component:
    """Construct ``cls``, naming the TFX constructor in its errors."""
    try:
        return cls(**{k: v for k, v in kwargs.items() if v is not None})
    except WiringError as e:
        raise WiringError(f'{where}: {e}') from None


# -- ExampleGen -----------------------------------------------------------------------------------
def _example_gen_args(where: str, input_config: Any, output_config: Any, range_config: Any) -> dict[str, Any]:
    args: dict[str, Any] = {}
    if input_config is not None:
        if not isinstance(input_config, _proto.Input):
            raise WiringError(f'{where}(input_config=...) takes a tfx.proto.Input; got {type(input_config).__name__}.')
        if not input_config.splits:
            raise WiringError(f'{where}(input_config=Input(splits=[])) needs a split: '
                              "Input.Split(name='single_split', pattern='*').")
        if len(input_config.splits) > 1:  # data split already: each split from its own files, as in TFX
            if output_config is not None:
                raise WiringError(f'{where}: input_config has {len(input_config.splits)} splits, so the data is '
                                  'split already; give no output_config (as in TFX).')
            args['input_splits'] = {split.name: split.pattern for split in input_config.splits}
            return {**args, **_range_args(where, range_config)}
        pattern = input_config.splits[0].pattern
        if pattern and pattern != '*':
            args['pattern'] = pattern  # '*' is every file: Sluice's default reads every file of its format
    if output_config is not None:
        if not isinstance(output_config, _proto.Output):
            raise WiringError(f'{where}(output_config=...) takes a tfx.proto.Output; got {type(output_config).__name__}.')
        split_config = output_config.split_config
        if output_config.HasField('split_config'):
            if split_config.partition_feature_name:
                raise not_offered(f'{where}(output_config=...partition_feature_name='
                                  f'{split_config.partition_feature_name!r})',
                                  'Sluice splits by a hash of each row (SplitConfig.Split(name, hash_buckets))')
            if split_config.splits:
                args['split_ratios'] = {s.name: s.hash_buckets for s in split_config.splits}
    return {**args, **_range_args(where, range_config)}


def _range_args(where: str, range_config: Any) -> dict[str, Any]:
    args: dict[str, Any] = {}
    if range_config is not None:
        if not isinstance(range_config, _proto.RangeConfig):
            raise WiringError(f'{where}(range_config=...) takes a tfx.proto.RangeConfig; got '
                              f'{type(range_config).__name__}.')
        if range_config.HasField('rolling_range'):
            raise not_offered(f'{where}(range_config=RangeConfig(rolling_range=...))',
                              'an ExampleGen reads one span or a static range (as in TFX); a rolling window of the '
                              'newest spans is tfx.dsl.Resolver(strategy_class=SpanRangeStrategy, ...), i.e. '
                              'components.LatestSpans(example_gen, n=N)')
        static = range_config.static_range
        if range_config.HasField('static_range'):
            lo, hi = static.start_span_number, static.end_span_number
            if hi < lo:
                raise WiringError(f'{where}(range_config=StaticRange(start_span_number={lo}, end_span_number={hi})): '
                                  'the end is before the start.')
            args['span'] = lo if lo == hi else (lo, hi)
    return args


def CsvExampleGen(input_base: str | None = None, input_config: Any = None, output_config: Any = None,  # noqa: N802
                  range_config: Any = None, **sluice: Any) -> Component:
    """Sluice's CsvExampleGen. ``input_config``'s one split pattern (``{SPAN}``/``{VERSION}`` allowed) is
    its ``pattern``, several splits its ``input_splits`` (each split from its own files, data split
    already); ``output_config``'s hash buckets its ``split_ratios`` (default train 2 : eval 1, as
    TFX); ``range_config``'s static range its ``span``. Without a range the newest span is read."""
    where = 'tfx.components.CsvExampleGen'
    args = _example_gen_args(where, input_config, output_config, range_config)
    return _with(_sluice.CsvExampleGen, where, input_base=input_base,
                 **args, **_extras(where, _sluice.CsvExampleGen, sluice, set(args) | {'input_base'}))


def ImportExampleGen(input_base: str | None = None, input_config: Any = None,  # noqa: N802
                     output_config: Any = None, range_config: Any = None, payload_format: Any = None,
                     **sluice: Any) -> Component:
    """Sluice's ImportExampleGen (TFRecords of tf.Example), with the same mapping as CsvExampleGen."""
    where = 'tfx.components.ImportExampleGen'
    if payload_format not in (None, 6):  # example_gen_pb2.FORMAT_TF_EXAMPLE
        raise not_offered(f'{where}(payload_format={payload_format!r})', 'Sluice imports tf.Example records only')
    args = _example_gen_args(where, input_config, output_config, range_config)
    return _with(_sluice.ImportExampleGen, where, input_base=input_base,
                 **args, **_extras(where, _sluice.ImportExampleGen, sluice, set(args) | {'input_base'}))


# -- data validation ------------------------------------------------------------------------------
def StatisticsGen(examples: Any = None, schema: Any = None, stats_options: Any = None,  # noqa: N802
                  exclude_splits: Any = None, **sluice: Any) -> Component:
    """Sluice's StatisticsGen (TFDV statistics of every split but ``exclude_splits``)."""
    where = 'tfx.components.StatisticsGen'
    check_none(where, schema=(schema, 'Sluice computes statistics without a schema; the schema is applied by '
                                      'ExampleValidator'),
               stats_options=(stats_options, 'give num_top_values=... and num_histogram_buckets=... (Sluice '
                                             'StatisticsGen parameters)'))
    args = {'exclude_splits': list(exclude_splits)} if exclude_splits else {}
    return _with(_sluice.StatisticsGen, where, examples=_channel(where, 'examples', examples), **args,
                 **_extras(where, _sluice.StatisticsGen, sluice, set(args)))


def SchemaGen(statistics: Any = None, infer_feature_shape: bool = True, exclude_splits: Any = None,  # noqa: N802
              **sluice: Any) -> Component:
    """Sluice's SchemaGen: inferred from the train split, relaxed to accept every split."""
    where = 'tfx.components.SchemaGen'
    check_none(where, exclude_splits=(exclude_splits, "Sluice infers from one split (SchemaGen(split='train')) and "
                                                      'relaxes the schema so that every split passes'))
    return _with(_sluice.SchemaGen, where, statistics=_channel(where, 'statistics', statistics),
                 infer_feature_shape=bool(infer_feature_shape),
                 **_extras(where, _sluice.SchemaGen, sluice, {'infer_feature_shape'}))


def ImportSchemaGen(schema_file: str | None = None, **sluice: Any) -> Component:  # noqa: N802
    """Sluice's ImportSchemaGen (a curated schema.pbtxt)."""
    where = 'tfx.components.ImportSchemaGen'
    return _with(_sluice.ImportSchemaGen, where, schema_file=schema_file,
                 **_extras(where, _sluice.ImportSchemaGen, sluice, {'schema_file'}))


def ExampleValidator(statistics: Any = None, schema: Any = None, exclude_splits: Any = None,  # noqa: N802
                     custom_validation_config: Any = None, **sluice: Any) -> Component:
    """Sluice's ExampleValidator. Unlike TFX's, anomalies fail the node by default, so nothing
    downstream runs on bad data; ``fail_on_anomalies=False`` records them and goes on, as TFX does."""
    where = 'tfx.components.ExampleValidator'
    check_none(where, custom_validation_config=(custom_validation_config, 'curate the schema (ImportSchemaGen) and '
                                                                       'give drift_thresholds={...}'))
    args = {'exclude_splits': list(exclude_splits)} if exclude_splits else {}
    return _with(_sluice.ExampleValidator, where, statistics=_channel(where, 'statistics', statistics),
                 schema=_channel(where, 'schema', schema), **args,
                 **_extras(where, _sluice.ExampleValidator, sluice, set(args)))


# -- model ----------------------------------------------------------------------------------------
def Transform(examples: Any = None, schema: Any = None, module_file: str | None = None,  # noqa: N802
              preprocessing_fn: str | None = None, splits_config: Any = None, analyzer_cache: Any = None,
              materialize: bool = True, disable_analyzer_cache: bool = False, force_tf_compat_v1: bool = False,
              custom_config: dict | None = None, disable_statistics: bool = False,
              stats_options_updater_fn: str | None = None, **sluice: Any) -> Component:
    """Sluice's Transform: ``preprocessing_fn`` of ``module_file``, analyzed on one split (``splits_config``'s
    ``analyze``, default train), applied to every split. Sluice always writes the transformed examples
    (``materialize=False`` changes nothing). ``custom_config`` reaches ``preprocessing_fn(inputs,
    custom_config)``, as in TFX. ``analyzer_cache`` (a ``LatestArtifactStrategy`` resolver's
    output over ``Channel(type=TransformCache)``, or a channel of TransformCache) keeps tf.Transform's
    analyzer cache (``cache_analyzers=True``), unless ``disable_analyzer_cache``."""
    where = 'tfx.components.Transform'
    check_none(where,
               preprocessing_fn=(preprocessing_fn, 'give module_file=, the file that defines preprocessing_fn'),
               force_tf_compat_v1=(force_tf_compat_v1, 'Sluice runs tf.Transform in TF2 mode'),
               stats_options_updater_fn=(stats_options_updater_fn, 'Sluice computes no statistics in Transform; '
                                                                   'add a StatisticsGen on transformed_examples'))
    if not isinstance(materialize, bool) or not isinstance(disable_analyzer_cache, bool) or \
            not isinstance(disable_statistics, bool):
        raise WiringError(f'{where}(materialize=, disable_analyzer_cache=, disable_statistics=) take True or False.')
    args: dict[str, Any] = {}
    if custom_config:
        args['custom_config'] = dict(custom_config)
    if splits_config is not None:
        if not isinstance(splits_config, _proto.SplitsConfig):
            raise WiringError(f'{where}(splits_config=...) takes a tfx.proto.SplitsConfig.')
        if splits_config.transform:
            raise not_offered(f'{where}(splits_config=SplitsConfig(transform=[...]))', 'Sluice transforms every split')
        if len(splits_config.analyze) > 1:
            raise not_offered(f'{where}(splits_config=SplitsConfig(analyze=[{len(splits_config.analyze)} splits]))',
                              'Sluice analyzes one split: SplitsConfig(analyze=[name]) (analyze_split=name)')
        if splits_config.analyze:
            args['analyze_split'] = splits_config.analyze[0]
    if analyzer_cache is not None and not disable_analyzer_cache:
        args['cache_analyzers'] = True
        if not isinstance(analyzer_cache, EarlierAnalyzerCache):
            args['analyzer_cache'] = _channel(where, 'analyzer_cache', analyzer_cache)
    return _with(_sluice.Transform, where, examples=_channel(where, 'examples', examples),
                 schema=_channel(where, 'schema', schema), module_file=module_file, **args,
                 **_extras(where, _sluice.Transform, sluice, set(args) | {'module_file'}))


def Trainer(examples: Any = None, transformed_examples: Any = None, transform_graph: Any = None,  # noqa: N802
            schema: Any = None, base_model: Any = None, hyperparameters: Any = None, module_file: str | None = None,
            run_fn: str | None = None, train_args: Any = None, eval_args: Any = None,
            custom_config: dict | None = None, custom_executor_spec: Any = None, statistics: Any = None,
            trainer_fn: str | None = None, **sluice: Any) -> Component:
    """Sluice's Trainer: ``run_fn(fn_args)`` of ``module_file``. ``train_args``/``eval_args`` give
    ``num_steps`` (and one split each); ``custom_config`` reaches ``fn_args.custom_config``. TFX exports
    no ONNX, so here the ONNX copy is made where the serving signature converts and passes its check,
    and otherwise left out with the reason recorded (``export_onnx='if_possible'``, the OnnxModel's
    ``onnx_skipped``); ``export_onnx=True`` makes it required, as in a Sluice pipeline."""
    where = 'tfx.components.Trainer'
    check_none(where,
               run_fn=(run_fn, 'give module_file=, the file that defines run_fn'),
               trainer_fn=(trainer_fn, 'Sluice calls run_fn(fn_args) (TFX\'s generic trainer contract)'),
               custom_executor_spec=(custom_executor_spec, "Sluice's Trainer always calls run_fn(fn_args), as TFX's "
                                     'GenericExecutor does; remove custom_executor_spec'),
               statistics=(statistics, 'run_fn reads the examples and the schema; add schema=...'))
    if examples is not None and transformed_examples is not None:
        raise WiringError(f'{where}: give examples= or transformed_examples=, not both.')
    args = _train_eval_args(where, train_args, eval_args, custom_config)
    sluice.setdefault('export_onnx', ONNX_IF_POSSIBLE)
    return _with(_sluice.Trainer, where, module_file=module_file,
                 examples=_channel(where, 'examples', examples if examples is not None else transformed_examples),
                 transform_graph=_channel(where, 'transform_graph', transform_graph),
                 schema=_channel(where, 'schema', schema), base_model=_channel(where, 'base_model', base_model),
                 best_hyperparameters=_channel(where, 'hyperparameters', hyperparameters),
                 **args, **_extras(where, _sluice.Trainer, sluice, set(args) | {'module_file'}))


def _train_eval_args(where: str, train_args: Any, eval_args: Any, custom_config: dict | None) -> dict[str, Any]:
    """TrainArgs/EvalArgs (steps, one split each) and custom_config as the Trainer's and Tuner's parameters."""
    args: dict[str, Any] = {}
    for name, given, steps, split in (('train_args', train_args, 'train_steps', 'train_split'),
                                      ('eval_args', eval_args, 'eval_steps', 'eval_split')):
        if given is None:
            continue
        kind = _proto.TrainArgs if name == 'train_args' else _proto.EvalArgs
        if not isinstance(given, kind):
            raise WiringError(f'{where}({name}=...) takes a tfx.proto.{kind.__name__}; got {type(given).__name__}.')
        if given.num_steps:
            args[steps] = int(given.num_steps)
        if len(given.splits) > 1:
            raise not_offered(f'{where}({name}={kind.__name__}(splits=[{len(given.splits)} splits]))',
                              f'Sluice reads one split for each ({split}=...)')
        if given.splits:
            args[split] = given.splits[0]
    if custom_config is not None:
        args['custom_config'] = dict(custom_config)
    return args


def Tuner(examples: Any = None, schema: Any = None, transform_graph: Any = None, base_model: Any = None,  # noqa: N802
          module_file: str | None = None, tuner_fn: str | None = None, train_args: Any = None, eval_args: Any = None,
          tune_args: Any = None, custom_config: dict | None = None, **sluice: Any) -> Component:
    """Sluice's Tuner: ``tuner_fn(fn_args)`` of ``module_file`` returns a ``TunerFnResult(tuner, fit_kwargs)``;
    the search's best hyperparameters are ``outputs['best_hyperparameters']``, which a Trainer takes as
    ``hyperparameters=`` (``fn_args.hyperparameters`` in run_fn: KerasTuner's config)."""
    where = 'tfx.components.Tuner'
    check_none(where, tuner_fn=(tuner_fn, 'give module_file=, the file that defines tuner_fn'))
    if tune_args is not None and int(getattr(tune_args, 'num_parallel_trials', 0) or 0) > 1:
        raise not_offered(f'{where}(tune_args=TuneArgs(num_parallel_trials={tune_args.num_parallel_trials}))',
                          'Sluice runs the trials one after another in the Tuner\'s process')
    args = _train_eval_args(where, train_args, eval_args, custom_config)
    return _with(_sluice.Tuner, where, module_file=module_file, examples=_channel(where, 'examples', examples),
                 schema=_channel(where, 'schema', schema), transform_graph=_channel(where, 'transform_graph', transform_graph),
                 base_model=_channel(where, 'base_model', base_model),
                 **args, **_extras(where, _sluice.Tuner, sluice, set(args) | {'module_file'}))


def BulkInferrer(examples: Any = None, model: Any = None, model_blessing: Any = None,  # noqa: N802
                 data_spec: Any = None, model_spec: Any = None, output_example_spec: Any = None,
                 **sluice: Any) -> Component:
    """Sluice's BulkInferrer: the model's serving signature (tfx_bsl's RunInference) over the examples'
    splits (``DataSpec(example_splits=[...])``, none: every split), PredictionLogs in
    ``outputs['inference_result']``; with ``model_blessing``, only a blessed model infers."""
    where = 'tfx.components.BulkInferrer'
    check_none(where, output_example_spec=(output_example_spec, "Sluice's BulkInferrer writes PredictionLogs only "
                                           '(inference_result), not Examples with the predictions added'))
    args: dict[str, Any] = {}
    if data_spec is not None:
        if not isinstance(data_spec, _proto.DataSpec):
            raise WiringError(f'{where}(data_spec=...) takes a tfx.proto.DataSpec; got {type(data_spec).__name__}.')
        args['example_splits'] = list(data_spec.example_splits)
    if model_spec is not None:
        if not isinstance(model_spec, _proto.ModelSpec):
            raise WiringError(f'{where}(model_spec=...) takes a tfx.proto.ModelSpec; got {type(model_spec).__name__}.')
        args['signature_names'], args['tags'] = list(model_spec.model_signature_name), list(model_spec.tag)
    return _with(_sluice.BulkInferrer, where, examples=_channel(where, 'examples', examples),
                 model=_channel(where, 'model', model), model_blessing=_channel(where, 'model_blessing', model_blessing),
                 **args, **_extras(where, _sluice.BulkInferrer, sluice, set(args)))


# -- InfraValidator -------------------------------------------------------------------------------
def InfraValidator(model: Any = None, serving_spec: Any = None, examples: Any = None,  # noqa: N802
                   request_spec: Any = None, validation_spec: Any = None, **sluice: Any) -> Component:
    """Sluice's InfraValidator: ``sluice serve`` (the server that will serve the model in production,
    ONNX Runtime) is started on the candidate on this machine's loopback, must load it within
    ``validation_spec.max_loading_time_seconds`` (TFX's default, 300 s, when unset) and answer the sample
    request recorded with the model's ONNX copy (by ``Trainer.onnx``), with the answers recorded then,
    and, given a ``request_spec`` (as in TFX, where none means the model is only loaded), a request of
    ``request_spec.num_examples`` (default 1) ``examples`` from ``request_spec.split_name`` (default: the
    first split), each to be answered. ``serving_spec`` says that a serving check is wanted:
    TFX's TF Serving container (``local_docker``) is not started. ``make_warmup`` is accepted and writes
    nothing (the server warms up by itself; the Pusher pushes the Trainer's model)."""
    where = 'tfx.components.InfraValidator'
    if serving_spec is None:
        raise WiringError(f'{where} needs serving_spec=tfx.proto.ServingSpec(tensorflow_serving=tfx.proto.'
                          'TensorFlowServing(...), local_docker=tfx.proto.LocalDockerConfig()).')
    for key, value, kind in (('serving_spec', serving_spec, _proto.ServingSpec),
                             ('request_spec', request_spec, _proto.RequestSpec),
                             ('validation_spec', validation_spec, _proto.ValidationSpec)):
        if value is not None and not isinstance(value, kind):
            raise WiringError(f'{where}({key}=...) takes a tfx.proto.{kind.__name__}; got {type(value).__name__}.')
    if serving_spec.HasField('kubernetes'):
        raise not_offered(f'{where}(serving_spec=ServingSpec(kubernetes=...))',
                          'Sluice checks the model in sluice serve on the machine running the node; give '
                          'local_docker=tfx.proto.LocalDockerConfig() (or nothing) for that check')
    args: dict[str, Any] = {}
    if validation_spec is not None and validation_spec.num_tries > 1:
        raise not_offered(f'{where}(validation_spec=ValidationSpec(num_tries={validation_spec.num_tries}))',
                          'Sluice checks once; let the node be tried again with .with_retry(Retry(attempts=N))')
    args['time_limit_seconds'] = float((validation_spec.max_loading_time_seconds if validation_spec else 0) or 300)
    if request_spec is not None:
        if request_spec.num_examples:
            args['num_examples'] = int(request_spec.num_examples)
        if request_spec.split_name:
            args['split_name'] = request_spec.split_name
    # As TFX's: without a request_spec the model is only loaded (no request of examples is sent).
    examples = _channel(where, 'examples', examples) if request_spec is not None else None
    return _with(_sluice.InfraValidator, where, model=_channel(where, 'model', model), examples=examples, **args,
                 **_extras(where, _sluice.InfraValidator, sluice, set(args)))


def ExampleDiff(examples: Any = None, baseline_examples: Any = None, config: Any = None,  # noqa: N802
                include_split_pairs: Any = None, **sluice: Any) -> Component:
    """Sluice's ExampleDiff: ``config=ExampleDiffConfig(paired_example_skew=PairedExampleSkew(...))``
    maps field by field onto its parameters; ``include_split_pairs`` is ``split_pairs``."""
    where = 'tfx.components.ExampleDiff'
    if not isinstance(config, _proto.ExampleDiffConfig) or not config.HasField('paired_example_skew'):
        raise WiringError(f'{where} needs config=tfx.proto.ExampleDiffConfig(paired_example_skew=tfx.proto.'
                          "PairedExampleSkew(identifier_features=[...])); got "
                          f'{type(config).__name__ if config is not None else "none"}.')
    skew = config.paired_example_skew
    args = {'identifier_features': list(skew.identifier_features), 'ignore_features': list(skew.ignore_features),
            'skew_sample_size': int(skew.skew_sample_size), 'float_round_ndigits': int(skew.float_round_ndigits),
            'allow_duplicate_identifiers': bool(skew.allow_duplicate_identifiers),
            'confusion_features': [c.feature_name for c in skew.confusion_config],
            'split_pairs': [list(p) for p in include_split_pairs or ()]}
    return _with(_sluice.ExampleDiff, where, examples=_channel(where, 'examples', examples),
                 baseline_examples=_channel(where, 'baseline_examples', baseline_examples), **args,
                 **_extras(where, _sluice.ExampleDiff, sluice, set(args)))


# -- the gate -------------------------------------------------------------------------------------
def _has_thresholds(eval_config: Any, where: str) -> bool:
    """Whether a tfma.EvalConfig carries thresholds (read without importing TFMA)."""
    found = False
    for spec in getattr(eval_config, 'metrics_specs', ()):
        if len(spec.cross_slice_thresholds) or any(len(m.cross_slice_thresholds) for m in spec.metrics):
            raise not_offered(f'{where}(eval_config=... cross_slice_thresholds)',
                              'use per-slice thresholds (per_slice_thresholds, or a MetricThreshold on each slice)')
        found = found or bool(len(spec.thresholds) or len(spec.per_slice_thresholds)) or any(
            m.HasField('threshold') or len(m.per_slice_thresholds) for m in spec.metrics)
    return found


def Evaluator(examples: Any = None, model: Any = None, baseline_model: Any = None,  # noqa: N802
              feature_slicing_spec: Any = None, fairness_indicator_thresholds: Any = None,
              example_splits: Any = None, eval_config: Any = None, schema: Any = None,
              module_file: str | None = None, module_path: str | None = None, **sluice: Any) -> Component:
    """Sluice's Evaluator, and, when ``eval_config`` (a ``tfma.EvalConfig``) has thresholds, Sluice's
    ModelValidator after it: as in TFX, the Evaluator then "has" a ``blessing`` output
    (``evaluator.outputs['blessing']`` is the ModelValidator's), and ``tfx.dsl.Pipeline`` adds the
    ModelValidator node (id ``ModelValidator``, or ``<evaluator id>_validator`` for a renamed
    Evaluator). Thresholds are TFMA's, applied by TFMA's validator; on the first run (no model in
    production) change thresholds are skipped, as TFX's rubber stamp does.

    The baseline is Sluice's: the model in production at the destination of the Pusher that pushes
    ``model``. ``baseline_model=`` takes the ``model`` output of a ``LatestBlessedModelStrategy``
    resolver, which means exactly that; without it the baseline is the same (a Sluice Pusher only
    pushes over the model a blessing was measured against)."""
    where = 'tfx.components.Evaluator'
    check_none(where,
               feature_slicing_spec=(feature_slicing_spec, 'give eval_config=tfma.EvalConfig(slicing_specs=[...])'),
               fairness_indicator_thresholds=(fairness_indicator_thresholds,
                                              'add fairness metrics to the tfma.EvalConfig metrics_specs'),
               schema=(schema, 'Sluice reads the eval split with the model\'s own signature; no schema is needed'),
               module_file=(module_file, 'Sluice runs TFMA with its default extractors; no custom module'),
               module_path=(module_path, 'Sluice runs TFMA with its default extractors; no custom module'))
    if eval_config is None:
        raise WiringError(f"{where} needs eval_config=tfma.EvalConfig(...) (or Sluice's dict form {{'label_key': ..., "
                          "'metrics': [...], 'slices': [[]]}}).")
    if baseline_model is not None and not isinstance(baseline_model, ProductionBaseline):
        raise not_offered(f'{where}(baseline_model={baseline_model!r})',
                          'the baseline is the model in production at the Pusher\'s destination; give '
                          "baseline_model=tfx.dsl.Resolver(strategy_class=LatestBlessedModelStrategy, ...).outputs"
                          "['model'] or nothing")
    args: dict[str, Any] = {}
    if example_splits:
        if len(example_splits) != 1:
            raise not_offered(f'{where}(example_splits={list(example_splits)!r})',
                              'Sluice evaluates one split: example_splits=[name] (eval_split=name)')
        args['eval_split'] = example_splits[0]
    evaluator = _with(_sluice.Evaluator, where, examples=_channel(where, 'examples', examples),
                      model=_channel(where, 'model', model), eval_config=eval_config, **args,
                      **_extras(where, _sluice.Evaluator, sluice, set(args) | {'eval_config'}))
    if not isinstance(eval_config, dict) and _has_thresholds(eval_config, where):
        validator = _sluice.ModelValidator(model=evaluator.inputs['model'], evaluation=evaluator.outputs['evaluation'],
                                           no_baseline='bless')
        evaluator.outputs['blessing'] = validator.outputs['blessing']
        setattr(evaluator, COMPANIONS, [validator])
    else:
        evaluator.outputs['blessing'] = _Unusable(
            _NoThresholds(evaluator), 'blessing',
            'as in TFX, an Evaluator without thresholds never blesses a model; put thresholds in the tfma.EvalConfig '
            '(MetricConfig(threshold=...), MetricsSpec(thresholds=...) or per_slice_thresholds)')
    return evaluator


class _NoThresholds:
    def __init__(self, evaluator: Component) -> None:
        self._evaluator = evaluator

    @property
    def id(self) -> str:
        return f'{self._evaluator.id} (its eval_config has no thresholds)'


def Pusher(model: Any = None, model_blessing: Any = None, infra_blessing: Any = None,  # noqa: N802
           push_destination: Any = None, custom_config: dict | None = None, custom_executor_spec: Any = None,
           **sluice: Any) -> Component:
    """Sluice's Pusher: pushes to ``push_destination.filesystem.base_directory/<version>/``, atomically.
    With ``model_blessing`` it pushes only a BLESSED model, and only over the production model it was
    measured against. Without one it pushes every model, as TFX's Pusher does, and the run's output
    says that nothing gated the push."""
    where = 'tfx.components.Pusher'
    check_none(where, custom_config=(custom_config, 'Sluice pushes to a filesystem destination only'),
               custom_executor_spec=(custom_executor_spec, 'Sluice pushes to a filesystem destination only'))
    destination = push_destination
    if isinstance(push_destination, _proto.PushDestination):
        if not push_destination.filesystem.base_directory:
            raise WiringError(f'{where}(push_destination=PushDestination(...)) needs filesystem=PushDestination.'
                              "Filesystem(base_directory='...').")
        destination = push_destination.filesystem.base_directory
    elif push_destination is not None and not isinstance(push_destination, str):
        raise WiringError(f"{where}(push_destination=...) takes a tfx.proto.PushDestination (or a directory); got "
                          f'{type(push_destination).__name__}.')
    if destination is None:
        raise WiringError(f"{where} needs push_destination=tfx.proto.PushDestination(filesystem=tfx.proto."
                          "PushDestination.Filesystem(base_directory='...')).")
    blessing = _channel(where, 'model_blessing', model_blessing)
    if blessing is None and not _sluice.Pusher.INPUTS['blessing'].optional:
        raise not_offered(f'{where} without model_blessing (a push no blessing gates)',
                          "this Sluice's Pusher needs a blessing; wire model_blessing=evaluator.outputs['blessing'] "
                          '(an Evaluator with thresholds), or put a model in production by hand with '
                          '`sluice promote MODEL_ID DEST --reason TEXT`')
    infra = _channel(where, 'infra_blessing', infra_blessing)
    if model is None and isinstance(infra, _SluiceChannel):  # TFX: push the model the InfraValidator checked
        model = infra.producer.inputs.get('model')
    return _with(_sluice.Pusher, where, model=_channel(where, 'model', model), blessing=blessing,
                 infra_blessing=infra,
                 push_destination=destination, **_extras(where, _sluice.Pusher, sluice, {'push_destination'}))


_OFFERED = ['Tuner', 'TunerFnResult', 'BulkInferrer', 'InfraValidator', 'ExampleDiff', 'CsvExampleGen', 'ImportExampleGen', 'StatisticsGen', 'SchemaGen', 'ImportSchemaGen', 'ExampleValidator',
            'Transform', 'Trainer', 'Evaluator', 'Pusher', 'FnArgs', 'DataAccessor', 'TrainerFnArgs']
_MISSING: dict[str, str] = {}
__getattr__ = module_getattr('tfx.components', lambda: _OFFERED, _MISSING)
__all__ = _OFFERED
