"""Where a class's code is: the file that defines it (``class_file``) or, for a class without a file
(typed into a notebook cell, ``python -c``), its source and the source of the functions, classes and
constants of its module that its methods use by name, transitively, and the project files of the
modules and functions they use from elsewhere (``class_source_digest``)."""
from __future__ import annotations

import ast
import inspect
import os
import sys
import textwrap
import types
from typing import Any

from sluice.components.fingerprint.imports import is_project_file
from sluice.components.fingerprint.key import canonical_json, sha256
from sluice.components.fingerprint.source import tree_digest


def class_file(cls: type) -> str | None:
    """The Python file that defines a class, or None (e.g. a class typed into a notebook)."""
    compiled_elsewhere = False
    for value in vars(cls).values():  # its methods know where they were compiled
        func = getattr(value, '__func__', value)
        try:
            func = inspect.unwrap(func)
        except ValueError:
            continue
        code = getattr(func, '__code__', None)
        if code is not None and getattr(func, '__qualname__', '').startswith(cls.__qualname__ + '.'):
            if os.path.isfile(code.co_filename):
                return os.path.abspath(code.co_filename)
            compiled_elsewhere = True  # a cell, a string: not the file of the module it is named after
    if compiled_elsewhere:
        return None
    path = module_path(sys.modules.get(cls.__module__))
    if path and path.endswith('.py') and os.path.isfile(path):
        return os.path.abspath(path)
    return None


def module_path(module: Any) -> str | None:
    """A module's ``__file__``, read without triggering lazy modules' ``__getattr__``."""
    if isinstance(module, types.ModuleType):
        path = module.__dict__.get('__file__')
        if isinstance(path, str):
            return path if os.path.isabs(path) else os.path.abspath(path)
    return None


def _functions(cls: type) -> list[types.FunctionType]:
    """The functions a class defines: methods, static and class methods, property accessors."""
    out = []
    for value in vars(cls).values():
        candidates = [value.fget, value.fset, value.fdel] if isinstance(value, property) else \
            [getattr(value, '__func__', value)]
        for func in candidates:
            try:
                func = inspect.unwrap(func) if func is not None else None
            except ValueError:
                continue
            if inspect.isfunction(func):
                out.append(func)
    return out


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


_SCALARS = (bool, int, float, complex, str, bytes, type(None))


def _literal(value: Any, depth: int = 0) -> bool:
    """Whether a value is a constant written as a literal: numbers, strings, and (small) tuples,
    lists, sets and dicts of those."""
    kind = type(value)
    if kind in _SCALARS:
        return True
    if depth > 8 or kind not in (tuple, list, set, frozenset, dict) or len(value) > 1000:
        return False
    items = [x for kv in value.items() for x in kv] if kind is dict else value
    return all(_literal(v, depth + 1) for v in items)


def _literal_repr(value: Any) -> str:
    kind = type(value)
    if kind in (set, frozenset):  # a stable order (string hashes differ between processes)
        return f'{kind.__name__}({{' + ', '.join(sorted(_literal_repr(v) for v in value)) + '})'
    if kind is dict:
        return '{' + ', '.join(sorted(f'{_literal_repr(k)}: {_literal_repr(v)}' for k, v in value.items())) + '}'
    if kind in (tuple, list):
        return f'{kind.__name__}(' + ''.join(_literal_repr(v) + ', ' for v in value) + ')'
    return repr(value)


def _code_digest(code: types.CodeType) -> str:
    """A digest of compiled code that ignores where it was compiled (file, line numbers)."""
    consts = [_code_digest(c) if isinstance(c, types.CodeType) else _literal_repr(c) if _literal(c)
              else type(c).__name__ for c in code.co_consts]
    shape = (code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount, code.co_flags)
    return sha256('python-code', code.co_code, repr(code.co_names), repr(code.co_varnames),
                  repr(code.co_freevars), repr(code.co_cellvars), repr(shape), *consts)


def _source_digest_of(obj: Any) -> str:
    """A function's or class's source as the interpreter kept it (notebooks keep cells' sources),
    normalised; else, for a function, its compiled code and defaults."""
    try:
        return tree_digest(ast.parse(textwrap.dedent(inspect.getsource(obj))))
    except (OSError, TypeError, SyntaxError, IndentationError):
        pass
    if inspect.isfunction(obj):
        defaults = [_literal_repr(d) if _literal(d) else type(d).__name__ for d in obj.__defaults__ or ()]
        kwdefaults = sorted((k, _literal_repr(v) if _literal(v) else type(v).__name__)
                            for k, v in (obj.__kwdefaults__ or {}).items())
        return sha256(_code_digest(obj.__code__), repr(defaults), repr(kwdefaults))
    constants = (f'{k}={_literal_repr(v)}' for k, v in vars(obj).items() if _literal(v) and not k.startswith('__'))
    return sha256(*sorted(f'{f.__qualname__}:{_source_digest_of(f)}' for f in _functions(obj)), *sorted(constants))


def used_globals(cls: type) -> tuple[dict[str, str], set[str]]:
    """What the methods of a class without a file use by global name, transitively: digests of the
    functions, classes and literal constants of its own module ({name: digest}), and the project
    files of modules, functions and classes from elsewhere."""
    digests: dict[str, str] = {}
    files: set[str] = set()
    queue = _functions(cls)
    done: set[int] = set()
    while queue:
        func = queue.pop()
        if id(func.__code__) in done:
            continue
        done.add(id(func.__code__))
        namespace = func.__globals__
        module_name = namespace.get('__name__')
        for name in sorted(_code_names(func.__code__)):  # attribute names too: over-inclusion is harmless
            if name in digests or name not in namespace:
                continue
            value = namespace[name]
            if inspect.isfunction(value) and value.__globals__ is namespace:
                digests[name] = 'function:' + _source_digest_of(value)
                queue.append(value)
            elif inspect.isclass(value) and value.__module__ == module_name and class_file(value) is None:
                if value is not cls:
                    digests[name] = 'class:' + _source_digest_of(value)
                queue.extend(_functions(value))
            elif _literal(value):
                digests[name] = 'value:' + _literal_repr(value)
            else:
                module = value if isinstance(value, types.ModuleType) else \
                    sys.modules.get(getattr(value, '__module__', None) or '')
                path = module_path(module)
                if path and path.endswith('.py') and is_project_file(path) and os.path.isfile(path):
                    files.add(path)
    return digests, files


def class_source_digest(cls: type) -> str:
    """For a class without a file: its source (or its methods' code) and what it uses of its module."""
    digests, _ = used_globals(cls)
    return sha256(_source_digest_of(cls), canonical_json(digests))
