"""Loading user module files (``preprocessing_fn``, ``run_fn``, ...) with errors that say how to fix them.

    >>> module = load_module_file('penguin_module.py', required=['run_fn'])
    >>> module.run_fn(fn_args)

Each load executes the file afresh, and drops from ``sys.modules`` the project-local modules it
imports, so an edited helper file is never served from a stale import (the cache key already
covers those files).
"""
from __future__ import annotations

import importlib.util
import os
import sys
import types
from typing import Sequence

from components.fingerprint import local_imports, sha256


class ModuleFileError(RuntimeError):
    """A module file is missing, does not import, or lacks a required function."""


def pickle_by_value(module: types.ModuleType, local_files: set[str]) -> None:
    """Let Beam ship the user's functions to worker processes by value: the module's name exists
    only in this process (multi-process and distributed runners would fail to import it)."""
    import cloudpickle

    cloudpickle.register_pickle_by_value(module)
    for other in list(sys.modules.values()):
        if getattr(other, '__file__', None) in local_files and other is not module:
            try:
                cloudpickle.register_pickle_by_value(other)
            except ValueError:  # not importable by name: nothing to ship
                pass


def forget_local_modules(path: str) -> set[str]:
    """Drop from sys.modules the project-local modules a user file imports (the files its cache key
    covers), and same-named modules from elsewhere, so that loading the file runs the code now beside
    it, never a stale import. Sluice's own packages stay. Returns those local files."""
    directory = os.path.dirname(path)
    local = set(local_imports(path))
    names = set()
    for file in local:
        rel = os.path.splitext(os.path.relpath(file, directory))[0].split(os.sep)
        if '..' not in rel:
            names.add('.'.join(rel[:-1] if rel[-1] == '__init__' else rel))
    for name, module in list(sys.modules.items()):
        if name.split('.')[0] in ('components', 'metadata', 'pipelines'):
            continue
        if name in names or getattr(module, '__file__', None) in local:
            del sys.modules[name]
    return local


def load_module_file(path: str, required: Sequence[str] = ()) -> types.ModuleType:
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise ModuleFileError(f'Module file {path} does not exist; check the module_file parameter.')
    directory = os.path.dirname(path)
    local = forget_local_modules(path)
    name = f'sluice_user_module_{sha256(path)[:12]}'
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, directory)
    try:
        sys.modules[name] = module
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise ModuleFileError(f'Module file {e.filename or path} line {e.lineno}: syntax error: {e.msg}. '
                              'Fix the file and run again.') from None
    except Exception as e:
        raise ModuleFileError(f'Module file {path} failed to import: {type(e).__name__}: {e}') from e
    finally:
        if sys.path and sys.path[0] == directory:
            sys.path.pop(0)
    pickle_by_value(module, local)
    for fn in required:
        if not callable(getattr(module, fn, None)):
            defined = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith('_')
                             and getattr(v, '__module__', None) == name)
            raise ModuleFileError(f'Module file {path} has no function {fn}(); define it there. '
                                  f'Functions it defines: {", ".join(defined) or "none"}.')
    return module
