"""``tfx.dsl.components``: TFX's Python function components on Sluice.

    from sluice.tfx import v1 as tfx

    @tfx.dsl.components.component
    def Count(examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
              threshold: tfx.dsl.components.Parameter[int] = 3,
              ) -> tfx.dsl.components.OutputDict(count=int, ok=bool):
        n = ...
        return {'count': n, 'ok': n > threshold}

    count = Count(examples=gen.outputs['examples'])   # node id 'Count' (or .with_id(...))
    report = Report(n=count.outputs['count'])         # Report's `n: int` takes an Integer channel

``@component`` (or ``@component(use_beam=True)``) makes the function a Sluice Component class of its
name (a ``FunctionComponent``), one declaration per argument:

- ``InputArtifact[T]`` (or ``InputArtifact[List[T]]``, a list): an Input of T; default None = optional;
- ``OutputArtifact[T]``: an Output of T; the function writes under its ``.uri`` (or sets ``.value``);
- ``Parameter[T]``, T an int, float, str, bool, a JSON-compatible ``Dict[str, ...]``/``List[...]`` or a
  protobuf message class: a Parameter (in the cache key and on the execution); default None or a T;
- ``int``, ``float``, ``str``, ``bytes``, ``bool`` (``Optional[...]`` too) and JSON-compatible
  Dict/List: an Input of the value artifact Integer, Float, String, Bytes, Boolean or JsonValue
  (another component's value output); the function gets the value;
- ``BeamComponentParameter[beam.Pipeline] = None`` (``use_beam=True``): a Beam pipeline made from the
  pipeline's ``beam_pipeline_args``, not yet run (``with beam_pipeline as p: ...``).

The return annotation ``OutputDict(name=type, ...)`` or a TypedDict declares value outputs: the
function returns a dict of exactly those keys, written as value artifacts (None where ``Optional``).

Each class has the standard driver, executor and publisher (cache, retries, timeouts, resume, the
records in ML-Metadata: execution type = the function's name). Its cache key covers the function's
code closure (``implementation_parts``), so an edit elsewhere in its file does not rerun it.
"""
from __future__ import annotations

import inspect
import json
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Union, get_args, get_origin

from sluice.components.component import _RESERVED, Channel, Component, Input, Output, WiringError, did_you_mean
from sluice.components.component import Parameter as _Declared
from sluice.components.driver import Driver
from sluice.components.executor import Executor
from sluice.components.fingerprint.classes import class_source_digest, used_globals
from sluice.components.fingerprint.imports import SLUICE_ROOT, anchor_dir, display_name, import_roots, local_imports
from sluice.components.fingerprint.source import source_digest
from sluice.metadata import storage
from sluice.metadata.artifact import Artifact, Boolean, Bytes, Float, Integer, JsonValue, String, ValueArtifact
from sluice.tfx.v1._common import module_getattr, not_offered

_EMPTY = inspect.Parameter.empty
_UNIONS = (Union, types.UnionType)
_VALUES: dict[type, type[ValueArtifact]] = {int: Integer, float: Float, str: String, bytes: Bytes, bool: Boolean}
_KINDS = 'InputArtifact[T], OutputArtifact[T], Parameter[T], int, float, str, bytes, bool or Optional[...] of them, ' \
         'a JSON-compatible Dict[str, ...]/List[...], or BeamComponentParameter[beam.Pipeline]'


# -- the annotations -------------------------------------------------------------------------------
class _Annotation:
    """``Kind[T]``; checked by ``component``, which can name the function and argument in an error."""

    def __init__(self, type_: Any, _via_getitem: bool = False) -> None:
        if not _via_getitem:
            kind = type(self).__name__
            raise WiringError(f'{kind} is written {kind}[T] in an annotation (as in TFX), not called.')
        self.type = type_

    def __class_getitem__(cls, item: Any) -> _Annotation:
        return cls(item, _via_getitem=True)

    def __repr__(self) -> str:
        return f'{type(self).__name__}[{_show(self.type)}]'


class InputArtifact(_Annotation):
    """``InputArtifact[T]``: an input artifact of type T (``List[T]``: a list of them)."""


class OutputArtifact(_Annotation):
    """``OutputArtifact[T]``: an output artifact of type T, written by the function."""


class Parameter(_Annotation):
    """``Parameter[T]``: a value given when the component is built (int, float, str, bool, JSON-compatible
    Dict/List, a protobuf message class); part of the cache key."""


class BeamComponentParameter(_Annotation):
    """``BeamComponentParameter[beam.Pipeline] = None``: with ``@component(use_beam=True)``, a Beam
    pipeline from the pipeline's ``beam_pipeline_args``."""


class OutputDict:
    """``-> OutputDict(name=type, ...)``: the values the function returns, each a value artifact."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs

    def __repr__(self) -> str:
        return f"OutputDict({', '.join(f'{k}={_show(v)}' for k, v in self.kwargs.items())})"


def _show(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) and get_origin(hint) is None else \
        repr(hint).replace('typing.', '').replace('NoneType', 'None')


# -- what a function declares ------------------------------------------------------------------------
@dataclass
class _Arg:
    name: str
    kind: str  # 'input', 'inputs' (a list), 'value', 'output', 'parameter', 'beam'
    type: Any = None  # the artifact type (input, output, value), the Python types (parameter)
    default: Any = _EMPTY
    shown: str = ''  # the annotation, for messages
    json: Any = None  # a JSON-compatible hint a value must conform to


@dataclass
class _Returned:
    type: type[ValueArtifact]
    nullable: bool
    shown: str
    json: Any = None


@dataclass
class _Plan:
    name: str
    args: list[_Arg] = field(default_factory=list)
    returned: dict[str, _Returned] = field(default_factory=dict)


def _fail(func: Callable, message: str) -> WiringError:
    return WiringError(f'@component {func.__name__}: {message}')


def _hints(func: Callable) -> dict[str, Any]:
    """The annotations, evaluated where ``from __future__ import annotations`` left them strings."""
    out = {}
    for name, hint in getattr(func, '__annotations__', {}).items():
        for _ in range(2):  # 'T' under `from __future__ import annotations` is "'T'"
            if isinstance(hint, str):
                try:
                    hint = eval(hint, func.__globals__, {})  # noqa: S307 - the function's own annotation
                except Exception as e:  # noqa: BLE001
                    what = 'the return annotation' if name == 'return' else f"the annotation of argument '{name}'"
                    raise _fail(func, f'{what}, {hint!r}, does not evaluate: {type(e).__name__}: {e}') from None
        out[name] = hint
    return out


def _optional(hint: Any) -> tuple[Any, bool]:
    """(T, True) for Optional[T] / T | None, else (hint, False)."""
    if get_origin(hint) in _UNIONS:
        rest = [a for a in get_args(hint) if a is not type(None)]
        if len(rest) == 1 and len(get_args(hint)) == 2:
            return rest[0], True
    return hint, False


def _json_compatible(hint: Any, top: bool = True) -> bool:
    """TFX's JSON-compatible types: Dict[str, X], List[X] (X: those, int, float, str, bool, None, Any), Optional."""
    origin, args = get_origin(hint) or hint, get_args(hint)
    if origin in (dict, list):
        if not args:
            return False
        if origin is dict:
            return args[0] is str and _json_compatible(args[1], False)
        return _json_compatible(args[0], False)
    if origin in _UNIONS:
        return all(a is type(None) or _json_compatible(a, top) for a in args)
    return not top and hint in (int, float, str, bool, type(None), Any)


def _conforms(value: Any, hint: Any) -> bool:
    """Whether a value is of a JSON-compatible (or primitive) type."""
    origin, args = get_origin(hint) or hint, get_args(hint)
    if hint is Any:
        return True
    if origin in _UNIONS:
        return any(_conforms(value, a) for a in args)
    if hint is type(None):
        return value is None
    if origin is dict:
        return isinstance(value, dict) and all(isinstance(k, str) and (not args or _conforms(v, args[1]))
                                               for k, v in value.items())
    if origin is list:
        return isinstance(value, list) and all(not args or _conforms(v, args[0]) for v in value)
    if hint in (int, float):
        return isinstance(value, (int, float) if hint is float else int) and not isinstance(value, bool)
    return isinstance(hint, type) and isinstance(value, hint)


def _json_check(hint: Any) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if not _conforms(value, hint):
            raise ValueError(f'expects {_show(hint)}; got {value!r:.100}.')
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ValueError(f'{value!r:.100} is not JSON ({e}); a Parameter must be JSON.') from None
    return check


def _is_artifact(t: Any) -> bool:
    return isinstance(t, type) and issubclass(t, Artifact) and t not in (Artifact, ValueArtifact)


def _value_type(hint: Any) -> tuple[type[ValueArtifact] | None, Any]:
    """(value artifact type, JSON hint or None) of a plain annotation (int, Optional[str], Dict[str, int]...)."""
    base, _ = _optional(hint)
    if base in _VALUES:
        return _VALUES[base], None
    if _json_compatible(hint):
        return JsonValue, hint
    return None, None


def _parameter(func: Callable, arg: _Arg, hint: Parameter) -> _Arg:
    t = hint.type
    if t in (int, float, str, bool) or (isinstance(t, type) and hasattr(t, 'DESCRIPTOR')
                                         and hasattr(t, 'SerializeToString')):
        arg.type = (t,)
    elif _json_compatible(t):
        arg.type, arg.json = (get_origin(_optional(t)[0]),), t
    else:
        raise _fail(func, f"argument '{arg.name}' is annotated {hint!r}: Parameter[T] takes int, float, str, bool, a "
                          'JSON-compatible Dict[str, ...] or List[...], or a protobuf message class.')
    if arg.default not in (_EMPTY, None):
        good = _conforms(arg.default, t) if arg.json is not None else \
            isinstance(arg.default, arg.type) and (bool in arg.type or not isinstance(arg.default, bool))
        if not good and not (t is float and isinstance(arg.default, int) and not isinstance(arg.default, bool)):
            raise _fail(func, f"argument '{arg.name}': the default {arg.default!r} is not a {_show(t)} (nor None).")
    arg.kind = 'parameter'
    return arg


def _argument(func: Callable, name: str, hint: Any, default: Any) -> _Arg:
    arg = _Arg(name, '', default=default, shown=_show(hint) if not isinstance(hint, _Annotation) else repr(hint))
    where = f"argument '{name}'"
    if isinstance(hint, (InputArtifact, OutputArtifact)):
        t, many = hint.type, get_origin(hint.type) is list and isinstance(hint, InputArtifact)
        t = get_args(t)[0] if many and len(get_args(t)) == 1 else t
        if not _is_artifact(t):
            raise _fail(func, f'{where} is annotated {hint!r}: {type(hint).__name__}[T] takes an artifact type '
                              '(tfx.types.standard_artifacts.Examples, a components.Artifact subclass)'
                              f"{' or List[T]' if isinstance(hint, InputArtifact) else ''}.")
        if isinstance(hint, OutputArtifact) and default is not _EMPTY:
            raise _fail(func, f'{where}: an OutputArtifact cannot have a default (every output is written).')
        if default not in (_EMPTY, None):
            raise _fail(func, f'{where}: an optional input artifact has the default None; got {default!r}.')
        arg.kind, arg.type = ('output' if isinstance(hint, OutputArtifact) else 'inputs' if many else 'input'), t
        return arg
    if isinstance(hint, Parameter):
        return _parameter(func, arg, hint)
    if isinstance(hint, BeamComponentParameter):
        t = hint.type
        if not (isinstance(t, type) and t.__name__ == 'Pipeline' and t.__module__.startswith('apache_beam')):
            raise _fail(func, f'{where} is annotated {hint!r}: BeamComponentParameter[T] takes beam.Pipeline.')
        if default is not None:
            raise _fail(func, f'{where}: a BeamComponentParameter has the default None (Sluice gives the pipeline).')
        arg.kind = 'beam'
        return arg
    value_type, arg.json = _value_type(hint)
    if value_type is not None:
        if default not in (_EMPTY, None) and not _conforms(default, arg.json or _optional(hint)[0]):
            raise _fail(func, f'{where}: the default {default!r} is not a {_show(hint)} (nor None).')
        arg.kind, arg.type = 'value', value_type
        return arg
    if _is_artifact(hint):
        n = hint.__name__
        raise _fail(func, f'{where} is annotated with the artifact type {n}; say how it is used: InputArtifact[{n}] '
                          f'or OutputArtifact[{n}].')
    raise _fail(func, f'{where} is annotated {arg.shown}, which a component function cannot take; use {_KINDS}.')


def _returned(func: Callable, hint: Any, taken: set[str]) -> dict[str, _Returned]:
    if hint is None or hint is type(None):
        return {}
    if isinstance(hint, OutputDict):
        fields = hint.kwargs
    elif isinstance(hint, type) and typing.is_typeddict(hint):
        fields = typing.get_type_hints(hint)
    else:
        raise _fail(func, f'the return annotation {_show(hint)} is not OutputDict(name=type, ...) or a TypedDict; '
                          'annotate the values it returns that way (output artifacts are OutputArtifact[T] arguments).')
    out = {}
    for key, t in fields.items():
        if key in taken or key in _RESERVED:
            whose = 'an argument' if key in taken else 'an attribute Sluice components reserve'
            raise _fail(func, f"the returned value '{key}' has the name of {whose}; rename it.")
        if isinstance(t, OutputArtifact) or _is_artifact(t):
            raise _fail(func, f"the returned value '{key}' is an artifact; declare it as an argument "
                              f'`{key}: OutputArtifact[T]` instead of in the OutputDict.')
        value_type, json_hint = _value_type(t)
        if value_type is None:
            raise _fail(func, f"the returned value '{key}' is declared {_show(t)}; a returned value is an int, "
                              'float, str, bytes, bool (or Optional[...] of one) or a JSON-compatible '
                              'Dict[str, ...]/List[...].')
        out[key] = _Returned(value_type, _optional(t)[1] or type(None) in get_args(t), _show(t), json_hint)
    return out


def _parse(func: Callable, use_beam: bool) -> _Plan:
    plan = _Plan(func.__name__)
    hints = _hints(func)
    for p in inspect.signature(func).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY):
            raise _fail(func, f"argument '{p.name}': a component function takes named arguments only (no *args, "
                              '**kwargs or positional-only arguments).')
        if p.name not in hints:
            raise _fail(func, f"argument '{p.name}' has no annotation; annotate it {_KINDS}.")
        if p.name in _RESERVED:
            raise _fail(func, f"argument '{p.name}' has a name Sluice components reserve (for their methods and "
                              'attributes); rename it.')
        plan.args.append(_argument(func, p.name, hints[p.name], p.default))
    plan.returned = _returned(func, hints.get('return'), {a.name for a in plan.args})
    beams = [a.name for a in plan.args if a.kind == 'beam']
    if use_beam and len(beams) != 1:
        raise _fail(func, 'use_beam=True needs exactly one argument `beam_pipeline: '
                          f"BeamComponentParameter[beam.Pipeline] = None`; it has {len(beams)}"
                          f"{': ' + ', '.join(beams) if beams else ''}.")
    if beams and not use_beam:
        raise _fail(func, f"argument '{beams[0]}' is a BeamComponentParameter: decorate the function "
                          '@component(use_beam=True).')
    return plan


# -- the executor, driver and component ---------------------------------------------------------------
class ReturnValueError(TypeError):
    """A component function returned what its OutputDict does not declare, or left an output unwritten."""
    retryable = False


class FunctionExecutor(Executor):
    """Calls the function with the artifacts, values and parameters it declares, then writes what it
    returned as value artifacts. Each ``@component`` class has a subclass holding its function."""

    function: ClassVar[Callable[..., Any]]
    plan: ClassVar[_Plan]

    def run(self, **arguments: Any) -> None:
        kwargs: dict[str, Any] = {}
        for arg in self.plan.args:
            given = arguments.get(arg.name)
            if arg.kind == 'beam':
                kwargs[arg.name] = self.beam_pipeline()
            elif arg.kind == 'inputs':
                kwargs[arg.name] = [given] if given is not None else []
            elif given is None and arg.kind in ('input', 'value'):
                continue  # an optional input left unwired: the function's default
            elif arg.kind == 'value':
                kwargs[arg.name] = given.value
            elif arg.kind == 'parameter' and arg.type == (float,) and given is not None:
                kwargs[arg.name] = float(given)
            else:
                kwargs[arg.name] = given
        self._write(self.function(**kwargs), arguments)

    def _write(self, result: Any, outputs: dict[str, Any]) -> None:
        name, returned = self.plan.name, self.plan.returned
        declared = ', '.join(returned)
        if not returned and result is not None:
            raise ReturnValueError(f'@component {name} returned {_brief(result)} but declares no returned values; '
                                   'declare them with -> OutputDict(name=type, ...), or return None.')
        if returned and not isinstance(result, dict):
            raise ReturnValueError(f'@component {name} returned {_brief(result)}; it returns a dict of {declared} '
                                   '(its OutputDict).')
        for key in (result or {}):
            if key not in returned:
                raise ReturnValueError(f"@component {name} returned the key {key!r}, which its OutputDict does not "
                                       f'declare{did_you_mean(str(key), returned)} It declares: {declared}.')
        for key, out in returned.items():
            if key not in result:
                raise ReturnValueError(f"@component {name} did not return '{key}' (its OutputDict declares "
                                       f'{declared}).')
            value = result[key]
            if value is None and not out.nullable:
                raise ReturnValueError(f"@component {name} returned None for '{key}', declared {out.shown} "
                                       f'(Optional[{out.shown}] allows None).')
            try:
                if value is not None and out.json is not None and not _conforms(value, out.json):
                    raise TypeError(out.json)
                outputs[key].value = value
            except TypeError:
                raise ReturnValueError(f"@component {name} returned {_brief(value)} for '{key}', declared "
                                       f'{out.shown}.') from None
        for arg in self.plan.args:
            artifact = outputs.get(arg.name)
            if arg.kind == 'output' and isinstance(artifact, ValueArtifact) and not storage.exists(artifact.value_uri):
                raise ReturnValueError(f'@component {name} did not set {arg.name}.value (its output '
                                       f'{arg.type.type_name()}).')


def _brief(value: Any) -> str:
    return f'{type(value).__name__} {value!r:.100}'  # for messages


def implementation_parts(component_cls: type) -> dict[str, Any]:
    """The ``implementation`` part of a function component's cache key: the function's code closure
    (its source and the names of its module it uses, transitively: ``used_globals``), the project files
    of the modules it uses from elsewhere (with what they import), and this file."""
    func = component_cls.executor.function
    path = func.__code__.co_filename
    real = os.path.isfile(path)
    where = os.path.basename(path) if real else '<cell>'  # a notebook cell's file name changes with the kernel
    # A bare class holding only the function: the executor class holds per-process values (its load time).
    holder = type('<function>', (), {'function': staticmethod(func), '__module__': func.__module__})
    digests, used = used_globals(holder)
    files = {f'{where}:{func.__qualname__}': class_source_digest(holder)}
    files.update({f'{where}:{name}': digest for name, digest in digests.items()})
    for module_file in sorted(used):
        roots = import_roots(module_file)
        for f in local_imports(module_file):
            files[display_name(f, anchor_dir(path) if real else anchor_dir(module_file), roots)] = source_digest(f)
    here = os.path.abspath(__file__)
    files[os.path.relpath(here, SLUICE_ROOT)] = source_digest(here)
    return {'version': str(getattr(component_cls, 'version', '1')), 'files': files, 'libraries': {}}


class FunctionDriver(Driver):
    """The standard driver; the code in the key is the function's closure (``implementation_parts``)."""

    def cache_key_parts(self, inputs: dict[str, Artifact | None]) -> dict[str, Any]:
        parts = super().cache_key_parts(inputs)
        parts['implementation'] = implementation_parts(type(self.component))
        return parts


class FunctionComponent(Component):
    """Base of the classes ``@component`` makes (TFX's BaseFunctionalComponent). ``test_call(...)``
    calls the function itself."""

    driver = FunctionDriver
    executor: ClassVar[type[FunctionExecutor] | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        name = type(self).__name__
        if args:
            raise WiringError(f'{name}() takes keyword arguments, one per input and parameter; got {len(args)} '
                              'positional.')
        for arg in type(self).executor.plan.args:
            value = kwargs.get(arg.name)
            if arg.kind in ('output', 'beam') and arg.name in kwargs:
                what = 'an output' if arg.kind == 'output' else 'the Beam pipeline'
                raise WiringError(f"{name}({arg.name}=...): '{arg.name}' is {what}, made by Sluice; leave it out.")
            if arg.kind == 'value' and value is not None and not isinstance(value, (Channel, Component)):
                way = {Integer: 'int', Float: 'float', String: 'str', Boolean: 'bool',
                       JsonValue: arg.shown}.get(arg.type)
                hint = f'; to pass {_brief(value)} here, annotate it Parameter[{way}]' if way else ''
                raise WiringError(f"{name}({arg.name}=...) is an input of a {arg.type.type_name()} artifact (annotated "
                                  f"{arg.shown}): pass another component's output, producer.outputs['...']{hint}.")
        super().__init__(**kwargs)


def _make_class(func: Callable, plan: _Plan) -> type[FunctionComponent]:
    executor = type(f'{func.__name__}Executor', (FunctionExecutor,), {
        'function': staticmethod(func), 'plan': plan, '__module__': func.__module__,
        '__qualname__': f'{func.__qualname__}.executor', '__doc__': f'Runs {func.__qualname__}.'})
    namespace: dict[str, Any] = {'__module__': func.__module__, '__qualname__': func.__qualname__,
                                 '__doc__': func.__doc__, 'executor': executor, 'test_call': staticmethod(func)}
    for arg in plan.args:
        if arg.kind in ('input', 'inputs', 'value'):
            namespace[arg.name] = Input(arg.type, optional=arg.default is not _EMPTY)
        elif arg.kind == 'output':
            namespace[arg.name] = Output(arg.type)
        elif arg.kind == 'parameter':
            default = {} if arg.default is _EMPTY else {'default': arg.default}
            namespace[arg.name] = _Declared(arg.type, **default, check=_json_check(arg.json) if arg.json else None)
    for key, out in plan.returned.items():
        namespace[key] = Output(out.type)
    return type(func.__name__, (FunctionComponent,), namespace)


def component(func: Callable | None = None, /, *, component_annotation: Any = None,
              use_beam: bool = False) -> Any:
    """``@component`` or ``@component(use_beam=True)``: a Sluice Component class made from a function
    whose arguments are annotated (see the module docstring)."""
    if func is None:
        return lambda f: component(f, component_annotation=component_annotation, use_beam=use_beam)
    if component_annotation is not None:
        raise not_offered('@component(component_annotation=...)',
                          "Sluice records the execution under the function's name (no system execution types)")
    if not isinstance(use_beam, bool):
        raise WiringError(f'@component(use_beam=...) takes True or False; got {use_beam!r}.')
    if not inspect.isfunction(func) or func.__name__ == '<lambda>':
        raise WiringError(f'@component decorates a function defined with def; got {type(func).__name__} {func!r}.')
    return _make_class(func, _parse(func, use_beam))


__all__ = ['component', 'Parameter', 'InputArtifact', 'OutputArtifact', 'OutputDict', 'BeamComponentParameter']
_MISSING = {'AsyncOutputArtifact': "Sluice publishes a component's outputs when its function returns; write them "
                                   'with OutputArtifact[T]'}
__getattr__ = module_getattr('tfx.dsl.components', lambda: __all__, _MISSING)
