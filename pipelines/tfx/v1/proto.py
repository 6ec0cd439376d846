"""``tfx.proto``: the configuration messages TFX's tutorials and examples pass to components, as real
protocol-buffer messages of the same shapes (field names, numbers, types, oneofs and enums as TFX's
``.proto`` files declare them), defined here in a package of Sluice's own, ``sluice.tfx.proto`` (Sluice does not
depend on TFX). So ``text_format``, ``json_format``, ``SerializeToString``, ``HasField``, ``WhichOneof``
and ``CopyFrom`` behave as with TFX's classes, and unknown keywords are refused as protobuf refuses them.

    tfx.proto.TrainArgs(num_steps=100)
    tfx.proto.PushDestination(filesystem=tfx.proto.PushDestination.Filesystem(base_directory='serving'))
    tfx.proto.Input(splits=[tfx.proto.Input.Split(name='single_split', pattern='span-{SPAN}/*.csv')])
    tfx.proto.Output(split_config=tfx.proto.SplitConfig(splits=[
        tfx.proto.SplitConfig.Split(name='train', hash_buckets=2),
        tfx.proto.SplitConfig.Split(name='eval', hash_buckets=1)]))
    tfx.proto.RangeConfig(static_range=tfx.proto.StaticRange(start_span_number=1, end_span_number=3))

What Sluice's components make of each field is in ``sluice.tfx.v1.components`` (where a field has no
meaning here, the component says so when it is set).
"""
from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory, symbol_database
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from sluice.tfx.v1._common import module_getattr

_PACKAGE = 'sluice.tfx.proto'
# Each message: its fields as name -> (number, type); a type ending in [] is repeated; a type naming
# another message or an enum of this table refers to it. ONEOFS groups fields as TFX's files do.
_MESSAGES: dict[str, dict[str, tuple[int, str]]] = {
    # Trainer and Tuner
    'TrainArgs': {'splits': (1, 'string[]'), 'num_steps': (2, 'int32')},
    'EvalArgs': {'splits': (1, 'string[]'), 'num_steps': (2, 'int32')},
    'TuneArgs': {'num_parallel_trials': (1, 'int32')},
    # Pusher
    'PushDestination': {'filesystem': (3, 'PushDestination.Filesystem')},
    'PushDestination.Filesystem': {'base_directory': (1, 'string'), 'versioning': (6, 'Versioning')},
    # ExampleGen
    'Input': {'splits': (1, 'Input.Split[]')},
    'Input.Split': {'name': (1, 'string'), 'pattern': (2, 'string')},
    'Output': {'split_config': (3, 'SplitConfig')},
    'SplitConfig': {'splits': (1, 'SplitConfig.Split[]'), 'partition_feature_name': (2, 'string')},
    'SplitConfig.Split': {'name': (1, 'string'), 'hash_buckets': (2, 'uint32')},
    'StaticRange': {'start_span_number': (1, 'int32'), 'end_span_number': (2, 'int32')},
    'RollingRange': {'start_span_number': (1, 'int32'), 'num_spans': (2, 'int32')},
    'RangeConfig': {'static_range': (1, 'StaticRange'), 'rolling_range': (2, 'RollingRange')},
    # Transform, BulkInferrer
    'SplitsConfig': {'analyze': (1, 'string[]'), 'transform': (2, 'string[]')},
    'ModelSpec': {'model_signature_name': (2, 'string[]'), 'tag': (5, 'string[]')},
    'DataSpec': {'example_splits': (2, 'string[]')},
    # InfraValidator
    'ServingSpec': {'tensorflow_serving': (1, 'TensorFlowServing'), 'local_docker': (2, 'LocalDockerConfig'),
                    'kubernetes': (3, 'KubernetesConfig'), 'model_name': (4, 'string')},
    'TensorFlowServing': {'tags': (1, 'string[]'), 'digests': (2, 'string[]'), 'image_name': (3, 'string')},
    'LocalDockerConfig': {'client_base_url': (1, 'string'), 'client_api_version': (2, 'string'),
                          'client_timeout_seconds': (3, 'int32'), 'host_ip_address': (4, 'string')},
    'KubernetesConfig': {'service_account_name': (1, 'string'), 'active_deadline_seconds': (2, 'int32')},
    'ValidationSpec': {'max_loading_time_seconds': (1, 'int32'), 'num_tries': (2, 'int32')},
    'RequestSpec': {'tensorflow_serving': (1, 'TensorFlowServingRequestSpec'), 'split_name': (2, 'string'),
                    'num_examples': (3, 'int32'), 'make_warmup': (4, 'bool')},
    'TensorFlowServingRequestSpec': {'tag_set': (1, 'string[]'), 'signature_names': (2, 'string[]')},
    # ExampleDiff
    'PairedExampleSkew': {'identifier_features': (1, 'string[]'), 'skew_sample_size': (2, 'uint32'),
                          'ignore_features': (3, 'string[]'), 'float_round_ndigits': (4, 'uint32'),
                          'allow_duplicate_identifiers': (5, 'bool'),
                          'confusion_config': (6, 'PairedExampleSkew.ConfusionConfig[]')},
    'PairedExampleSkew.ConfusionConfig': {'feature_name': (1, 'string')},
    'ExampleDiffConfig': {'paired_example_skew': (1, 'PairedExampleSkew')},
}
_ONEOFS = {
    'PushDestination': {'destination': ('filesystem',)},
    'SplitConfig': {'splitting_method_config': ('partition_feature_name',)},
    'RangeConfig': {'range': ('static_range', 'rolling_range')},
    'ServingSpec': {'serving_binary': ('tensorflow_serving',), 'serving_platform': ('local_docker', 'kubernetes')},
    'RequestSpec': {'kind': ('tensorflow_serving',)},
}
# How pushed versions are named. Sluice names them by increasing integers from the push time (a Unix
# timestamp, bumped to stay above every earlier version), which is both of these.
_ENUMS = {'Versioning': {'AUTO': 0, 'UNIX_TIMESTAMP': 1}}

_F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {'string': _F.TYPE_STRING, 'int32': _F.TYPE_INT32, 'uint32': _F.TYPE_UINT32, 'bool': _F.TYPE_BOOL}


def _file() -> descriptor_pb2.FileDescriptorProto:
    """The tables above as one proto3 file (nested messages under their parents)."""
    file = descriptor_pb2.FileDescriptorProto(name='sluice/tfx/proto.proto', package=_PACKAGE, syntax='proto3')
    for enum, values in _ENUMS.items():
        declared = file.enum_type.add(name=enum)
        for name, number in values.items():
            declared.value.add(name=name, number=number)
    declared_messages: dict[str, descriptor_pb2.DescriptorProto] = {}
    for path, fields in _MESSAGES.items():  # a parent comes before its nested messages
        parent, _, name = path.rpartition('.')
        into = declared_messages[parent].nested_type if parent else file.message_type
        message = declared_messages[path] = into.add(name=name)
        groups = _ONEOFS.get(path, {})
        for group in groups:
            message.oneof_decl.add(name=group)
        for field, (number, kind) in fields.items():
            repeated = kind.endswith('[]')
            kind = kind.removesuffix('[]')
            added = message.field.add(name=field, number=number, json_name=field,
                                      label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL)
            if kind in _SCALARS:
                added.type = _SCALARS[kind]
            else:
                added.type = _F.TYPE_ENUM if kind in _ENUMS else _F.TYPE_MESSAGE
                added.type_name = f'.{_PACKAGE}.{kind}'
            for index, members in enumerate(groups.values()):
                if field in members:
                    added.oneof_index = index
    return file


def _classes() -> dict[str, Any]:
    # The default pool, as generated _pb2 modules use: the package is Sluice's own, so TFX's classes, if
    # loaded too, never clash with these.
    pool = descriptor_pool.Default()
    pool.Add(_file())
    classes: dict[str, Any] = {}
    for path in _MESSAGES:
        cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(f'{_PACKAGE}.{path}'))
        cls.__module__, cls.__qualname__ = __name__, path
        classes[path] = symbol_database.Default().RegisterMessage(cls)  # where unpickling looks it up
        parent, _, name = path.rpartition('.')
        if parent and not hasattr(classes[parent], name):  # protobuf's pure-Python classes lack them
            setattr(classes[parent], name, cls)
    for enum in _ENUMS:
        classes[enum] = EnumTypeWrapper(pool.FindEnumTypeByName(f'{_PACKAGE}.{enum}'))
    return classes


_CLASSES = _classes()
TrainArgs, EvalArgs, TuneArgs = _CLASSES['TrainArgs'], _CLASSES['EvalArgs'], _CLASSES['TuneArgs']
PushDestination, Versioning = _CLASSES['PushDestination'], _CLASSES['Versioning']
Filesystem = PushDestination.Filesystem
Input, Output, SplitConfig = _CLASSES['Input'], _CLASSES['Output'], _CLASSES['SplitConfig']
RangeConfig, StaticRange, RollingRange = _CLASSES['RangeConfig'], _CLASSES['StaticRange'], _CLASSES['RollingRange']
SplitsConfig, ModelSpec, DataSpec = _CLASSES['SplitsConfig'], _CLASSES['ModelSpec'], _CLASSES['DataSpec']
ServingSpec, TensorFlowServing = _CLASSES['ServingSpec'], _CLASSES['TensorFlowServing']
LocalDockerConfig, KubernetesConfig = _CLASSES['LocalDockerConfig'], _CLASSES['KubernetesConfig']
ValidationSpec, RequestSpec = _CLASSES['ValidationSpec'], _CLASSES['RequestSpec']
TensorFlowServingRequestSpec = _CLASSES['TensorFlowServingRequestSpec']
ExampleDiffConfig, PairedExampleSkew = _CLASSES['ExampleDiffConfig'], _CLASSES['PairedExampleSkew']


def to_json(message: Any) -> str:
    """A message as JSON with its fields' proto names and sorted keys (what TFX's
    ``proto_utils.proto_to_json`` writes for the same message)."""
    return json_format.MessageToJson(message, sort_keys=True, preserving_proto_field_name=True)


def from_json(json_text: str, message: Any) -> Any:
    """Set ``message``'s fields from JSON and return it (TFX's ``proto_utils.json_to_proto``)."""
    return json_format.Parse(json_text, message)


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
