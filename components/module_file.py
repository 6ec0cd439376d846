"""Loading user module files (``preprocessing_fn``, ``run_fn``, ...) with errors that say how to fix them.

    >>> module = load_module_file('penguin_module.py', required=['run_fn'])
    >>> module.run_fn(fn_args)

Each load executes the file afresh, and first drops from ``sys.modules`` the project modules it
imports (the files its cache key covers) that are in its directory, those elsewhere whose code in
memory may be older than their file, and the modules importing those, so an edited helper file is
never served from a stale import.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import threading
import types
from typing import Sequence

from sluice.components.fingerprint.imports import import_graph, import_roots, is_library_file, is_sluice_file
from sluice.components.fingerprint.key import sha256
from sluice.components.fingerprint.stale import outdated_modules, stamp_imports


class ModuleFileError(RuntimeError):
    """A module file is missing, does not import, or lacks a required function."""
    retryable = False


def pickle_by_value(module: types.ModuleType, local_files: set[str]) -> None:
    """Let Beam ship the user's functions to worker processes by value: the module's name exists
    only in this process (multi-process and distributed runners would fail to import it)."""
    import cloudpickle

    cloudpickle.register_pickle_by_value(module)
    for other in sys.modules.copy().values():
        if getattr(other, '__file__', None) in local_files and other is not module:
            try:
                cloudpickle.register_pickle_by_value(other)
            except ValueError:  # not importable by name: nothing to ship
                pass


def forget_local_modules(path: str) -> set[str]:
    """Prepare loading a user file so that it runs the code now on disk, never a stale import: drop
    from sys.modules the project modules it imports (the files its cache key covers) that are in its
    directory (or below), those elsewhere (found on sys.path) whose code in memory may be older than
    their file (``fingerprint.stale.outdated_modules``), the project modules importing any of those,
    directly or not, and same-named modules of other files. Other modules stay, so that objects made
    from their classes stay valid; so do Sluice's packages, the standard library and installed
    packages. Returns the project files the user file imports."""
    path = os.path.abspath(path)
    stamp_imports()  # from now on, each module imported records which version of its file it holds
    graph = import_graph(path)
    importers: dict[str, set[str]] = {}
    for file, targets in graph.items():
        for target in targets:
            importers.setdefault(target, set()).add(file)
    beside = os.path.join(os.path.dirname(path), '')
    drop = {file for file in graph if file.startswith(beside)} | set(outdated_modules(graph))
    queue = list(drop)
    while queue:
        for importer in importers.get(queue.pop(), ()):
            if importer not in drop:
                drop.add(importer)
                queue.append(importer)
    names = {}
    for root in import_roots(path):
        for file in graph:
            rel = os.path.relpath(file, root)
            if rel == os.pardir or rel.startswith(os.pardir + os.sep):
                continue
            parts = os.path.splitext(rel)[0].split(os.sep)
            if parts[-1] == '__init__':
                parts = parts[:-1]
            if parts and all(part.isidentifier() for part in parts):
                names.setdefault('.'.join(parts), set()).add(file)
    for name, module in sys.modules.copy().items():
        if name.partition('.')[0] == 'sluice':
            continue
        file = module.__dict__.get('__file__') if isinstance(module, types.ModuleType) else None
        if not isinstance(file, str) or not (file in drop or name in names):
            continue
        if is_sluice_file(file) or is_library_file(file):
            continue
        if file in drop or file not in names[name]:
            del sys.modules[name]
            parent, _, child = name.rpartition('.')
            package = sys.modules.get(parent)
            if isinstance(package, types.ModuleType) and package.__dict__.get(child) is module:
                delattr(package, child)  # else `from parent import child` would find the old one
    return set(graph)


# Loading a user's file changes sys.path and sys.modules for a moment: one file at a time in this
# process, whichever thread (nodes run at once: sluice.orchestration.schedule).
LOADING = threading.RLock()


def _exec_module_file(path: str) -> tuple[types.ModuleType, set[str]]:
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
    return module, local


def load_module_file(path: str, required: Sequence[str] = ()) -> types.ModuleType:
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise ModuleFileError(f'Module file {path} does not exist; check the module_file parameter.')
    with LOADING:
        module, local = _exec_module_file(path)
    pickle_by_value(module, local)
    for fn in required:
        if not callable(getattr(module, fn, None)):
            defined = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith('_')
                             and getattr(v, '__module__', None) == module.__name__)
            raise ModuleFileError(f'Module file {path} has no function {fn}(); define it there. '
                                  f'Functions it defines: {", ".join(defined) or "none"}.')
    return module
