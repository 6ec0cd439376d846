"""gRPC, imported when first used rather than when ML-Metadata is.

ML-Metadata's package imports gRPC for its remote client (``metadata_store_service_pb2_grpc``, and
``metadata_store.py`` for its error class) even when the store is a database file or PostgreSQL, as
Sluice's are: about a quarter of the time ``sluice`` takes to start (``python -X importtime``).
``defer('grpc')``, called before ML-Metadata is imported, puts a stand-in module under that name:
``import grpc`` then costs nothing, and the first use of the package (an attribute of it, by
ML-Metadata's gRPC client, by Beam, by anything; or an import of one of its submodules) imports the
real package once, under a lock. From then on ``sys.modules`` holds the real module, and the stand-in
(still bound in the modules that imported it early) holds the same attributes.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types

_LOCK = threading.RLock()


class _Deferred(types.ModuleType):
    """Stands for a package not imported yet; imports it on the first attribute asked of it."""

    def __getattr__(self, attr: str):
        return getattr(_realize(self.__name__), attr)


def _realize(name: str) -> types.ModuleType:
    """The real package ``name``, imported now if its stand-in is still in ``sys.modules``."""
    with _LOCK:
        stand_in = sys.modules.get(name)
        if not isinstance(stand_in, _Deferred):
            return stand_in if stand_in is not None else importlib.import_module(name)
        del sys.modules[name]
        try:
            real = importlib.import_module(name)
        except BaseException:
            sys.modules[name] = stand_in
            raise
        vars(stand_in).update(vars(real))
        return real


class _AlreadyLoaded:
    """Hands the import system a module that importing its package has just loaded (a loader, as
    the import system uses one: importlib.abc, 5 ms to import, is not needed for that)."""

    def __init__(self, module: types.ModuleType) -> None:
        self.module = module

    def create_module(self, spec):
        return self.module

    def exec_module(self, module) -> None:
        pass


class _SubmoduleFinder:
    """First on ``sys.meta_path``: ``import grpc.aio`` while the stand-in is in place imports the real
    package first (as Python does for a parent not yet imported), which may load the submodule itself;
    the import system is then handed that module instead of executing it a second time."""

    def find_spec(self, fullname, path, target=None):
        parent = fullname.partition('.')[0]
        if parent == fullname or not isinstance(sys.modules.get(parent), _Deferred):
            return None
        _realize(parent)
        if fullname in sys.modules:
            return importlib.util.spec_from_loader(fullname, _AlreadyLoaded(sys.modules[fullname]))
        return None


_FINDER = _SubmoduleFinder()


def defer(name: str) -> None:
    """Put a stand-in for the installed top-level package ``name`` in ``sys.modules`` unless it is
    imported already or not installed (then ``import name`` fails as it would have)."""
    with _LOCK:
        spec = None if name in sys.modules else importlib.util.find_spec(name)
        if spec is None:
            return
        stand_in = _Deferred(name, f'{name}, imported on first use (sluice.metadata.deferred)')
        # A package's search path without importing it: the import system reads it from the parent
        # when a submodule is imported, before the finders are asked (and _SubmoduleFinder answers).
        stand_in.__path__ = list(spec.submodule_search_locations or [])
        sys.modules[name] = stand_in
        if _FINDER not in sys.meta_path:
            sys.meta_path.insert(0, _FINDER)
