"""``tfx.proto``: the configuration messages TFX's tutorials and examples pass to components, as small
Python classes taking the same constructor keywords (TFX's are protobuf messages; Sluice does not
depend on TFX). Unset fields read as protobuf's defaults (0, '', empty lists, None for messages).

    tfx.proto.TrainArgs(num_steps=100)
    tfx.proto.PushDestination(filesystem=tfx.proto.PushDestination.Filesystem(base_directory='serving'))
    tfx.proto.Input(splits=[tfx.proto.Input.Split(name='single_split', pattern='span-{SPAN}/*.csv')])
    tfx.proto.Output(split_config=tfx.proto.SplitConfig(splits=[
        tfx.proto.SplitConfig.Split(name='train', hash_buckets=2),
        tfx.proto.SplitConfig.Split(name='eval', hash_buckets=1)]))
    tfx.proto.RangeConfig(static_range=tfx.proto.StaticRange(start_span_number=1, end_span_number=3))
"""
from __future__ import annotations

from typing import Any, ClassVar

from sluice.tfx.v1._common import module_getattr


class _Message:
    """A message: declared fields with protobuf-like defaults; unknown keywords are refused, as protobuf does."""
    FIELDS: ClassVar[dict[str, Any]] = {}  # name -> default: a scalar, list, or a _Message class (None when unset)
    ONEOF: ClassVar[tuple[str, ...]] = ()   # fields of which at most one may be set

    def __init__(self, **kwargs: Any) -> None:
        name = type(self).__qualname__
        for key in kwargs:
            if key not in self.FIELDS:
                known = ', '.join(self.FIELDS) or 'none'
                raise ValueError(f'Protocol message {name} has no "{key}" field (its fields: {known}).')
        for key, default in self.FIELDS.items():
            value = kwargs.get(key)
            if isinstance(default, type) and issubclass(default, _Message):
                if isinstance(value, dict):
                    value = default(**value)
                if value is not None and not isinstance(value, default):
                    raise TypeError(f'{name}({key}=...) expects a {default.__qualname__}; got {type(value).__name__}.')
            elif isinstance(default, list):
                item = default[0] if default else None
                value = list(value) if value is not None else []
                if isinstance(item, type) and issubclass(item, _Message):
                    value = [item(**v) if isinstance(v, dict) else v for v in value]
                    bad = [v for v in value if not isinstance(v, item)]
                    if bad:
                        raise TypeError(f'{name}({key}=[...]) expects {item.__qualname__} items; got '
                                        f'{type(bad[0]).__name__}.')
            elif value is None:
                value = default
            setattr(self, key, value)
        chosen = [k for k in self.ONEOF if kwargs.get(k) is not None]
        if len(chosen) > 1:
            raise ValueError(f'{name}: {" and ".join(chosen)} are one of a kind (a oneof); set only one.')

    def HasField(self, key: str) -> bool:  # noqa: N802 (protobuf's name)
        return getattr(self, key, None) not in (None, 0, '', [])

    def WhichOneof(self, _group: str) -> str | None:  # noqa: N802
        return next((k for k in self.ONEOF if getattr(self, k, None) is not None), None)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    def __repr__(self) -> str:
        set_ = {k: v for k, v in vars(self).items() if self.HasField(k)}
        return f'{type(self).__qualname__}({", ".join(f"{k}={v!r}" for k, v in set_.items())})'


# -- Trainer --------------------------------------------------------------------------------------
class TrainArgs(_Message):
    """``num_steps`` -> Trainer's ``train_steps``; ``splits`` (one) -> ``train_split``."""
    FIELDS = {'splits': [str], 'num_steps': 0}


class EvalArgs(_Message):
    """``num_steps`` -> Trainer's ``eval_steps``; ``splits`` (one) -> ``eval_split``."""
    FIELDS = {'splits': [str], 'num_steps': 0}


# -- Pusher ---------------------------------------------------------------------------------------
class Versioning:
    """How pushed versions are named. Sluice names them by increasing integers from the push time (a
    Unix timestamp, bumped to stay above every earlier version), which is both of these."""
    AUTO = 0
    UNIX_TIMESTAMP = 1


class _Filesystem(_Message):
    FIELDS = {'base_directory': '', 'versioning': 0}


class PushDestination(_Message):
    """Only ``filesystem`` (TFX's only destination too): its ``base_directory`` is the Pusher's
    ``push_destination``."""
    Filesystem = _Filesystem
    FIELDS = {'filesystem': _Filesystem}
    ONEOF = ('filesystem',)


_Filesystem.__qualname__ = 'PushDestination.Filesystem'
Filesystem = _Filesystem


# -- ExampleGen -----------------------------------------------------------------------------------
class _InputSplit(_Message):
    FIELDS = {'name': '', 'pattern': ''}


class Input(_Message):
    """ExampleGen's input: one split whose ``pattern`` (relative to ``input_base``, ``{SPAN}`` and
    ``{VERSION}`` allowed) becomes CsvExampleGen's ``pattern``. Several splits (data split by hand
    into directories) are not offered: Sluice splits by a hash of each row."""
    Split = _InputSplit
    FIELDS = {'splits': [_InputSplit]}


_InputSplit.__qualname__ = 'Input.Split'


class _SplitConfigSplit(_Message):
    FIELDS = {'name': '', 'hash_buckets': 0}


class SplitConfig(_Message):
    """Output splits by hash: ``Split(name, hash_buckets)`` -> ``split_ratios={name: hash_buckets}``."""
    Split = _SplitConfigSplit
    FIELDS = {'splits': [_SplitConfigSplit], 'partition_feature_name': ''}


_SplitConfigSplit.__qualname__ = 'SplitConfig.Split'


class Output(_Message):
    FIELDS = {'split_config': SplitConfig}


class StaticRange(_Message):
    FIELDS = {'start_span_number': 0, 'end_span_number': 0}


class RollingRange(_Message):
    FIELDS = {'start_span_number': 0, 'num_spans': 0}


class RangeConfig(_Message):
    """For ExampleGen: ``static_range`` -> ``span=N`` (start == end) or ``span=(start, end)``. For a
    ``SpanRangeStrategy`` resolver: ``rolling_range(num_spans=n)`` -> ``LatestSpans(..., n=n)``."""
    FIELDS = {'static_range': StaticRange, 'rolling_range': RollingRange}
    ONEOF = ('static_range', 'rolling_range')


class DataSpec(_Message):
    """The BulkInferrer's ``data_spec``: ``example_splits`` (none: every split)."""
    FIELDS = {'example_splits': [str]}


class ModelSpec(_Message):
    """The BulkInferrer's ``model_spec``: ``model_signature_name`` (none: serving_default) and ``tag``."""
    FIELDS = {'model_signature_name': [str], 'tag': [str]}


class TuneArgs(_Message):
    """The Tuner's ``tune_args``: Sluice runs one trial at a time (``num_parallel_trials`` above 1 is refused)."""
    FIELDS = {'num_parallel_trials': 0}


# -- InfraValidator -------------------------------------------------------------------------------
class TensorFlowServing(_Message):
    """The serving binary TFX starts (a TF Serving image of these ``tags``). Sluice checks the model in
    its own server instead (``sluice serve``, the one that serves it in production), so only its
    presence is read."""
    FIELDS = {'tags': [str], 'digests': [str], 'image_name': ''}


class LocalDockerConfig(_Message):
    """Where TFX runs TF Serving: a local Docker engine. Sluice starts ``sluice serve`` as a child
    process on loopback instead; the fields are accepted and not used."""
    FIELDS = {'client_timeout_seconds': 0, 'client_base_url': '', 'client_api_version': '', 'host_ip_address': ''}


class KubernetesConfig(_Message):
    """Where TFX runs TF Serving: a Kubernetes pod. As for ``LocalDockerConfig``: accepted, not used."""
    FIELDS = {'service_account_name': '', 'active_deadline_seconds': 0}


class ServingSpec(_Message):
    """The InfraValidator's ``serving_spec``: ``tensorflow_serving`` (the binary) and ``local_docker``
    or ``kubernetes`` (where it runs). Sluice's InfraValidator always runs its own server, on this
    machine's loopback: the spec says that a serving check is wanted, not how it is made here."""
    FIELDS = {'tensorflow_serving': TensorFlowServing, 'local_docker': LocalDockerConfig,
              'kubernetes': KubernetesConfig, 'model_name': ''}
    ONEOF = ('local_docker', 'kubernetes')


class ValidationSpec(_Message):
    """``max_loading_time_seconds`` -> InfraValidator's ``time_limit_seconds`` (TFX's default when unset:
    300); ``num_tries``: Sluice checks once (a node's retries are ``with_retry``)."""
    FIELDS = {'max_loading_time_seconds': 0, 'num_tries': 0}


class TensorFlowServingRequestSpec(_Message):
    """Which signatures TFX's requests call (none: serving_default). Sluice's server answers the
    serving signature, the one the ONNX model was converted from."""
    FIELDS = {'signature_names': [str], 'tag': '', 'rpc_kind': 0}


class RequestSpec(_Message):
    """The InfraValidator's ``request_spec``. Sluice sends the sample rows recorded with the model at
    training (from its eval split) and checks the answers against those recorded then; ``num_examples``
    -> how many times that request is sent. ``make_warmup``: TFX writes TF Serving warmup requests into
    a copy of the model and pushes that copy; Sluice's server warms up by itself and the Pusher pushes
    the Trainer's model."""
    FIELDS = {'tensorflow_serving': TensorFlowServingRequestSpec, 'split_name': '', 'num_examples': 0,
              'make_warmup': False}


# -- ExampleDiff ----------------------------------------------------------------------------------
class _ConfusionConfig(_Message):
    FIELDS = {'feature_name': ''}


class PairedExampleSkew(_Message):
    """What ExampleDiff compares: ``identifier_features`` pair the examples; the others map to Sluice's
    ExampleDiff parameters of the same names (``confusion_config`` -> ``confusion_features``)."""
    ConfusionConfig = _ConfusionConfig
    FIELDS = {'identifier_features': [str], 'skew_sample_size': 0, 'ignore_features': [str],
              'float_round_ndigits': 0, 'allow_duplicate_identifiers': False, 'confusion_config': [_ConfusionConfig]}


_ConfusionConfig.__qualname__ = 'PairedExampleSkew.ConfusionConfig'


class ExampleDiffConfig(_Message):
    FIELDS = {'paired_example_skew': PairedExampleSkew}


# -- Transform ------------------------------------------------------------------------------------
class SplitsConfig(_Message):
    """``analyze`` (one split) -> Transform's ``analyze_split``; Sluice transforms every split."""
    FIELDS = {'analyze': [str], 'transform': [str]}


def _as_dict(message: _Message) -> dict[str, Any]:
    """The fields set, by their proto names (what protobuf's JSON form holds)."""
    def plain(value: Any) -> Any:
        if isinstance(value, _Message):
            return _as_dict(value)
        return [plain(v) for v in value] if isinstance(value, list) else value
    return {k: plain(v) for k, v in vars(message).items() if message.HasField(k) or isinstance(v, _Message)}


def to_json(message: _Message) -> str:
    """A message as JSON, field names as declared and keys sorted (what TFX's
    ``proto_utils.proto_to_json`` writes for the same message)."""
    import json

    return json.dumps(_as_dict(message), sort_keys=True, indent=2)


def from_json(json_text: str, message: _Message) -> _Message:
    """Set ``message``'s fields from ``to_json``'s form and return it (TFX's ``proto_utils.json_to_proto``)."""
    import json

    parsed = type(message)(**json.loads(json_text))
    vars(message).update(vars(parsed))
    return message


_OFFERED = ['TrainArgs', 'EvalArgs', 'PushDestination', 'Filesystem', 'Versioning', 'Input', 'Output', 'SplitConfig',
            'RangeConfig', 'StaticRange', 'RollingRange', 'SplitsConfig', 'TuneArgs', 'DataSpec', 'ModelSpec',
            'ServingSpec', 'TensorFlowServing', 'LocalDockerConfig', 'KubernetesConfig', 'ValidationSpec',
            'RequestSpec', 'TensorFlowServingRequestSpec', 'ExampleDiffConfig', 'PairedExampleSkew']
_NO_BULK = ("Sluice's BulkInferrer writes PredictionLogs only (inference_result), not predictions added to "
            'Examples (output_example_spec)')
_NO_INFRA = ("Sluice's InfraValidator checks the model in its own server (sluice serve, ONNX Runtime) on this "
             "machine, not in TF Serving in a container: give tfx.proto.ServingSpec(tensorflow_serving=..., "
             "local_docker=...) without pod settings (README, 'Serving')")
_MISSING = {
    **{name: _NO_BULK for name in ('ClassifyOutput', 'OutputColumnsSpec', 'OutputExampleSpec',
                                   'PredictOutput', 'PredictOutputCol', 'RegressOutput')},
    **{name: _NO_INFRA for name in ('EnvVar', 'EnvVarSource', 'PodOverrides', 'SecretKeySelector')},
    'DistributionValidatorConfig': 'use ExampleValidator(drift_thresholds={...}) for drift between splits or spans',
    'FeatureComparator': 'use ExampleValidator(drift_thresholds={...}) for drift between splits or spans',
    'FeatureSlicingSpec': "give the Evaluator a tfma.EvalConfig with slicing_specs (or Sluice's dict form, "
                          "{'slices': [[], ['feature']]})",
    'SingleSlicingSpec': "give the Evaluator a tfma.EvalConfig with slicing_specs (or Sluice's dict form, "
                         "{'slices': [[], ['feature']]})",
    'CustomConfig': 'Sluice ExampleGens read CSV (CsvExampleGen) or TFRecords (ImportExampleGen) only; write a custom '
                    'component for other sources (README, "A pipeline file")',
    'PayloadFormat': 'Sluice ExampleGens write tf.Example only (the default payload format)',
    'orchestration': 'Sluice runs pipelines with tfx.orchestration.LocalDagRunner (pipelines.LocalDagRunner) or '
                     'pipelines.BeamDagRunner; see `sluice export airflow|kfp` for other orchestrators',
}
__getattr__ = module_getattr('tfx.proto', lambda: _OFFERED, _MISSING)
__all__ = _OFFERED
