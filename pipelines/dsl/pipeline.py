"""The Pipeline DSL: a DAG of component instances plus where and how to run it.

    >>> pipeline = Pipeline(name='penguin', pipeline_root='runs/penguin', components=[gen, stats],
    ...                     metadata='sqlite:///runs/penguin/metadata.db', enable_cache=True,
    ...                     beam_pipeline_args=['--direct_num_workers=1'])
"""
from __future__ import annotations

import graphlib
import importlib.util
import os
import re
import sys
from typing import Any, Callable, Sequence

from sluice.metadata import storage
from sluice.components.component import Component
from sluice.components.module_file import LOADING, forget_local_modules, pickle_by_value
from sluice.metadata.artifact import PushedModel

_NAME_RE = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9_.-]*$')


class PipelineError(ValueError):
    """The pipeline definition is inconsistent; the message says how to fix it."""
    retryable = False


class Pipeline:
    """A named DAG of components with a root directory, a metadata store, Beam options and caching.

    ``metadata`` is a store URL (``sqlite:///...``, ``postgresql://...``, ``mysql://...``,
    ``:memory:``); by default a SQLite file ``<pipeline_root>/metadata.db``. ``pipeline_root`` may be
    an object store URL (``s3://bucket/prefix``, ``gs://...``): artifacts then live there, and the
    default store is a SQLite file in its local stand-in, ``~/.cache/sluice/s3/bucket/prefix/``
    (``sluice.metadata.storage.local_dir``); give a ``postgresql://`` store to share runs between machines.
    """

    def __init__(self, name: str, pipeline_root: str, components: Sequence[Component],
                 metadata: str | None = None, enable_cache: bool = True,
                 beam_pipeline_args: Sequence[str] = (), retry: Any = None,
                 on_success: Sequence[Callable[[Any], Any]] = (), on_failure: Sequence[Callable[[Any], Any]] = ()) -> None:
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise PipelineError(f'Pipeline name {name!r} must be letters, digits, _, . or - '
                                '(it names the pipeline in the metadata store).')
        if not pipeline_root or not isinstance(pipeline_root, str):
            raise PipelineError(f'Pipeline {name!r}: pipeline_root must be a directory path; got {pipeline_root!r}.')
        if isinstance(beam_pipeline_args, str):
            raise PipelineError(f'Pipeline {name!r}: beam_pipeline_args is a list of strings, '
                                f"e.g. ['--direct_num_workers=2']; got the string {beam_pipeline_args!r}.")
        self.name = name
        try:
            self.pipeline_root = storage.normalize(pipeline_root)
        except storage.StorageError as e:
            raise PipelineError(f'Pipeline {name!r}: pipeline_root {e}') from None
        self.metadata = metadata if metadata is not None else \
            f'sqlite:///{os.path.join(storage.local_dir(self.pipeline_root), "metadata.db")}'
        self.enable_cache = bool(enable_cache)
        self.beam_pipeline_args = [str(a) for a in beam_pipeline_args]
        from sluice.components.retry import Retry
        if retry is not None and not isinstance(retry, Retry):
            raise PipelineError(f'Pipeline {name!r}: retry takes a Retry(attempts=..., delay=..., backoff=..., '
                                f'max_delay=...); got {type(retry).__name__} {retry!r}.')
        self.retry = retry
        for hook, callbacks in (('on_success', on_success), ('on_failure', on_failure)):
            if not isinstance(callbacks, (list, tuple)) or not all(callable(c) for c in callbacks):
                raise PipelineError(f'Pipeline {name!r}: {hook} takes a list of callables (each called with a '
                                    f'sluice.observe.RunNotice), e.g. [Webhook(url)]; got {callbacks!r}.')
        self.on_success, self.on_failure = list(on_success), list(on_failure)
        self.no_cache: set[str] = set()  # node ids executed even when cached (sluice run --no-cache NODE)
        self.source_file: str | None = None  # set when loaded from a pipeline file, to resume from it
        self.source_args: dict[str, Any] = {}
        self.components = self._sorted(_with_companions(list(components)))
        self._fill_push_destinations()

    def _sorted(self, components: list[Component]) -> list[Component]:
        if not components:
            raise PipelineError(f'Pipeline {self.name!r} has no components.')
        by_id: dict[str, Component] = {}
        for comp in components:
            if not isinstance(comp, Component):
                raise PipelineError(f'Pipeline {self.name!r}: components must be Component instances; '
                                    f'got {type(comp).__name__} {comp!r}.')
            if comp.id in by_id and by_id[comp.id] is not comp:
                raise PipelineError(
                    f"Pipeline {self.name!r} has two components with the id '{comp.id}'; give one of them "
                    f"another id with .with_id('{comp.id.lower()}_2').")
            by_id[comp.id] = comp
        members = {id(c) for c in components}
        graph: dict[str, list[str]] = {}
        for comp in by_id.values():
            for key, channel in comp.inputs.items():
                if channel is not None and id(channel.producer) not in members:
                    raise PipelineError(
                        f"{comp.id}.inputs['{key}'] comes from {channel.producer.id}, which is not in the "
                        f"components of pipeline {self.name!r}; add it to Pipeline(components=[...]).")
            for up in comp.upstream:
                if id(up) not in members:
                    raise PipelineError(
                        f'{comp.id} waits for {up.id} (add_upstream_node), which is not in the components of '
                        f'pipeline {self.name!r}; add it to Pipeline(components=[...]).')
            graph[comp.id] = [up.id for up in comp.upstream]
        sorter = graphlib.TopologicalSorter(graph)
        try:
            sorter.prepare()
        except graphlib.CycleError as e:
            cycle = ' -> '.join(e.args[1])
            raise PipelineError(f'Pipeline {self.name!r} has a cycle: {cycle}.') from None
        # Topological order, ties broken by the order the user listed the components in.
        position = {c.id: i for i, c in enumerate(by_id.values())}
        order: list[Component] = []
        while sorter.is_active():
            ready = sorted(sorter.get_ready(), key=position.__getitem__)
            for node_id in ready:
                order.append(by_id[node_id])
                sorter.done(node_id)
        return order

    def _fill_push_destinations(self) -> None:
        """An Evaluator without ``push_destination`` measures against the model in production where the
        Pusher consuming the same model pushes: fill it in, so pipeline files need not repeat it."""
        pushes: dict[tuple[int, str], set[str]] = {}
        for comp in self.components:
            channel, destination = comp.inputs.get('model'), comp.parameters.get('push_destination')
            if channel is not None and destination and any(
                    issubclass(o.type, PushedModel) for o in type(comp).OUTPUTS.values()):
                pushes.setdefault((id(channel.producer), channel.key), set()).add(destination)
        for comp in self.components:
            channel = comp.inputs.get('model')
            if channel is None or 'push_destination' not in type(comp).PARAMETERS or \
                    comp.parameters.get('push_destination') or \
                    any(issubclass(o.type, PushedModel) for o in type(comp).OUTPUTS.values()):
                continue
            found = sorted(pushes.get((id(channel.producer), channel.key), ()))
            if len(found) > 1:
                raise PipelineError(f'{comp.id} measures {channel!r}, which is pushed to {", ".join(found)}; give '
                                    f'{comp.id} the push_destination whose production model is its baseline.')
            if found:
                comp.parameters['push_destination'] = found[0]

    def retry_for(self, component: Component) -> Any:
        """The node's retry policy: its own (``with_retry``), else the pipeline's, else None."""
        own = getattr(component, 'retry_policy', None)  # (pipelines pickled before retries lack these)
        return own if own is not None else getattr(self, 'retry', None)

    def cache_for(self, component: Component) -> bool:
        """Whether this node may reuse a cached result."""
        return (self.enable_cache and getattr(component, 'cache_enabled', True)
                and component.id not in getattr(self, 'no_cache', set()))

    @property
    def node_ids(self) -> list[str]:
        return [c.id for c in self.components]

    def node(self, node_id: str) -> Component:
        for comp in self.components:
            if comp.id == node_id:
                return comp
        from sluice.components.component import did_you_mean
        raise PipelineError(f"Pipeline {self.name!r} has no node '{node_id}'{did_you_mean(node_id, self.node_ids)}")

    def upstream_of(self, node_id: str) -> set[str]:
        """Every node that ``node_id`` depends on, directly or not."""
        out: set[str] = set()
        frontier = [self.node(node_id)]
        while frontier:
            frontier = [u for c in frontier for u in c.upstream if u.id not in out]
            out |= {u.id for u in frontier}
        return out

    def select(self, from_nodes: Sequence[str] = (), to_nodes: Sequence[str] = (),
               only: Sequence[str] = ()) -> set[str] | None:
        """The nodes a partial run runs (``sluice run --from/--to/--only``), or None for all of them:
        ``from_nodes`` and everything downstream of them, intersected with ``to_nodes`` and everything
        upstream of them; or exactly ``only``; with the nodes the selected ones bring along (a Trainer's
        ONNX export)."""
        if not (from_nodes or to_nodes or only):
            return None
        if only and (from_nodes or to_nodes):
            raise PipelineError('--only names the nodes to run; it cannot be combined with --from or --to.')
        for node_id in [*from_nodes, *to_nodes, *only]:
            self.node(node_id)  # a clear error for an unknown node
        if only:  # with the nodes they bring along (a Trainer's ONNX export is part of training it)
            return set(only) | {c.id for n in only for c in self.node(n).companions}
        selected = set(self.node_ids)
        if from_nodes:
            selected &= set().union(*({n} | self.downstream(n) for n in from_nodes))
        if to_nodes:
            selected &= set().union(*({n} | self.upstream_of(n) for n in to_nodes))
        if not selected:
            raise PipelineError(f'--from {", ".join(from_nodes)} --to {", ".join(to_nodes)} selects no node: no '
                                'node is both downstream of the first and upstream of the second.')
        return selected | {c.id for n in selected for c in self.node(n).companions}

    def downstream(self, node_id: str) -> set[str]:
        """Every node that depends, directly or not, on ``node_id``."""
        out: set[str] = set()
        frontier = {node_id}
        while frontier:
            frontier = {c.id for c in self.components
                        if c.id not in out and any(u.id in frontier for u in c.upstream)}
            out |= frontier
        return out

    def __repr__(self) -> str:
        return f'<Pipeline {self.name!r}: {" -> ".join(self.node_ids)}>'


def _with_companions(components: list[Component]) -> list[Component]:
    """The components, each followed by the nodes it brings along (a Trainer's OnnxExporter) unless
    they are listed already."""
    listed = {id(c) for c in components}
    out: list[Component] = []
    for comp in components:
        out.append(comp)
        for companion in getattr(comp, 'companions', ()) if isinstance(comp, Component) else ():
            if id(companion) not in listed:
                listed.add(id(companion))
                out.append(companion)
    return out


def _exec_pipeline_file(path: str) -> tuple[Any, set[str]]:
    directory = os.path.dirname(path)
    if directory in sys.path:
        sys.path.remove(directory)
    sys.path.insert(0, directory)  # its local imports resolve beside it, as the cache key assumes
    local = forget_local_modules(path)
    module_name = '_sluice_pipeline_' + re.sub(r'\W', '_', os.path.splitext(os.path.basename(path))[0])
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise PipelineError(f'Pipeline file {path} line {e.lineno}: syntax error: {e.msg}.') from None
    except Exception as e:
        raise PipelineError(f'Pipeline file {path} failed to load: {_where(e, path)}') from e
    return module, local


def load_pipeline(path: str, **kwargs: Any) -> Pipeline:
    """Load a pipeline file: call its ``create_pipeline(**kwargs)``, or else take its ``pipeline``."""
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise PipelineError(f'Pipeline file {path} does not exist.')
    with LOADING:  # one user file at a time (sluice.components.module_file)
        module, local = _exec_pipeline_file(path)
    # The run stores a pickled copy of the pipeline (to resume where the file is not): its classes and
    # the local modules they use go by value, since no other process can import this module by name.
    pickle_by_value(module, local)
    factory = getattr(module, 'create_pipeline', None)
    if callable(factory):
        try:
            pipeline = factory(**kwargs)
        except Exception as e:
            raise PipelineError(f'create_pipeline() in {path} raised {_where(e, path)}') from e
    elif isinstance(getattr(module, 'pipeline', None), Pipeline):
        pipeline = module.pipeline
    else:
        raise PipelineError(f'Pipeline file {path} defines neither a create_pipeline() function nor a '
                            'module-level `pipeline`; add one of them.')
    if not isinstance(pipeline, Pipeline):
        raise PipelineError(f'create_pipeline() in {path} returned {type(pipeline).__name__}, not a Pipeline.')
    pipeline.source_file = path
    pipeline.source_args = dict(kwargs)
    return pipeline


def _where(error: Exception, path: str) -> str:
    """``Type: message`` and the innermost line of the user's file it came from."""
    import traceback

    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename == path]
    at = f' (line {frames[-1].lineno}: {frames[-1].line})' if frames else ''
    return f'{type(error).__name__}: {error}{at}. Fix the pipeline file and run again.'
