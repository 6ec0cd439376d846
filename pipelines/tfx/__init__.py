"""TFX's import tree on Sluice: a TFX pipeline file or module file moves to Sluice by one prefix,
``tfx`` -> ``sluice.tfx``, in its import lines and nothing else::

    from sluice.tfx import v1 as tfx                              # from tfx import v1 as tfx
    from sluice.tfx.components import CsvExampleGen, Trainer      # from tfx.components import ...
    from sluice.tfx.orchestration.beam.beam_dag_runner import BeamDagRunner
    from sluice.tfx.components.trainer.fn_args_utils import FnArgs

``sluice.tfx.v1`` (a real package) is TFX's public v1 API. The older module paths that TFX's own
examples and tutorials still import are listed in ``TREE`` below: each is made, when first imported,
from the same objects ``v1`` offers, so both spellings build the same Sluice nodes. A name a module
does not offer fails with the message ``v1`` gives for it (``NotOffered``: what, and the Sluice way).
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
from typing import Any

# TFX module (under ``tfx.``) -> where its names come from: 'sluice.module' (every name it offers,
# with its messages for the rest) or {name: 'sluice.module:attr'}, with the module whose messages
# explain the names not listed after '*'. Modules that are only parents of others are ().
_V1 = 'sluice.tfx.v1'
TREE: dict[str, Any] = {
    'components': f'{_V1}.components',
    'components.trainer': (),
    'components.trainer.fn_args_utils': {'FnArgs': 'sluice.components.trainer:FnArgs',
                                         'DataAccessor': 'sluice.components.trainer:DataAccessor',
                                         '*': f'{_V1}.components'},
    'components.trainer.executor': {'TrainerFnArgs': 'sluice.components.trainer:FnArgs',
                                    'FnArgs': 'sluice.components.trainer:FnArgs', '*': f'{_V1}.components'},
    'dsl': f'{_V1}.dsl',
    'dsl.components': f'{_V1}.dsl.function_component',
    'dsl.components.common': (),
    'dsl.component': (),
    'dsl.component.experimental': (),
    'dsl.component.experimental.decorators': {'component': f'{_V1}.dsl.function_component:component',
                                              '*': f'{_V1}.dsl.function_component'},
    'dsl.component.experimental.annotations': {
        **{name: f'{_V1}.dsl.function_component:{name}'
           for name in ('Parameter', 'InputArtifact', 'OutputArtifact', 'OutputDict', 'BeamComponentParameter')},
        '*': f'{_V1}.dsl.function_component'},
    'dsl.components.common.resolver': {'Resolver': f'{_V1}.dsl:Resolver',
                                       'ResolverStrategy': f'{_V1}.dsl.experimental:ResolverStrategy',
                                       '*': f'{_V1}.dsl'},
    'dsl.components.common.importer': {'Importer': f'{_V1}.dsl:Importer', '*': f'{_V1}.dsl'},
    'dsl.experimental': f'{_V1}.dsl.experimental',
    'dsl.experimental.latest_blessed_model_resolver': {
        'LatestBlessedModelResolver': f'{_V1}.dsl.experimental:LatestBlessedModelStrategy',
        'LatestBlessedModelStrategy': f'{_V1}.dsl.experimental:LatestBlessedModelStrategy',
        '*': f'{_V1}.dsl.experimental'},
    'dsl.experimental.latest_artifacts_resolver': {
        'LatestArtifactsResolver': f'{_V1}.dsl.experimental:LatestArtifactStrategy',
        'LatestArtifactStrategy': f'{_V1}.dsl.experimental:LatestArtifactStrategy',
        '*': f'{_V1}.dsl.experimental'},
    'orchestration': f'{_V1}.orchestration',
    'orchestration.metadata': f'{_V1}.orchestration.metadata',
    'orchestration.pipeline': {'Pipeline': f'{_V1}.dsl:Pipeline', '*': f'{_V1}.dsl'},
    'orchestration.beam': (),
    'orchestration.beam.beam_dag_runner': {'BeamDagRunner': f'{_V1}.orchestration:BeamDagRunner',
                                           '*': f'{_V1}.orchestration'},
    'orchestration.local': (),
    'orchestration.local.local_dag_runner': {'LocalDagRunner': f'{_V1}.orchestration:LocalDagRunner',
                                             '*': f'{_V1}.orchestration'},
    'orchestration.experimental': (),
    'orchestration.experimental.interactive': (),
    'orchestration.experimental.interactive.interactive_context': {
        'InteractiveContext': 'sluice.runners.interactive:InteractiveContext', '*': f'{_V1}.orchestration'},
    'proto': f'{_V1}.proto',
    'proto.trainer_pb2': {'TrainArgs': f'{_V1}.proto:TrainArgs', 'EvalArgs': f'{_V1}.proto:EvalArgs',
                          '*': f'{_V1}.proto'},
    'proto.pusher_pb2': {'PushDestination': f'{_V1}.proto:PushDestination', 'Versioning': f'{_V1}.proto:Versioning',
                         '*': f'{_V1}.proto'},
    'proto.example_gen_pb2': {name: f'{_V1}.proto:{name}' for name in ('Input', 'Output', 'SplitConfig')}
    | {'*': f'{_V1}.proto'},
    'proto.range_config_pb2': {name: f'{_V1}.proto:{name}' for name in ('RangeConfig', 'StaticRange', 'RollingRange')}
    | {'*': f'{_V1}.proto'},
    'proto.transform_pb2': {'SplitsConfig': f'{_V1}.proto:SplitsConfig', '*': f'{_V1}.proto'},
    'proto.bulk_inferrer_pb2': {'DataSpec': f'{_V1}.proto:DataSpec', 'ModelSpec': f'{_V1}.proto:ModelSpec',
                                '*': f'{_V1}.proto'},
    'proto.tuner_pb2': {'TuneArgs': f'{_V1}.proto:TuneArgs', '*': f'{_V1}.proto'},
    'types': {'Channel': f'{_V1}.dsl:Channel', 'standard_artifacts': f'{_V1}.types.standard_artifacts',
              '*': f'{_V1}.types'},
    'types.standard_artifacts': f'{_V1}.types.standard_artifacts',
    'types.channel': {'Channel': f'{_V1}.dsl:Channel', '*': f'{_V1}.types'},
    'types.value_artifact': {'ValueArtifact': 'sluice.metadata.artifact:ValueArtifact',
                             '*': f'{_V1}.types.standard_artifacts'},
    'utils': (),
    'utils.io_utils': {'parse_pbtxt_file': f'{_V1}.utils:parse_pbtxt_file', '*': f'{_V1}.utils'},
    'utils.proto_utils': {'proto_to_json': f'{_V1}.proto:to_json', 'json_to_proto': f'{_V1}.proto:from_json',
                          '*': f'{_V1}.utils'},
}


def _resolve(target: str) -> Any:
    module, _, attr = target.partition(':')
    value = importlib.import_module(module)
    return getattr(value, attr) if attr else value


def _fill(module: types.ModuleType, key: str, spec: Any) -> None:
    """Give a module of the tree its names: all of a Sluice module's, or the listed ones."""
    if isinstance(spec, str):
        source = importlib.import_module(spec)
        names = list(getattr(source, '__all__', ()))
        module.__dict__.update({name: getattr(source, name) for name in names})
        module.__getattr__ = source.__getattr__  # type: ignore[attr-defined]  # its messages for the rest
    elif isinstance(spec, dict):
        names = [name for name in spec if name != '*']
        module.__dict__.update({name: _resolve(spec[name]) for name in names})
        fallback = importlib.import_module(spec['*'])
        module.__getattr__ = fallback.__getattr__  # type: ignore[attr-defined]
    else:
        names = []
    children = sorted({other[len(key) + 1:].split('.')[0] for other in TREE if other.startswith(key + '.')})
    module.__all__ = names + [child for child in children if child not in names]  # type: ignore[attr-defined]


class _TreeLoader(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds and makes the modules of ``TREE`` (``sluice.tfx.<key>``); every other name is left to
    the normal import system (``sluice.tfx.v1`` is a real package)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        key = fullname[len(__name__) + 1:] if fullname.startswith(__name__ + '.') else None
        if key not in TREE:
            return None
        is_parent = any(other.startswith(key + '.') for other in TREE)
        return importlib.util.spec_from_loader(fullname, self, is_package=is_parent)

    def create_module(self, spec: Any) -> None:
        return None  # the default module object

    def exec_module(self, module: types.ModuleType) -> None:
        key = module.__name__[len(__name__) + 1:]
        module.__doc__ = f'``tfx.{key}`` as Sluice offers it (see sluice.tfx).'
        if module.__spec__ is not None and module.__spec__.submodule_search_locations is not None:
            module.__path__ = []  # a package: its children come from this loader too
        _fill(module, key, TREE[key])


if not any(isinstance(finder, _TreeLoader) for finder in sys.meta_path):
    sys.meta_path.append(_TreeLoader())
