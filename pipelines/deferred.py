"""What third-party packages make every Sluice process import, and that Sluice does not need:
imported on first use instead (``defer``), or from the standard library (``stdlib_distutils``).

Found with ``python -X importtime``; measured by ``bench/startup.py`` (fresh processes, importing
each library with ``sluice`` imported first and without; figures in bench/README.md, "Start-up"):

- ``grpc``: ML-Metadata's package imports it for a remote client Sluice never opens (its stores are a
  database file or PostgreSQL): ML-Metadata's import 0.072 s instead of 0.091 s (medians).
- ``google.cloud.bigquery``: ``import apache_beam`` imports Beam's BigQuery IO, which imports the
  BigQuery client (and, through its progress bars, ipywidgets and IPython): Beam's import 1.07 s
  instead of 1.44 s, in every process that runs a Beam pipeline and in every Beam worker.
- distutils: TensorFlow's ``__init__`` imports it for one directory name; setuptools' shim answers
  with its own copy, which first imports setuptools and pkg_resources: TensorFlow's import 2.34 s
  instead of 2.48 s, where Python 3.11's own distutils gives the same name.

``defer(name)`` puts a stand-in module in ``sys.modules``: ``import name`` and ``from parent import
name`` then cost nothing, and the first use of the package (an attribute of it, or an import of one
of its submodules) imports the real package once, under a lock. From then on ``sys.modules`` holds the
real module, and the stand-in (still bound where it was imported early) holds the same attributes.
A stand-in answers ``__file__``, ``__spec__`` and ``__path__`` itself; code that walks ``sys.modules``
asking each module for other names (pickle's ``whichmodule``) imports it, which costs time, not
correctness.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
import types

_LOCK = threading.RLock()


class _Deferred(types.ModuleType):
    """Stands for a package not imported yet; imports it on the first attribute asked of it."""

    def __getattr__(self, attr: str):
        return getattr(_realize(self.__name__), attr)


def _realize(name: str) -> types.ModuleType:
    """The real package ``name``, imported now if its stand-in is still in ``sys.modules``. No lock of
    this module is held while it imports: Python's own lock on the module makes a second importer wait
    for the first (a lock of ours held across the import could deadlock with them)."""
    with _LOCK:
        stand_in = sys.modules.get(name)
        if isinstance(stand_in, _Deferred):
            del sys.modules[name]
    try:
        real = importlib.import_module(name)
    except BaseException:
        with _LOCK:
            if isinstance(stand_in, _Deferred) and name not in sys.modules:
                sys.modules[name] = stand_in
        raise
    if isinstance(stand_in, _Deferred):
        vars(stand_in).update(vars(real))
    return real


class _Realizing:
    """The loader of a submodule of a stand-in (``import grpc.aio`` before anything of grpc was used):
    it imports the real package first, as Python does for a parent not yet imported, which may load
    the submodule itself; then it hands over that module, or loads the submodule as its finders find it.
    It runs when the import system loads the submodule, under that module's own lock, not while it
    asks the finders (under its global lock, where importing a package could deadlock)."""

    def __init__(self, parent: str) -> None:
        self.parent, self.real_spec = parent, None

    def create_module(self, spec):
        _realize(self.parent)
        loaded = sys.modules.get(spec.name)
        if loaded is not None:  # the package's import loaded it
            self.real_spec = getattr(loaded, '__spec__', None)
            return loaded
        self.real_spec = importlib.util.find_spec(spec.name)
        if self.real_spec is None:
            raise ModuleNotFoundError(f'No module named {spec.name!r}', name=spec.name)
        module = importlib.util.module_from_spec(self.real_spec)
        module._sluice_execute = True  # noqa: SLF001 - read and removed in exec_module
        return module

    def exec_module(self, module) -> None:
        module.__spec__ = self.real_spec  # its own spec, not this loader's
        if module.__dict__.pop('_sluice_execute', False):
            module.__loader__ = self.real_spec.loader
            self.real_spec.loader.exec_module(module)


class _SubmoduleFinder:
    """First on ``sys.meta_path``: a submodule of a stand-in is loaded by ``_Realizing``."""

    def find_spec(self, fullname, path, target=None):
        parts = fullname.split('.')
        for end in range(1, len(parts)):
            parent = '.'.join(parts[:end])
            if isinstance(sys.modules.get(parent), _Deferred):
                return importlib.util.spec_from_loader(fullname, _Realizing(parent))
        return None


_FINDER = _SubmoduleFinder()


def defer(name: str) -> None:
    """Put a stand-in for the installed package ``name`` in ``sys.modules`` unless it is imported
    already or not installed (then ``import name`` fails as it would have)."""
    with _LOCK:
        if name in sys.modules:
            return
        try:
            spec = importlib.util.find_spec(name)  # imports the parents of a dotted name (namespaces here)
        except (ImportError, ValueError):
            return
        if spec is None or name in sys.modules:
            return
        stand_in = _Deferred(name, f'{name}, imported on first use (sluice.deferred)')
        # The spec and search path of the real package, without running it: the import system reads
        # the parent's path when a submodule is imported, before it asks the finders (_SubmoduleFinder).
        stand_in.__spec__, stand_in.__loader__ = spec, spec.loader
        stand_in.__package__ = name if spec.submodule_search_locations is not None else name.rpartition('.')[0]
        if spec.submodule_search_locations is not None:
            stand_in.__path__ = list(spec.submodule_search_locations)
        if spec.has_location:  # what code walking sys.modules asks every module (Sluice's own does)
            stand_in.__file__, stand_in.__cached__ = spec.origin, spec.cached
        sys.modules[name] = stand_in
        parent, _, child = name.rpartition('.')
        if parent:  # `import google.cloud.bigquery` then reads it as an attribute of its parent
            setattr(sys.modules[parent], child, stand_in)
        if _FINDER not in sys.meta_path:
            sys.meta_path.insert(0, _FINDER)


def stdlib_distutils() -> None:
    """Let ``import distutils`` find Python's own (3.11 has one) rather than setuptools' shim, unless
    distutils is imported already or ``SETUPTOOLS_USE_DISTUTILS`` chooses."""
    if sys.version_info < (3, 12) and 'distutils' not in sys.modules and 'SETUPTOOLS_USE_DISTUTILS' not in os.environ:
        sys.meta_path[:] = [f for f in sys.meta_path if type(f).__module__ != '_distutils_hack']
