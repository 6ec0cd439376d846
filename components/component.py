"""Declaring a component: typed inputs, outputs and parameters, and the executor that does the work.

    >>> class LineCount(Component):
    ...     '''Counts the lines of each split.'''
    ...     examples = Input(Examples)
    ...     statistics = Output(ExampleStatistics)
    ...     min_lines = Parameter(int, default=1)
    ...     executor = LineCountExecutor
    >>> counts = LineCount(examples=gen.outputs['examples']).with_id('counts')
    >>> counts.outputs['statistics']
    counts.outputs['statistics']

A component is declared once. Wiring is checked when the component is constructed; the executor's
``run`` signature is checked when the class is defined.
"""
from __future__ import annotations

import difflib
import inspect
import os
import re
import time
from typing import Any, Callable, ClassVar, Iterator

from sluice.components.conditions import ArtifactFuture, open_conditions
from sluice.components.driver import Driver
from sluice.components.executor import Executor
from sluice.components.fingerprint.stale import note_loaded
from sluice.metadata.artifact import Artifact

class _Required:
    """The default of a parameter that has none; one object, also in a process that unpickles a
    component class shipped by value (a Beam worker), so ``Parameter.required`` holds there too."""

    def __reduce__(self) -> str:
        return '_REQUIRED'  # pickled as a reference to this module's object

    def __repr__(self) -> str:
        return '<required>'


_REQUIRED = _Required()
_ID_RE = re.compile(r'^[A-Za-z_][A-Za-z0-9_.-]*$')
_RESERVED = {'id', 'inputs', 'outputs', 'parameters', 'with_id', 'executor', 'driver', 'version',
             'libraries', 'upstream', 'component_type', 'add_upstream_node', 'INPUTS', 'OUTPUTS', 'PARAMETERS',
             'with_retry', 'with_timeout', 'with_cache', 'retry_policy', 'timeout_seconds', 'cache_enabled',
             'conditions'}


class WiringError(TypeError):
    """A component was constructed or wired wrongly; the message says how to fix it."""
    retryable = False


def did_you_mean(name: str, choices: Any) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else '.'


class _Declaration:
    name = ''

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name


class Input(_Declaration):
    """A typed input: a channel of ``artifact_type`` produced by another component."""

    def __init__(self, artifact_type: type[Artifact], optional: bool = False) -> None:
        self.type, self.optional = artifact_type, optional


class Output(_Declaration):
    """A typed output; reached as ``component.outputs[name]``."""

    def __init__(self, artifact_type: type[Artifact]) -> None:
        self.type = artifact_type


class Parameter(_Declaration):
    """A typed parameter with an optional default.

    ``path=True`` makes a relative path absolute at construction (so the pipeline can be run from
    anywhere); ``user_code=True`` marks a module file whose code (with the local files it imports)
    is part of the cache key; ``check(value)`` may raise ValueError to reject a value at construction.
    """

    def __init__(self, kind: type | tuple[type, ...], default: Any = _REQUIRED, *, path: bool = False,
                 user_code: bool = False, check: Callable[[Any], None] | None = None) -> None:
        self.kind = kind if isinstance(kind, tuple) else (kind,)
        self.default = default
        self.path = path or user_code
        self.user_code = user_code
        self.check = check

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    def type_names(self) -> str:
        return ' or '.join(k.__name__ for k in self.kind)

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.default is None
        if isinstance(value, bool) and bool not in self.kind:
            return False
        if float in self.kind and isinstance(value, int):
            return True
        return isinstance(value, self.kind)


class Channel:
    """A typed handle on one output of one component, passed as another component's input."""

    def __init__(self, producer: Component, key: str, artifact_type: type[Artifact]) -> None:
        self.producer, self.key, self.type = producer, key, artifact_type

    def future(self) -> ArtifactFuture:
        """This channel's artifact at run time, for a ``Cond`` predicate (``future()[0].value == 1``)."""
        return ArtifactFuture(self)

    def __repr__(self) -> str:
        return f"{self.producer.id}.outputs['{self.key}']"


class _Outputs(dict):
    def __init__(self, owner: str, channels: dict[str, Channel]) -> None:
        super().__init__(channels)
        self._owner = owner

    def __missing__(self, key: str) -> Channel:
        raise WiringError(f"{self._owner} has no output '{key}'{did_you_mean(key, self)} "
                          f"Its outputs: {', '.join(self) or '(none)'}.")


class Component:
    """Base class of all components. Subclasses declare Input, Output and Parameter attributes and
    set ``executor``; they may set ``driver`` (a Driver subclass), ``version`` and ``libraries``
    (the distributions whose installed versions the outputs depend on, e.g. ``('tensorflow',)``;
    part of the cache key, see components/fingerprint/implementation.py)."""

    INPUTS: ClassVar[dict[str, Input]] = {}
    OUTPUTS: ClassVar[dict[str, Output]] = {}
    PARAMETERS: ClassVar[dict[str, Parameter]] = {}
    executor: ClassVar[type[Executor] | None] = None
    driver: ClassVar[type[Driver]] = Driver
    version: ClassVar[str] = '1'
    libraries: ClassVar[tuple[str, ...]] = ()
    # With several nodes at once, run the executor in a process of its own: for work that is mostly
    # Python (it would hold the GIL against the nodes beside it). Such a process is forked from the
    # run's warm Beam pool, with the heavy libraries imported, when the run has one; else it is a new
    # process, which imports them again: ``apart_from_rows`` is the input (rows of its Examples) below
    # which that costs more than it saves.
    apart_when_parallel: ClassVar[bool] = False
    apart_from_rows: ClassVar[int] = 0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        inputs, outputs, params = dict(cls.INPUTS), dict(cls.OUTPUTS), dict(cls.PARAMETERS)
        for name, value in list(vars(cls).items()):
            if isinstance(value, _Declaration):
                if name in _RESERVED:
                    raise WiringError(f"{cls.__name__} declares '{name}', a name Component reserves; rename it.")
                for table in (inputs, outputs, params):
                    table.pop(name, None)
                {Input: inputs, Output: outputs, Parameter: params}[type(value)][name] = value
                delattr(cls, name)
        cls.INPUTS, cls.OUTPUTS, cls.PARAMETERS = inputs, outputs, params
        if cls.executor is not None:
            _check_executor(cls)
        cls._loaded_ns = time.time_ns()  # see fingerprint.stale.stale_code
        note_loaded(cls)

    def __init__(self, **kwargs: Any) -> None:
        cls = type(self)
        name = cls.__name__
        if cls.executor is None:
            raise WiringError(f'{name} has no executor; set `executor = SomeExecutor` in the class.')
        self._id: str | None = None
        self._after: list[Component] = []
        self.retry_policy: Any = None  # a pipelines.Retry, set with with_retry
        self.timeout_seconds: float | None = None
        self.cache_enabled = True
        self.conditions = open_conditions()  # the predicates of the `with Cond(...)` blocks around it
        self.inputs: dict[str, Channel | None] = {}
        self.parameters: dict[str, Any] = {}
        known = {**cls.INPUTS, **cls.PARAMETERS}
        for key in kwargs:
            if key not in known:
                takes = ', '.join(known) or 'no arguments'
                raise WiringError(f"{name}() got an unexpected argument '{key}'{did_you_mean(key, known)} "
                                  f'It takes: {takes}.')
        for key, decl in cls.INPUTS.items():
            value = kwargs.get(key)
            if value is None:
                if not decl.optional:
                    raise WiringError(f"{name}() is missing the required input '{key}' "
                                      f'(a channel of {decl.type.type_name()}).')
                self.inputs[key] = None
                continue
            _check_channel(name, key, decl, value)
            self.inputs[key] = value
        for key, decl in cls.PARAMETERS.items():
            if key not in kwargs:
                if decl.required:
                    raise WiringError(f"{name}() is missing the required parameter '{key}' ({decl.type_names()}).")
                self.parameters[key] = decl.default
                continue
            value = kwargs[key]
            if not decl.accepts(value):
                raise WiringError(f'{name}({key}=...) expects {decl.type_names()}; '
                                  f'got {type(value).__name__} {value!r}.')
            if decl.check is not None:
                try:
                    decl.check(value)
                except ValueError as e:
                    raise WiringError(f'{name}({key}=...): {e}') from None
            if decl.path and isinstance(value, str) and '://' not in value:
                value = os.path.abspath(os.path.expanduser(value))
            self.parameters[key] = value
        self.outputs = _Outputs(name, {k: Channel(self, k, d.type) for k, d in cls.OUTPUTS.items()})

    @property
    def id(self) -> str:
        """The node id: the class name unless set with ``with_id``."""
        return self._id or type(self).__name__

    @property
    def component_type(self) -> str:
        return type(self).__name__

    def with_id(self, node_id: str) -> Component:
        """Give this component a node id (needed when a pipeline holds two of the same class)."""
        if not isinstance(node_id, str) or not _ID_RE.match(node_id):
            raise WiringError(f'{self.component_type}.with_id({node_id!r}): an id is a letter or _ followed by '
                              'letters, digits, _, . or -.')
        self._id = node_id
        return self

    def with_retry(self, policy: Any) -> Component:
        """Try this node again after a failure a retry could fix: ``with_retry(Retry(attempts=3))``
        (``pipelines.Retry``). Overrides the pipeline's ``retry``; ``with_retry(None)`` turns it off."""
        from sluice.components.retry import Retry

        if policy is not None and not isinstance(policy, Retry):
            raise WiringError(f'{self.id}.with_retry() takes a Retry(attempts=..., delay=..., backoff=..., max_delay=...) '
                              f'or None; got {type(policy).__name__} {policy!r}.')
        self.retry_policy = policy if policy is not None else Retry(attempts=1)
        return self

    def with_timeout(self, seconds: float | None) -> Component:
        """Stop this node (its executor process and its Beam work) after ``seconds``; the attempt is
        recorded FAILED as timed out, and retried if a retry policy allows. The executor then runs in
        a process of its own."""
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0):
            raise WiringError(f'{self.id}.with_timeout() takes a number of seconds above 0 (or None); got {seconds!r}.')
        self.timeout_seconds = float(seconds) if seconds is not None else None
        return self

    def with_cache(self, enabled: bool) -> Component:
        """``with_cache(False)``: always execute this node, even when a cached result exists (the
        pipeline-wide switch is ``Pipeline(enable_cache=...)``)."""
        if not isinstance(enabled, bool):
            raise WiringError(f'{self.id}.with_cache() takes True or False; got {enabled!r}.')
        self.cache_enabled = enabled
        return self

    def add_upstream_node(self, *components: Component) -> Component:
        """Run only after ``components`` succeeded, without consuming their outputs (as in TFX), e.g.
        ``transform.add_upstream_node(example_validator)`` so bad data never reaches training."""
        for comp in components:
            if not isinstance(comp, Component):
                raise WiringError(f'{self.id}.add_upstream_node() takes components; got {type(comp).__name__} {comp!r}.')
            if comp is self:
                raise WiringError(f'{self.id}.add_upstream_node(): a component cannot wait for itself.')
            self._after.append(comp)
        return self

    @property
    def upstream(self) -> list[Component]:
        """The components this one waits for: producers of its inputs, then add_upstream_node ones and
    the producers its conditions read."""
        seen: dict[int, Component] = {}
        for channel in self.inputs.values():
            if channel is not None:
                seen.setdefault(id(channel.producer), channel.producer)
        for comp in self._after + [p.channel.producer for p in getattr(self, 'conditions', ())]:  # () if stored before
            seen.setdefault(id(comp), comp)
        return list(seen.values())

    @property
    def companions(self) -> list[Component]:
        """Nodes this component brings into a pipeline with it (a Trainer's OnnxExporter)."""
        return []

    def user_code_files(self) -> Iterator[tuple[str, str]]:
        """(parameter name, path) of each module file parameter that is set."""
        for key, decl in type(self).PARAMETERS.items():
            if decl.user_code and self.parameters.get(key):
                yield key, self.parameters[key]

    def __repr__(self) -> str:
        return f'<{self.component_type} {self.id!r}>'


def _check_channel(name: str, key: str, decl: Input, value: Any) -> None:
    expected = decl.type.type_name()
    if isinstance(value, Channel):
        if not issubclass(value.type, decl.type):
            raise WiringError(f'{name}({key}=...) expects a channel of {expected}; '
                              f'got {value.type.type_name()} from {value!r}.')
        return
    if isinstance(value, Component):
        matching = [k for k, d in type(value).OUTPUTS.items() if issubclass(d.type, decl.type)]
        hint = f" Pass {value.id}.outputs['{matching[0]}']." if matching else ''
        raise WiringError(f'{name}({key}=...) expects a channel of {expected}; got the component {value.id} '
                          f'itself.{hint}')
    raise WiringError(f"{name}({key}=...) expects a channel of {expected}, such as "
                      f"producer.outputs['...']; got {type(value).__name__} {value!r}.")


def _check_executor(cls: type[Component]) -> None:
    executor = cls.executor
    if not (isinstance(executor, type) and issubclass(executor, Executor)):
        raise WiringError(f'{cls.__name__}.executor must be an Executor subclass; got {executor!r}.')
    run = getattr(executor, 'run', None)
    if run is None:
        raise WiringError(f'{executor.__name__} must define run(self, *, ...) taking '
                          f'{", ".join(_declared(cls)) or "no arguments"}.')
    params = inspect.signature(run).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    takes = {n for n, p in params.items() if n != 'self' and p.kind is not inspect.Parameter.VAR_POSITIONAL}
    declared = set(_declared(cls))
    missing, extra = sorted(declared - takes), sorted(takes - declared)
    if missing or extra:
        parts = []
        if missing:
            parts.append(f'missing {", ".join(missing)}')
        if extra:
            parts.append(f'not declared by {cls.__name__}: {", ".join(extra)}')
        raise WiringError(f'{executor.__name__}.run() must take one keyword argument per input, output and '
                          f'parameter of {cls.__name__} ({"; ".join(parts)}).')


def _declared(cls: type[Component]) -> list[str]:
    return [*cls.INPUTS, *cls.OUTPUTS, *cls.PARAMETERS]
