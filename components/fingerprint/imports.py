"""The code of user files: where project code is found (``import_roots``), which files a file imports,
transitively (``import_graph``, ``local_imports``), and the ``code`` part of the key: a module file
parameter and the project files it imports (``code_parts``).

*Project files* are found as Python would find them: an absolute import anywhere in the closure of
a file (a module file, the file defining a component class) resolves against that file's directory
(Sluice puts the directories of module files and pipeline files on ``sys.path`` when it loads them),
the directory holding the top of the package that file is in, and the ``sys.path`` entries outside
the Python installation and environment, in that order, the first match winning. Files of the
standard library, of installed packages and of Sluice's own packages (``components``, ``metadata``,
``pipelines``) are never part of a custom component's or module file's closure. Directory listings
are memoised per process by the directory's mtime.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import time
from typing import Any, Callable, Iterable

from sluice.components.fingerprint.key import canonical_json, sha256
from sluice.components.fingerprint.source import RACY_NS, ImportSpec, analyse, source_digest

SLUICE_COMPONENTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # this package's parent
SLUICE_ROOT = os.path.dirname(SLUICE_COMPONENTS_DIR)  # holds components/ (a checkout, or sluice/ installed)
# Sluice's own packages: never part of a custom component's or module file's code. In a checkout the
# three are the folders components/, metadata/ and pipelines/; installed, sluice/ holds the other two.
SLUICE_PACKAGES = tuple(os.path.join(os.path.abspath(d), '') for name in ('sluice', 'sluice.metadata')
                        for d in importlib.util.find_spec(name).submodule_search_locations) + (
                            os.path.join(SLUICE_COMPONENTS_DIR, ''),)

_listings: dict[str, tuple[int, frozenset[str], frozenset[str]]] = {}
_NOTHING: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset())
_library_dirs: tuple[str, ...] | None = None
_prefix_dirs: tuple[str, ...] | None = None
_root_ok: dict[str, bool] = {}


def _listing(directory: str) -> tuple[frozenset[str], frozenset[str]]:
    """(file names, directory names) in a directory, memoised by the directory's mtime (an entry
    added, removed or renamed changes it)."""
    try:
        st = os.stat(directory)
    except OSError:
        return _NOTHING
    hit = _listings.get(directory)
    if hit is not None and hit[0] == st.st_mtime_ns:
        return hit[1], hit[2]
    files, dirs = set(), set()
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                try:
                    (dirs if entry.is_dir() else files).add(entry.name)
                except OSError:
                    pass
    except OSError:
        return _NOTHING
    listing = frozenset(files), frozenset(dirs)
    if time.time_ns() - st.st_mtime_ns > RACY_NS:
        _listings[directory] = (st.st_mtime_ns, *listing)
    return listing


def _under(path: str, dirs: tuple[str, ...]) -> bool:
    return path.startswith(dirs) or os.path.join(path, '') in dirs


def system_dirs() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(library dirs: the standard library and installed packages; prefix dirs: the Python
    installation and environment), each with a trailing separator."""
    global _library_dirs, _prefix_dirs
    if _library_dirs is None or _prefix_dirs is None:
        import site
        import sysconfig

        paths = sysconfig.get_paths()
        libraries = {paths[k] for k in ('stdlib', 'platstdlib', 'purelib', 'platlib') if paths.get(k)}
        try:
            libraries.update(site.getsitepackages())
        except AttributeError:  # an old virtualenv's site module
            pass
        user_site = site.getusersitepackages() if hasattr(site, 'getusersitepackages') else None
        if user_site:
            libraries.add(user_site)
        prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix} | libraries
        _library_dirs = tuple(sorted({os.path.join(os.path.abspath(d), '') for d in libraries}))
        _prefix_dirs = tuple(sorted({os.path.join(os.path.abspath(d), '') for d in prefixes if d}))
    return _library_dirs, _prefix_dirs


def system_dirs_known() -> bool:
    """Whether ``system_dirs`` was computed (an import finder must not make it import ``site``)."""
    return _library_dirs is not None


def is_library_file(path: str) -> bool:
    """Whether a file belongs to the standard library or to an installed package."""
    return _under(path, system_dirs()[0])


def is_sluice_file(path: str) -> bool:
    """Whether a file belongs to Sluice's own packages (components, metadata, pipelines)."""
    return path.startswith(SLUICE_PACKAGES)


def is_project_file(path: str) -> bool:
    """Whether a file can be part of a custom component's or module file's code: neither the
    standard library, nor an installed package, nor Sluice itself."""
    return not is_sluice_file(path) and not is_library_file(path)


def _package_top(path: str) -> str:
    """The directory holding the top of the package a file is in (its own directory if none)."""
    directory = os.path.dirname(path)
    while '__init__.py' in _listing(directory)[0]:
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    return directory


def import_roots(path: str) -> list[str]:
    """Where an absolute import in the code of ``path`` is looked for, in order: the file's
    directory, the directory holding the top of its package, and the ``sys.path`` entries outside
    the Python installation and environment (directories only; '' is the working directory)."""
    path = os.path.abspath(path)
    library, prefixes = system_dirs()
    roots: list[str] = []
    for directory in (os.path.dirname(path), _package_top(path)):
        if directory not in roots and not _under(directory, library):
            roots.append(directory)
    for entry in sys.path:
        if not isinstance(entry, str):
            continue
        directory = os.path.abspath(entry or os.curdir)
        if directory in roots:
            continue
        ok = _root_ok.get(directory)
        if ok is None:
            ok = _root_ok[directory] = not _under(directory, prefixes)
        if ok and os.path.isdir(directory):
            roots.append(directory)
    return roots


def anchor_dir(path: str) -> str:
    """The import root a file is named relative to: the directory holding the top of its package."""
    return _package_top(os.path.abspath(path))


def display_name(path: str, anchor: str, roots: Iterable[str] = ()) -> str:
    """A file's name relative to ``anchor`` if it is under it, else relative to the innermost of
    ``roots`` that holds it (its module's name, whatever the order of sys.path), else its path."""
    names = []
    for root in (anchor, *roots):
        try:
            rel = os.path.relpath(path, root)
        except ValueError:  # another drive
            continue
        if rel != os.pardir and not rel.startswith(os.pardir + os.sep):
            if root == anchor:
                return rel
            names.append(rel)
    return min(names, key=lambda n: (n.count(os.sep), n)) if names else path


def _find(dirs: list[str], parts: list[str], only_last: bool = False) -> list[str]:
    """The files importing the dotted ``parts`` executes, looked for in ``dirs`` as Python does:
    the first directory holding a package (with __init__.py) or a module of that name wins; without
    one, directories of that name are portions of a namespace package."""
    if not parts:
        return []
    name, rest = parts[0], parts[1:]
    for directory in dirs:
        files, subdirs = _listing(directory)
        if name in subdirs:
            package = os.path.join(directory, name)
            if '__init__.py' in _listing(package)[0]:
                found = [] if only_last and rest else [os.path.join(package, '__init__.py')]
                return found + _find([package], rest, only_last)
        if name + '.py' in files:
            return [] if only_last and rest else [os.path.join(directory, name + '.py')]
    portions = [os.path.join(d, name) for d in dirs if name in _listing(d)[1]]
    return _find(portions, rest, only_last) if portions else []


def _targets(spec: ImportSpec, roots: list[str], here: str) -> list[str]:
    if roots == [SLUICE_ROOT]:  # a standard component's own imports: sluice.components.x is components/x
        spec = _standard_names(spec)
    if spec[0] == 'import':
        return _find(roots, list(spec[1]))
    _, level, parts, names = spec
    dirs = roots
    if level:
        package = here
        for _ in range(level - 1):
            package = os.path.dirname(package)
        dirs = [package]
        out = _find(dirs, list(parts)) if parts else \
            ([os.path.join(package, '__init__.py')] if '__init__.py' in _listing(package)[0] else [])
    else:
        out = _find(dirs, list(parts))
    for name in names:  # `from pkg import submodule`
        out.extend(_find(dirs, [*parts, name], only_last=True))
    return out


def _standard_names(spec: ImportSpec) -> ImportSpec:
    """``sluice.components.x[.y]`` as ``components.x[.y]``, found under ``SLUICE_ROOT`` (a module of
    components/ or of one of its subpackages, such as components/production/)."""
    parts = spec[1] if spec[0] == 'import' else spec[2]
    if tuple(parts[:2]) != ('sluice', 'components'):
        return spec
    parts = type(parts)(parts[1:])
    return (spec[0], parts) if spec[0] == 'import' else (spec[0], spec[1], parts, spec[3])


def import_graph(module_file: str, base: str | None = None,
                 accept: Callable[[str], bool] | None = None) -> dict[str, set[str]]:
    """{file: the files it imports} for the file and every project file it imports, directly or
    indirectly: ``import a.b`` (a/__init__.py, a/b.py), ``from a import f`` (a.py or a/__init__.py,
    and a/f.py if f is a module), relative imports, and imports inside functions. Absolute imports
    resolve against ``import_roots(module_file)``, or only against ``base`` if given; ``accept``
    limits which found files are included and followed (default: ``is_project_file``). Files that
    do not parse are included but not followed."""
    module_file = os.path.abspath(module_file)
    roots = import_roots(module_file) if base is None else [base]
    accept = accept or is_project_file
    graph: dict[str, set[str]] = {}
    queue = [module_file]
    while queue:
        path = queue.pop()
        if path in graph:
            continue
        edges = graph[path] = set()
        try:
            _, imports = analyse(path)
        except OSError:
            continue
        here = os.path.dirname(path)
        for spec in imports:
            for target in _targets(spec, roots, here):
                target = os.path.normpath(target)
                if target != path and accept(target):
                    edges.add(target)
                    queue.append(target)
    return graph


def local_imports(module_file: str, base: str | None = None,
                  accept: Callable[[str], bool] | None = None) -> list[str]:
    """The files of ``import_graph``, sorted."""
    return sorted(import_graph(module_file, base, accept))


def code_parts(module_file: str) -> Any:
    """What a module file parameter contributes to the cache key: ``{'file': its name, 'files':
    {name: source_digest}}`` for it and the project files it imports (named relative to its
    directory, or else to the import root holding them), or 'missing:<path>' if it is absent (so that
    the executor, not the driver, reports the missing file on a FAILED execution)."""
    if not os.path.isfile(module_file):
        return f'missing:{module_file}'
    module_file = os.path.abspath(module_file)
    root, roots = os.path.dirname(module_file), import_roots(module_file)
    files: dict[str, str] = {}
    for path in local_imports(module_file):
        name, digest = display_name(path, root, roots), source_digest(path)
        files[path if files.get(name, digest) != digest else name] = digest
    return {'file': os.path.basename(module_file), 'files': files}


def code_fingerprint(module_file: str) -> str:
    """One digest of ``code_parts`` (or 'missing:<path>')."""
    parts = code_parts(module_file)
    return parts if isinstance(parts, str) else sha256(canonical_json(parts))
