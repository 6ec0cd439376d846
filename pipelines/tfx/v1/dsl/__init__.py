"""``tfx.dsl``: Pipeline, Channel, Importer and Resolver, mapped onto Sluice's own pieces.

- ``Pipeline(pipeline_name=..., pipeline_root=..., metadata_connection_config=..., components=[...],
  enable_cache=..., beam_pipeline_args=[...])`` is a Sluice ``Pipeline``: ``sluice run FILE.py`` and
  every Sluice runner take it. Resolvers that are not nodes in Sluice are left out of it, and the
  ModelValidator a TFX-style Evaluator brings (see ``tfx.components.Evaluator``) is put in.
- ``Importer(source_uri=..., artifact_type=Schema)`` is an ``ImportSchemaGen`` of
  ``<source_uri>/schema.pbtxt`` (or of ``source_uri`` when it is the file); its output is reached as
  ``outputs['result']`` (TFX's key) as well as ``outputs['schema']``.
- ``Resolver``: see the class.
- ``Channel(type=...)``: a typed placeholder, only meaningful as a Resolver's input.
- ``components``: TFX's function components (``@components.component``, ``Parameter``, ``InputArtifact``,
  ``OutputArtifact``, ``OutputDict``, ``BeamComponentParameter``): each decorated function is a Sluice
  Component class (sluice.tfx.v1.dsl.function_component).
- ``Cond(predicate)``: Sluice's own (sluice.components.conditions): nodes inside run only when it
  holds, e.g. ``with Cond(evaluator.outputs['blessing'].future()[0].custom_property('blessed') == 1):``.
"""
from __future__ import annotations

import builtins
import os
from typing import Any

from sluice.components.component import Channel as _SluiceChannel
from sluice.components.component import Component, WiringError
from sluice.components.conditions import Cond
from sluice.components.resolvers import LatestSpans
from sluice.components.schema_gen import SCHEMA_FILE, ImportSchemaGen
from sluice.metadata.artifact import Artifact, Model, ModelBlessing, Schema, TransformCache
from sluice.dsl.pipeline import Pipeline as _SluicePipeline
from sluice.dsl.pipeline import PipelineError
from sluice.tfx.v1._common import check_none, module_getattr, not_offered
from sluice.tfx.v1.orchestration.metadata import is_connection_config, store_url
from sluice.tfx.v1.dsl import experimental
from sluice.tfx.v1.dsl import function_component as components
from sluice.tfx.v1.dsl.experimental import (LatestArtifactStrategy, LatestBlessedModelStrategy,
                                               SpanRangeStrategy)

COMPANIONS = '_tfx_companions'  # attribute of a node: the nodes it brings into a tfx.dsl.Pipeline


class Channel:
    """``tfx.dsl.Channel(type=Model)``: a channel of a type without a producer, as TFX's Resolvers take
    (``model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model)``). In Sluice a component
    reads ``other_component.outputs['key']``; this placeholder only serves as a Resolver input."""

    def __init__(self, type: type[Artifact], producer_component_id: str | None = None,  # noqa: A002 (TFX's name)
                 output_key: str | None = None, **unsupported: Any) -> None:
        if not (isinstance(type, builtins.type) and issubclass(type, Artifact)):
            raise WiringError(f'tfx.dsl.Channel(type=...) takes an artifact type from '
                              f'tfx.types.standard_artifacts; got {type!r}.')
        check_none('tfx.dsl.Channel', **{k: (v, 'Sluice channels carry only a type and a producer')
                                         for k, v in unsupported.items()})
        self.type, self.producer_component_id, self.output_key = type, producer_component_id, output_key

    def __repr__(self) -> str:
        return f'tfx.dsl.Channel(type={self.type.__name__})'


class ProductionBaseline:
    """The ``model`` output of a ``LatestBlessedModelStrategy`` resolver: in Sluice, the model in
    production at the Pusher's destination, which Sluice's Evaluator measures against. Only an
    Evaluator's ``baseline_model`` takes it."""
    type = Model

    def __init__(self, resolver: Resolver, key: str) -> None:
        self.resolver, self.key = resolver, key

    def __repr__(self) -> str:
        return f"{self.resolver.id}.outputs['{self.key}'] (the model in production)"


class EarlierAnalyzerCache:
    """The output of a ``LatestArtifactStrategy`` resolver over ``Channel(type=TransformCache)``: in
    Sluice, a Transform given it keeps tf.Transform's analyzer cache and starts from its own newest
    one of an earlier run (``Transform(cache_analyzers=True)``). Only a Transform's ``analyzer_cache``
    takes it."""
    type = TransformCache

    def __init__(self, resolver: Resolver, key: str) -> None:
        self.resolver, self.key = resolver, key

    def __repr__(self) -> str:
        return f"{self.resolver.id}.outputs['{self.key}'] (the newest analyzer cache of an earlier run)"


class _Unusable:
    """A resolver output Sluice has no equivalent for; wiring it anywhere fails and says why."""

    def __init__(self, resolver: Resolver, key: str, why: str) -> None:
        self.resolver, self.key, self.why = resolver, key, why

    def __repr__(self) -> str:
        return f"{self.resolver.id}.outputs['{self.key}']"


class _ResolverOutputs(dict):
    def __init__(self, owner: Resolver, channels: dict[str, Any]) -> None:
        super().__init__(channels)
        self._owner = owner

    def __missing__(self, key: str) -> Any:
        raise WiringError(f"{self._owner.id} has no output '{key}'. Its outputs are its inputs' names: "
                          f"{', '.join(self) or '(none)'}.")


class Resolver:
    """``tfx.dsl.Resolver(strategy_class=..., config=..., **channels)``. Mapped as:

    - ``LatestBlessedModelStrategy`` (``model=Channel(type=Model)``, ``model_blessing=Channel(type=
      ModelBlessing)``): not a node in Sluice. Its ``outputs['model']``, given to an Evaluator as
      ``baseline_model``, means Sluice's baseline: the model in production at the destination of the
      Pusher that pushes the Evaluator's model (the newest version there, however it got there).
    - ``LatestArtifactStrategy`` over channels of this pipeline: not a node; each output is the channel
      itself (this run's artifact is the latest one). Over ``Channel(type=TransformCache)`` without a
      producer: what a Transform's ``analyzer_cache`` takes to keep tf.Transform's analyzer cache
      (``EarlierAnalyzerCache``). Over other channels without a producer it is not offered.
    - ``SpanRangeStrategy`` with ``config={'range_config': RangeConfig(rolling_range=RollingRange(
      num_spans=n))}`` over an ExampleGen's ``examples``: Sluice's ``LatestSpans(examples, n=n)`` node.
    """

    def __new__(cls, strategy_class: Any = None, config: dict | None = None, **channels: Any) -> Any:
        if strategy_class is SpanRangeStrategy:
            return _span_range(config, channels)
        return super().__new__(cls)

    def __init__(self, strategy_class: Any = None, config: dict | None = None, **channels: Any) -> None:
        self._id: str | None = None
        self.strategy_class = strategy_class
        if strategy_class is None:
            raise not_offered('tfx.dsl.Resolver without strategy_class (a resolver function)',
                              'Sluice maps LatestBlessedModelStrategy, LatestArtifactStrategy and SpanRangeStrategy')
        if strategy_class is LatestBlessedModelStrategy:
            self.outputs = _ResolverOutputs(self, self._latest_blessed(config, channels))
        elif strategy_class is LatestArtifactStrategy:
            self.outputs = _ResolverOutputs(self, self._latest_artifact(config, channels))
        else:
            name = getattr(strategy_class, '__name__', repr(strategy_class))
            raise not_offered(f'tfx.dsl.Resolver(strategy_class={name})',
                              'Sluice maps LatestBlessedModelStrategy (the model in production is the '
                              "Evaluator's baseline), LatestArtifactStrategy over this pipeline's channels, and "
                              'SpanRangeStrategy with a rolling range (components.LatestSpans)')

    def _latest_blessed(self, config: dict | None, channels: dict[str, Any]) -> dict[str, Any]:
        check_none('tfx.dsl.Resolver(strategy_class=LatestBlessedModelStrategy)',
                   config=(config, 'this strategy takes no config'))
        kinds = {key: getattr(ch, 'type', None) for key, ch in channels.items()}
        models = [k for k, t in kinds.items() if isinstance(t, type) and issubclass(t, Model)]
        blessings = [k for k, t in kinds.items() if isinstance(t, type) and issubclass(t, ModelBlessing)]
        if len(models) != 1 or len(blessings) != 1 or len(channels) != 2:
            raise WiringError('tfx.dsl.Resolver(strategy_class=LatestBlessedModelStrategy) takes one channel of Model '
                              'and one of ModelBlessing, e.g. model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.'
                              'Model), model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing); '
                              f'got {", ".join(f"{k}={v!r}" for k, v in channels.items()) or "none"}.')
        why = ("Sluice's blessings are bound to the production version they were measured against; only the model "
               "output (an Evaluator's baseline_model) of this resolver is offered")
        return {models[0]: ProductionBaseline(self, models[0]), blessings[0]: _Unusable(self, blessings[0], why)}

    def _latest_artifact(self, config: dict | None, channels: dict[str, Any]) -> dict[str, Any]:
        check_none('tfx.dsl.Resolver(strategy_class=LatestArtifactStrategy)',
                   config=(config, 'this strategy takes no config'))
        if not channels:
            raise WiringError('tfx.dsl.Resolver(strategy_class=LatestArtifactStrategy) needs at least one channel.')
        out = {}
        for key, channel in channels.items():
            if isinstance(channel, _SluiceChannel):
                out[key] = channel  # the latest artifact of a channel of this run is the one this run makes
                continue
            if isinstance(channel, Channel) and channel.type is TransformCache and not channel.producer_component_id:
                out[key] = EarlierAnalyzerCache(self, key)
                continue
            raise not_offered(f'tfx.dsl.Resolver(strategy_class=LatestArtifactStrategy, {key}={channel!r}) (the newest '
                              'artifact of an earlier run)',
                              "a Sluice node reads this run's outputs: pass a component's output "
                              "(component.outputs['key']); the Evaluator's baseline is the model in production "
                              '(a LatestBlessedModelStrategy resolver); to warm-start, Trainer(..., '
                              'warm_start_from=PUSH_DESTINATION) starts from the model in production; a window of '
                              'spans is components.LatestSpans')
        return out

    @property
    def id(self) -> str:
        return self._id or 'Resolver'

    def with_id(self, node_id: str) -> Resolver:
        self._id = node_id
        return self

    def add_upstream_node(self, *_nodes: Any) -> Resolver:
        return self  # not a node in Sluice: nothing to order

    def __repr__(self) -> str:
        return f'<tfx.dsl.Resolver {self.id!r} ({getattr(self.strategy_class, "__name__", "?")}): not a Sluice node>'


def _span_range(config: dict | None, channels: dict[str, Any]) -> LatestSpans:
    where = 'tfx.dsl.Resolver(strategy_class=SpanRangeStrategy)'
    range_config = (config or {}).get('range_config')
    chosen = range_config.WhichOneof('range') if hasattr(range_config, 'WhichOneof') else None
    rolling = range_config.rolling_range if chosen == 'rolling_range' else None
    if rolling is None:
        raise not_offered(f'{where} without config={{"range_config": RangeConfig(rolling_range=...)}}',
                          'a static range of spans is read by the ExampleGen itself: '
                          'CsvExampleGen(range_config=RangeConfig(static_range=...)); a rolling window is '
                          'RangeConfig(rolling_range=RollingRange(num_spans=n)), i.e. components.LatestSpans(gen, n=n)')
    if rolling.start_span_number:
        raise not_offered(f'{where} with RollingRange(start_span_number={rolling.start_span_number})',
                          "Sluice's window (components.LatestSpans) ends at this run's span; give num_spans only")
    if len(channels) != 1:
        raise WiringError(f'{where} takes one channel of Examples (examples=example_gen.outputs["examples"]); got '
                          f'{", ".join(channels) or "none"}.')
    [(key, channel)] = channels.items()
    if not isinstance(channel, _SluiceChannel):
        raise not_offered(f'{where}({key}={channel!r})', "pass the ExampleGen's output itself: "
                          f"{key}=example_gen.outputs['examples'] (Sluice wires channels, not producer ids)")
    node = LatestSpans(channel, n=max(int(rolling.num_spans or 1), 1))
    if key != 'examples':
        node.outputs[key] = node.outputs['examples']
    return node


def Importer(source_uri: str, artifact_type: type, reimport: bool = False,  # noqa: N802 (TFX's name)
             properties: dict | None = None, custom_properties: dict | None = None,
             output_key: str | None = None) -> ImportSchemaGen:
    """``tfx.dsl.Importer(source_uri=DIR, artifact_type=Schema)``: an ``ImportSchemaGen`` of
    ``DIR/schema.pbtxt`` (``source_uri`` may also be the file itself). The file's content is part of
    the cache key, so ``reimport`` needs no switch: an edited schema is imported again."""
    if not (isinstance(artifact_type, type) and issubclass(artifact_type, Schema)):
        name = getattr(artifact_type, '__name__', repr(artifact_type))
        way = {'Examples': 'read files with ImportExampleGen(input_base=...) (TFRecords of tf.Example) or '
                           'CsvExampleGen',
               'Model': 'put a model in production by hand with `sluice promote MODEL_ID DEST --reason TEXT`, or '
                        'copy a SavedModel into a new version directory of the destination'}.get(
            name, 'Sluice imports schemas only (ImportSchemaGen); other artifacts come from components')
        raise not_offered(f'tfx.dsl.Importer(artifact_type={name})', way)
    check_none('tfx.dsl.Importer', properties=(properties, 'Sluice records what an importer read itself'),
               custom_properties=(custom_properties, 'Sluice records what an importer read itself'))
    if not isinstance(source_uri, str) or not source_uri:
        raise WiringError(f'tfx.dsl.Importer(source_uri=...) takes the directory holding {SCHEMA_FILE}; '
                          f'got {source_uri!r}.')
    is_file = os.path.isfile(source_uri) or (source_uri.endswith(('.pbtxt', '.txt')) and not os.path.isdir(source_uri))
    node = ImportSchemaGen(schema_file=source_uri if is_file else os.path.join(source_uri, SCHEMA_FILE))
    node.outputs[output_key or 'result'] = node.outputs['schema']
    return node


class Pipeline(_SluicePipeline):
    """``tfx.dsl.Pipeline``: a Sluice Pipeline built from TFX's arguments. ``enable_cache`` defaults to
    False, as in TFX. ``metadata_connection_config`` is what
    ``tfx.orchestration.metadata.sqlite_metadata_connection_config(path)`` returns (ML-Metadata's
    ConnectionConfig, or a Sluice store URL); without it the store is ``<pipeline_root>/metadata.db``."""

    def __init__(self, pipeline_name: str, pipeline_root: str = '', metadata_connection_config: Any = None,
                 components: Any = (), enable_cache: bool = False, beam_pipeline_args: Any = None,
                 platform_config: Any = None, execution_mode: Any = None, inputs: Any = None, outputs: Any = None,
                 dsl_context_registry: Any = None) -> None:
        check_none('tfx.dsl.Pipeline',
                   platform_config=(platform_config, 'Sluice runs nodes on this machine; the data work runs on '
                                    'Beam (beam_pipeline_args=[...], README "Beyond one machine")'),
                   execution_mode=(execution_mode, 'Sluice runs pipelines synchronously (the default)'),
                   inputs=(inputs, 'Sluice has no sub-pipelines; build one pipeline from functions'),
                   outputs=(outputs, 'Sluice has no sub-pipelines; build one pipeline from functions'),
                   dsl_context_registry=(dsl_context_registry, 'not needed in Sluice'))
        if not pipeline_root:
            raise PipelineError(f'tfx.dsl.Pipeline({pipeline_name!r}) needs a pipeline_root: the directory where its '
                                'artifacts go.')
        if is_connection_config(metadata_connection_config):
            metadata_connection_config = store_url(metadata_connection_config)
        if metadata_connection_config is not None and not isinstance(metadata_connection_config, str):
            raise WiringError('tfx.dsl.Pipeline(metadata_connection_config=...) takes what '
                              'tfx.orchestration.metadata.sqlite_metadata_connection_config(path) returns (an '
                              'ML-Metadata ConnectionConfig), or a Sluice store URL (sqlite:///..., postgresql://..., '
                              f'mysql://...); got {type(metadata_connection_config).__name__}.')
        super().__init__(name=pipeline_name, pipeline_root=pipeline_root, components=sluice_nodes(components),
                         metadata=metadata_connection_config, enable_cache=enable_cache,
                         beam_pipeline_args=list(beam_pipeline_args or ()))


def sluice_nodes(components: Any) -> list[Component]:
    """The Sluice nodes of a TFX-style component list: resolvers that are not nodes left out, the
    companions a TFX-style component brings (an Evaluator's ModelValidator) put in after it."""
    out: list[Component] = []
    seen: set[int] = set()

    def add(node: Component) -> None:
        if id(node) not in seen:
            seen.add(id(node))
            out.append(node)

    for comp in components:
        if isinstance(comp, Resolver):
            continue  # not a node in Sluice (see Resolver)
        if not isinstance(comp, Component):
            raise PipelineError(f'tfx.dsl.Pipeline(components=[...]): {comp!r} is not a component; give the components '
                                'made with tfx.components, tfx.dsl.Importer and tfx.dsl.Resolver.')
        add(comp)
        for companion in getattr(comp, COMPANIONS, ()):
            if companion._id is None and comp.id != comp.component_type:
                companion.with_id(f'{comp.id}_validator')  # follows a renamed Evaluator
            add(companion)
    return out


_OFFERED = ['Pipeline', 'Channel', 'Cond', 'Importer', 'Resolver', 'components', 'experimental']
_MISSING = {
    'ExecutionMode': 'Sluice runs pipelines synchronously',
    'Artifact': 'declare artifact types with components.Artifact',
    'io': 'use os and open(): Sluice paths are POSIX paths',
    'placeholders': 'give values in the pipeline file (create_pipeline(...) arguments)',
}
__getattr__ = module_getattr('tfx.dsl', lambda: _OFFERED, _MISSING)
__all__ = _OFFERED
