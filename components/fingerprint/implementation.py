"""The ``implementation`` part of the key: the code of the component itself. That is the component's
``version``, a digest of each Python file it runs, and the installed versions of the libraries its
output depends on (the class attribute ``libraries``), read from their metadata without importing
them. For a *standard* component (defined in Sluice's ``components`` package, in a subpackage of it
too) the files are its module and the components/ modules that module imports, transitively, less
framework plumbing (``PLUMBING``); for a *custom* component they are the files defining its executor,
component and driver classes plus the project files those import, transitively (``local_imports``).
A class without a file is keyed by its source and what it uses (``classes``).
"""
from __future__ import annotations

import os
from importlib import metadata as _importlib_metadata
from typing import Any

from sluice.components.fingerprint.classes import class_file, class_source_digest, used_globals
from sluice.components.fingerprint.imports import (SLUICE_COMPONENTS_DIR, SLUICE_ROOT, anchor_dir, display_name,
                                                   import_roots, local_imports)
from sluice.components.fingerprint.key import canonical_json, sha256
from sluice.components.fingerprint.source import source_digest

# Files of components/ that a standard component's fingerprint leaves out: framework plumbing that
# decides *whether and where* an executor runs and *how the outcome is recorded*, never what an
# executor writes, so an edit to them must not throw away every cached output. Named relative to
# components/ with '/' separators; a name ending in '/' is a whole subpackage.
#   __init__.py     re-exports the public names (its TF_USE_LEGACY_KERAS default is pipelines' too);
#   component.py    declarations and wiring checks, run before anything executes;
#   driver.py       input resolution (inputs are keyed by their own fingerprints), the cache lookup
#                   and registration of executions;
#   publisher.py    records the outcome in the store;
#   fingerprint/    computes the key itself;
#   executor.py     the Executor base class: a scratch directory and Beam pipeline options;
#   module_file.py  loads user module files, whose content the ``code`` part covers.
PLUMBING = frozenset({'__init__.py', 'component.py', 'driver.py', 'publisher.py', 'fingerprint/',
                      'executor.py', 'module_file.py'})
_COMPONENTS_REAL = os.path.realpath(SLUICE_COMPONENTS_DIR)
_versions: dict[str, str] = {}


def library_version(distribution: str) -> str:
    """The installed version of a distribution ('tensorflow-model-analysis'), read from its
    metadata without importing it; 'not installed' if absent. Memoised per process."""
    if distribution not in _versions:
        try:
            _versions[distribution] = _importlib_metadata.version(distribution)
        except _importlib_metadata.PackageNotFoundError:
            _versions[distribution] = 'not installed'
    return _versions[distribution]


def _components_name(path: str) -> str | None:
    """A file's name relative to Sluice's components/ folder, '/'-separated ('trainer.py',
    'production/destination.py'), or None if the file is not in it."""
    directory = os.path.realpath(os.path.dirname(path))
    if directory != _COMPONENTS_REAL and not directory.startswith(os.path.join(_COMPONENTS_REAL, '')):
        return None
    return os.path.relpath(os.path.join(directory, os.path.basename(path)), _COMPONENTS_REAL).replace(os.sep, '/')


def is_standard(path: str) -> bool:
    """Whether a file is one of Sluice's own components/ modules (in a subpackage of it too)."""
    return _components_name(path) is not None


def is_plumbing(path: str) -> bool:
    """Whether a file of components/ is framework plumbing (``PLUMBING``), left out of the key."""
    name = _components_name(path)
    return name is not None and _plumbing_name(name)


def _plumbing_name(name: str) -> bool:
    return name in PLUMBING or name.split('/', 1)[0] + '/' in PLUMBING


def _standard_source(path: str) -> bool:
    name = _components_name(path)
    return name is not None and not _plumbing_name(name)


def class_closure(cls: type, anchor: str | None = None,
                  wired_only: frozenset[str] = frozenset()) -> tuple[list[tuple[str, str]], str | None]:
    """((path, name) of each Python file a class runs, the anchor used for names). A class without a
    file has the entry ('', '<module.qualname>'). Standard files are named relative to Sluice's root
    (``components/trainer.py``), custom ones relative to ``anchor`` (default: the import root of the
    class's file; see ``anchor_dir``) or else to the import root holding them. ``wired_only``: standard
    files (named relative to components/) left out, with what only they import."""
    path = class_file(cls)
    if path is None:
        out = [('', f'<{cls.__module__}.{cls.__qualname__}>')]
        for file in sorted(used_globals(cls)[1]):
            roots = import_roots(file)
            out.extend((f, display_name(f, anchor or anchor_dir(file), roots)) for f in local_imports(file))
        return out, anchor
    if is_standard(path):
        if not _standard_source(path):
            return [], anchor
        files = local_imports(path, SLUICE_ROOT,
                              lambda f: _standard_source(f) and _components_name(f) not in wired_only)
        return [(f, os.path.relpath(f, SLUICE_ROOT)) for f in files], anchor
    anchor = anchor or anchor_dir(path)
    roots = import_roots(path)
    return [(f, display_name(f, anchor, roots)) for f in local_imports(path)], anchor


def _classes(component_cls: type, executor_cls: type | None = None) -> list[type]:
    executor_cls = executor_cls or getattr(component_cls, 'executor', None)
    return [c for c in (executor_cls, component_cls, getattr(component_cls, 'driver', None)) if c is not None]


def closure(component_cls: type, executor_cls: type | None = None) -> list[tuple[type, str, str]]:
    """(class, path, name) of each Python file the component runs (see ``class_closure``); custom
    files are named relative to the import root of the executor's file."""
    out: list[tuple[type, str, str]] = []
    anchor: str | None = None
    # Modules a standard component only builds nodes from (a Trainer's OnnxExporter): their code runs in
    # those nodes, under their own keys, so an edit to them does not invalidate this component's outputs.
    wired_only = frozenset(getattr(component_cls, 'WIRED_ONLY', ()))
    for cls in _classes(component_cls, executor_cls):
        files, anchor = class_closure(cls, anchor, wired_only)
        out.extend((cls, path, name) for path, name in files)
    return out


def implementation_files(component_cls: type, executor_cls: type | None = None,
                         entries: list[tuple[type, str, str]] | None = None) -> dict[str, str]:
    """A digest of each Python file the component runs (name -> ``source_digest``)."""
    files: dict[str, str] = {}
    for cls, path, name in entries if entries is not None else closure(component_cls, executor_cls):
        digest = source_digest(path) if path else class_source_digest(cls)
        if files.get(name, digest) != digest:  # two different files under one name
            name = path
        files[name] = digest
    return files


def implementation_parts(component_cls: type, executor_cls: type | None = None,
                         files: dict[str, str] | None = None) -> dict[str, Any]:
    """What the component's own code contributes to the cache key: ``version``, ``files`` (see
    ``implementation_files``; pass ``files`` to use a snapshot taken when the classes were loaded)
    and ``libraries`` (distribution -> installed version)."""
    if files is None:
        files = implementation_files(component_cls, executor_cls)
    libraries = {name: library_version(name) for name in getattr(component_cls, 'libraries', ())}
    return {'version': str(getattr(component_cls, 'version', '1')), 'files': files, 'libraries': libraries}


def implementation_fingerprint(component_cls: type, executor_cls: type | None = None) -> str:
    """One digest of ``implementation_parts``."""
    return sha256(canonical_json(implementation_parts(component_cls, executor_cls)))
