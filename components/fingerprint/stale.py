"""The code in memory and the files on disk. A key describes the files on disk; the code that runs is
the code in memory, which is older when a file was edited after the process imported it.
``stale_code`` tells when they may differ, and the driver then refuses to run the node rather than
cache old behaviour under the new key (see ``note_loaded``); ``outdated_modules`` tells which modules
of a file a loader must import afresh.

For a custom component, ``note_loaded`` records when its classes are defined the (mtime, size,
digest) of each file they run, and whether each of those files' modules already in memory holds the
file's current version:

- a module whose spec Sluice stamped (``_sluice_seen``) holds the version it was stamped with: the
  stamping finder (installed with the first custom component class, or by ``load_pipeline`` and
  ``load_module_file``) stamps every project module found for import or reload with its file's
  (mtime, size) just before the file is read, and a module found fresh is stamped with its digest;
- a module being executed right now (the module defining the class, or one being imported), or
  imported since the current import of such a module began, holds the current version;
- so does a module whose file has not changed since the process started (/proc/self/stat, or
  psutil; elsewhere, since Sluice was imported);
- a stamped module whose file changed since is *stale*; any other module is *unknown*.

``stale_code`` refuses a component whose files changed since its classes were defined (the classes
hold the old code, even when a module they imported was reloaded since), whose classes were
defined while a module they use was stale or unknown, or one of whose files' modules is stale or
unknown now. A spurious refusal is possible (a module imported before the stamping finder was
installed, not during the current import, from a file changed after the process started). A stale
module goes unnoticed only if its file kept its size and mtime across an edit, if the file was
edited during the import that defines the component (between the module's import and the class
definition), or if the module's last reload failed part-way (its spec is new, its code partly old).
"""
from __future__ import annotations

import os
import sys
import time
import types
from typing import Any, Iterable

from sluice.components.fingerprint.classes import module_path
from sluice.components.fingerprint.implementation import class_closure, closure, is_standard
from sluice.components.fingerprint.imports import is_project_file, system_dirs, system_dirs_known
from sluice.components.fingerprint.source import source_digest

_CLOCK_SLACK_NS = 2_000_000_000  # clocks and mtimes may be this coarse
_MTIME_TICK_NS = 10_000_000  # Linux file times come from a clock that ticks every 1 to 10 ms
_IMPORTED_NS = time.time_ns()
_process_start: list[int] = []


class _StampingFinder:
    """A meta path finder that finds nothing itself: it asks the finders after it, and stamps the spec
    they find for a project file with that file's (mtime_ns, size) as its loader is about to read it."""

    @classmethod
    def find_spec(cls, name: str, path: Any = None, target: Any = None) -> Any:
        meta_path = sys.meta_path
        try:
            later = meta_path[meta_path.index(cls) + 1:]
        except ValueError:
            return None
        for finder in later:
            find = getattr(finder, 'find_spec', None)
            if find is None:  # a legacy finder: leave the whole search to the import system
                return None
            spec = find(name, path, target)
            if spec is not None:
                origin = getattr(spec, 'origin', None)
                if isinstance(origin, str) and origin.endswith('.py') and system_dirs_known() \
                        and is_project_file(origin):
                    try:
                        st = os.stat(origin)
                    except OSError:
                        pass
                    else:
                        spec._sluice_seen = (st.st_mtime_ns, st.st_size, None)
                return spec
        return None


def stamp_imports() -> None:
    """Stamp from now on each project module imported or reloaded with the stat of its file (see above)."""
    if _StampingFinder not in sys.meta_path:
        system_dirs()  # imports what it needs before the finder sees imports
        sys.meta_path.insert(0, _StampingFinder)


def _process_start_ns() -> int:
    """A time before anything was imported into this process (minus the uncertainty of how it was
    measured: a clock tick on Linux, where /proc gives the start in ticks since boot, read against
    CLOCK_BOOTTIME; else the coarse-clock slack)."""
    if not _process_start:
        start, slack = None, _CLOCK_SLACK_NS
        try:
            with open('/proc/self/stat', 'rb') as f:
                started_ticks = int(f.read().rsplit(b')', 1)[1].split()[19])
            hz = os.sysconf('SC_CLK_TCK')
            since_boot = time.clock_gettime_ns(time.CLOCK_BOOTTIME) - started_ticks * 10**9 // hz
            start, slack = time.time_ns() - since_boot, 2 * 10**9 // hz + _MTIME_TICK_NS
        except (OSError, ValueError, IndexError, AttributeError):
            try:
                import psutil
                start = int(psutil.Process().create_time() * 10**9)
            except Exception:  # noqa: BLE001 - no way to tell: since Sluice was imported
                start = None
        _process_start.append((start if start is not None else _IMPORTED_NS) - slack)
    return _process_start[0]


def _executing_namespaces() -> set[int]:
    """ids of the globals of the module bodies being executed (imports, reloads, scripts, cells)."""
    ids = set()
    frame: Any = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == '<module>':
            ids.add(id(frame.f_globals))
        frame = frame.f_back
    return ids


def _modules_of(paths: set[str], executing: set[int]) -> dict[str, list[tuple[str, types.ModuleType, bool]]]:
    """path -> [(name, module, imported since the current import began)] for the modules in memory
    whose file is one of ``paths``."""
    found: dict[str, list[tuple[str, types.ModuleType, bool]]] = {}
    anchor = False  # passed the first module being imported right now: later ones were imported since
    # One copy, made in C: read item by item, a finalizer or another thread may import in between
    # (RuntimeError: dictionary changed size during iteration).
    for name, module in sys.modules.copy().items():
        if not isinstance(module, types.ModuleType):
            continue
        namespace = module.__dict__
        since = anchor
        if not anchor and id(namespace) in executing and getattr(namespace.get('__spec__'), '_initializing', False):
            anchor = True
        path = namespace.get('__file__')
        if isinstance(path, str) and path in paths:
            since = since and getattr(namespace.get('__spec__'), 'name', None) == name
            found.setdefault(path, []).append((name, module, since))
    return found


_seen_without_spec: dict[int, tuple[types.ModuleType, tuple[int, int, str]]] = {}  # e.g. __main__ of a script


def _seen(module: types.ModuleType, spec: Any) -> tuple[int, int, str | None] | None:
    if spec is not None:
        return getattr(spec, '_sluice_seen', None)
    hit = _seen_without_spec.get(id(module))
    return hit[1] if hit is not None and hit[0] is module else None


def _verdict(module: types.ModuleType, path: str, st: os.stat_result, executing: set[int],
             imported_since: bool) -> str:
    """'fresh', 'stale' or 'unknown': whether a module holds the current version of its file."""
    namespace = module.__dict__
    spec = namespace.get('__spec__')
    seen = _seen(module, spec)
    if seen is not None:
        if seen[:2] != (st.st_mtime_ns, st.st_size) and (seen[2] is None or seen[2] != source_digest(path)):
            return 'stale'
    elif not (id(namespace) in executing or getattr(spec, '_initializing', False) or imported_since
              or st.st_mtime_ns < _process_start_ns()):
        return 'unknown'
    seen = (st.st_mtime_ns, st.st_size, source_digest(path))
    if spec is not None:
        spec._sluice_seen = seen
    else:
        _seen_without_spec[id(module)] = (module, seen)
    return 'fresh'


def _why(verdict: str, name: str) -> str:
    if verdict == 'stale':
        return f'changed after module {name} was imported (the module in memory is older than the file)'
    return (f'changed since this process started, and module {name} was imported before Sluice could '
            'tell which version of it the module holds')


def _memory(paths: list[str], executing: set[int]) -> tuple[dict[str, tuple[int, int, str]], dict[str, str]]:
    """({path: (mtime_ns, size, digest)}, {path: why its module in memory is not that version})."""
    modules = _modules_of(set(paths), executing)
    files: dict[str, tuple[int, int, str]] = {}
    stale: dict[str, str] = {}
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            continue
        files[path] = (st.st_mtime_ns, st.st_size, source_digest(path))
        for name, module, imported_since in modules.get(path, ()):
            verdict = _verdict(module, path, st, executing, imported_since)
            if verdict != 'fresh':
                stale[path] = _why(verdict, name)
                break
    return files, stale


def note_loaded(cls: type) -> None:
    """Called by Component and Executor when a subclass is defined. For a custom class, record what
    ``stale_code`` compares with (see the module docstring); a standard component's class records nothing more
    than its load time (``_loaded_ns``), so importing Sluice stays cheap."""
    path = module_path(sys.modules.get(cls.__module__))
    if path is not None and is_standard(path):
        return
    try:
        stamp_imports()
        paths = [p for p, _ in class_closure(cls)[0] if p]
        cls._sluice_loaded = _memory(paths, _executing_namespaces())
    except Exception:  # noqa: BLE001 - never break a class definition: stale_code then compares load times
        cls._sluice_loaded = None


def stale_code(component_cls: type, entries: list[tuple[type, str, str]] | None = None) -> list[tuple[str, str]]:
    """[(path, why)] for each file the component runs whose code in memory may be older than the
    file: the cache key describes the file, so running the node would cache the old code's results
    under the new code's key. ``entries``: the component's ``closure``, if computed already."""
    entries = closure(component_cls) if entries is None else entries
    modules: dict[str, list[tuple[str, types.ModuleType, bool]]] | None = None  # found when first needed
    own = component_cls.__dict__.get('_sluice_loaded')
    out: dict[str, str] = {}
    for cls, path, _ in entries:
        if not path or path in out:
            continue
        snapshot = cls.__dict__.get('_sluice_loaded', own)
        loaded = getattr(cls, '_loaded_ns', None) or getattr(component_cls, '_loaded_ns', None)
        edited = f'changed after {cls.__name__} was loaded into this process'
        try:
            st = os.stat(path)
        except OSError:
            out[path] = f'was removed after {cls.__name__} was loaded into this process'
            continue
        recorded = snapshot[0].get(path) if snapshot is not None else None
        if snapshot is not None and path in snapshot[1]:
            out[path] = snapshot[1][path]
        elif recorded is None:  # a standard component, or a file it did not run when it was defined
            if loaded is not None and st.st_mtime_ns > loaded:
                out[path] = edited
        elif recorded[:2] != (st.st_mtime_ns, st.st_size) and recorded[2] != source_digest(path):
            out[path] = edited
        if path in out or snapshot is None:
            continue
        if modules is None:
            modules = _modules_of({p for _, p, _ in entries if p}, set())
        for name, module, _ in modules.get(path, ()):
            verdict = _verdict(module, path, st, set(), False)
            if verdict != 'fresh':
                out[path] = _why(verdict, name)
                break
    return sorted(out.items())


def outdated_modules(paths: Iterable[str]) -> dict[str, list[str]]:
    """{path: names of its modules in memory} for the files whose modules in memory may not hold their
    current version (stale or unknown, see above)."""
    out: dict[str, list[str]] = {}
    for path, modules in _modules_of(set(paths), set()).items():
        try:
            st = os.stat(path)
        except OSError:
            out[path] = [name for name, _, _ in modules]
            continue
        names = [name for name, module, _ in modules if _verdict(module, path, st, set(), False) != 'fresh']
        if names:
            out[path] = names
    return out


def stale_code_message(node_id: str, component_cls: type,
                       entries: list[tuple[type, str, str]] | None = None) -> str | None:
    """Why a component must not run now and how to fix it, or None if its code in memory is current."""
    stale = stale_code(component_cls, entries)
    if not stale:
        return None
    what = '; '.join(f'{path} {why}' for path, why in stale)
    head = (f'{node_id}: the code in memory is older than the files it would be cached under: {what}. '
            "Running it would cache the old code's results under the new code's key. Restart the kernel "
            '(or the process) and run again: that always works.')
    definer = component_cls.__module__
    if definer.startswith('_sluice_pipeline_'):
        return head + (' Loading the pipeline file again (load_pipeline) also does: it imports afresh the '
                       'project modules the file uses.')
    names = sorted({name for path, _ in stale for name, _, _ in _modules_of({path}, set()).get(path, ())
                    if name != definer and not name.startswith(('_sluice_', 'sluice_user_module_'))})
    steps = [f'importlib.reload({name})' for name in names]
    steps.append(f'importlib.reload({definer})' if definer != '__main__' else
                 f'the code that defines {component_cls.__name__}')
    return head + (' To reload instead, reload each edited module before the modules that import it '
                   f'({", then ".join(steps)}), and build the pipeline again.')
