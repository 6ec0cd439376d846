"""Fingerprints for the cache key: canonical parameters, the code that runs, input files.

The cache key of an execution is a sha256 over its *parts* (``Driver.cache_key_parts``):

- ``pipeline``, ``node``, ``component``: the pipeline name, node id and component type;
- ``implementation``: the code of the component itself (``implementation_parts``): the component's
  ``version``, a digest of each Python file it runs, and the installed versions of the libraries
  its output depends on (the class attribute ``libraries``). For a *standard* component (defined in
  Sluice's ``components`` package) the files are its module and the ``components/`` modules that
  module imports, transitively, less framework plumbing (``PLUMBING``); for a *custom* component
  they are the files defining its executor, component and driver classes plus the project files
  those import, transitively (``local_imports``). A class without a file (typed into a notebook
  cell, ``python -c``) is keyed by its source and by the source of the functions, classes and
  constants of its module that its methods use by name, transitively, and of the project files of
  modules and functions they use from elsewhere;
- ``parameters``: the canonical JSON of its parameters (module file paths excluded);
- ``inputs``: each input artifact's fingerprint;
- ``code``: for each module file parameter, a digest of the module file and the project files it
  imports;
- ``external``: what the driver adds (ExampleGen: the content of its input files).

*Project files* are found as Python would find them: an absolute import anywhere in the closure of
a file (a module file, the file defining a component class) resolves against that file's directory
(Sluice puts the directories of module files and pipeline files on ``sys.path`` when it loads them),
the directory holding the top of the package that file is in, and the ``sys.path`` entries outside
the Python installation and environment, in that order, the first match winning (``import_roots``).
Files of the standard library, of installed packages and of Sluice's own packages (``components``,
``metadata``, ``pipelines``) are never part of a custom component's or module file's closure.

Python files are digested by their syntax tree without docstrings (``source_digest``), so comments,
docstrings, blank lines and formatting do not change a key, and any edit to code that runs does.
Digests are memoised per process by (path, mtime, size), directory listings by the directory's
mtime. Nothing here imports the libraries whose versions it records. An output artifact's
fingerprint is derived from the key of the execution that made it, so a change upstream changes
every key downstream of it, and nothing else.

A key describes the files on disk; the code that runs is the code in memory. ``stale_code`` tells
when they may differ (a file edited after the process imported it), and the driver then refuses to
run the node rather than cache old behaviour under the new key (see ``note_loaded``).
"""
from __future__ import annotations

import ast
import hashlib
import inspect
import importlib.util
import json
import os
import sys
import textwrap
import time
import types
from importlib import metadata as _importlib_metadata
from typing import Any, Callable, Iterable

SLUICE_COMPONENTS_DIR = os.path.dirname(os.path.abspath(__file__))
SLUICE_ROOT = os.path.dirname(SLUICE_COMPONENTS_DIR)  # holds components/ (a checkout, or sluice/ installed)
# Sluice's own packages: never part of a custom component's or module file's code. In a checkout the
# three are the folders components/, metadata/ and pipelines/; installed, sluice/ holds the other two.
SLUICE_PACKAGES = tuple(os.path.join(os.path.abspath(d), '') for name in ('sluice', 'sluice.metadata')
                        for d in importlib.util.find_spec(name).submodule_search_locations) + (
                            os.path.join(SLUICE_COMPONENTS_DIR, ''),)

# Modules of components/ that a standard component's fingerprint leaves out: framework plumbing that
# decides *whether and where* an executor runs and *how the outcome is recorded*, never what an
# executor writes, so an edit to them must not throw away every cached output.
#   __init__.py     re-exports the public names (its TF_USE_LEGACY_KERAS default is pipelines' too);
#   component.py    declarations and wiring checks, run before anything executes;
#   driver.py       input resolution (inputs are keyed by their own fingerprints), the cache lookup
#                   and registration of executions;
#   publisher.py    records the outcome in the store;
#   fingerprint.py  computes the key itself;
#   executor.py     the Executor base class: a scratch directory and Beam pipeline options;
#   module_file.py  loads user module files, whose content the ``code`` part covers.
PLUMBING = frozenset({'__init__.py', 'component.py', 'driver.py', 'publisher.py', 'fingerprint.py',
                      'executor.py', 'module_file.py'})

# The parts of a cache key that are hashed; other entries of a parts dict are for explanations only.
KEY_FIELDS = ('pipeline', 'node', 'component', 'implementation', 'parameters', 'inputs', 'code', 'external')


# The parts of a cache key that are hashed; other entries of a parts dict are for explanations only.
KEY_FIELDS = ('pipeline', 'node', 'component', 'implementation', 'parameters', 'inputs', 'code', 'external')


def sha256(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, 'big'))
        h.update(data)
    return h.hexdigest()


def canonical(value: Any) -> Any:
    """A JSON-ready form of a parameter value that is equal for equal values."""
    if hasattr(value, 'DESCRIPTOR') and hasattr(value, 'SerializeToString'):
        from google.protobuf import json_format
        return {'@proto': value.DESCRIPTOR.full_name,
                'value': json_format.MessageToDict(value, preserving_proto_field_name=True)}
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(canonical(v) for v in value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f'{type(value).__name__} {value!r} cannot be a parameter: use JSON-like values '
                    '(numbers, strings, lists, dicts) or protocol buffers.')


def canonical_json(value: Any) -> str:
    return json.dumps(canonical(value), sort_keys=True, separators=(',', ':'))


def key_of(parts: dict[str, Any]) -> str:
    """The cache key of a parts dict (see the module docstring); only ``KEY_FIELDS`` are hashed."""
    return sha256(canonical_json({k: parts.get(k) for k in KEY_FIELDS}))


def output_fingerprint(key: str, output_key: str) -> str:
    return sha256(key, output_key)


def files_fingerprint(paths: Iterable[str], root: str | None = None) -> str:
    """A fingerprint of file contents, byte for byte (and their names relative to ``root``)."""
    h = hashlib.sha256()
    for path in sorted(paths):
        name = os.path.relpath(path, root) if root else os.path.basename(path)
        h.update(name.encode() + b'\0')
        with open(path, 'rb') as f:
            for block in iter(lambda: f.read(1 << 20), b''):
                h.update(block)
        h.update(b'\0')
    return h.hexdigest()


# -- Python source: normalised digests and imports -----------------------------------------
_Import = tuple  # ('import', parts) or ('from', level, parts, names)
_analysed: dict[str, tuple[tuple[int, int, int], str, tuple[_Import, ...]]] = {}
_RACY_NS = 2_000_000_000  # a file changed this recently may change again within its mtime's resolution


def _strip_docstrings(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:]


def _tree_digest(tree: ast.AST) -> str:
    _strip_docstrings(tree)
    return sha256('python-ast', ast.dump(tree, include_attributes=False))


def _import_specs(tree: ast.AST) -> tuple[_Import, ...]:
    specs: list[_Import] = []
    for node in ast.walk(tree):  # also imports inside functions (e.g. the Trainer's onnx_export)
        if isinstance(node, ast.Import):
            specs.extend(('import', tuple(alias.name.split('.'))) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = tuple(node.module.split('.')) if node.module else ()
            specs.append(('from', node.level, parts, tuple(a.name for a in node.names if a.name != '*')))
    return tuple(specs)


def _analyse(path: str) -> tuple[str, tuple[_Import, ...]]:
    """(normalised digest, imports) of a file, memoised by (mtime, size, inode)."""
    st = os.stat(path)
    stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
    hit = _analysed.get(path)
    if hit is not None and hit[0] == stamp:
        return hit[1], hit[2]
    with open(path, 'rb') as f:
        data = f.read()
    try:
        tree = ast.parse(data, filename=path)
    except (SyntaxError, ValueError, UnicodeDecodeError):  # not Python: its bytes, nothing to follow
        digest, imports = sha256('raw', data), ()
    else:
        imports = _import_specs(tree)
        digest = _tree_digest(tree)
    if time.time_ns() - st.st_mtime_ns > _RACY_NS:  # else an edit within the same tick could be missed
        _analysed[path] = (stamp, digest, imports)
    return digest, imports


def source_digest(path: str) -> str:
    """Digest of a Python file that ignores comments, docstrings, blank lines and formatting: its
    syntax tree without docstrings. A file that does not parse is digested byte for byte."""
    return _analyse(os.path.abspath(path))[0]


# -- where project code is found -----------------------------------------------------------------
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
    if time.time_ns() - st.st_mtime_ns > _RACY_NS:
        _listings[directory] = (st.st_mtime_ns, *listing)
    return listing


def _under(path: str, dirs: tuple[str, ...]) -> bool:
    return path.startswith(dirs) or os.path.join(path, '') in dirs


def _system_dirs() -> tuple[tuple[str, ...], tuple[str, ...]]:
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


def is_library_file(path: str) -> bool:
    """Whether a file belongs to the standard library or to an installed package."""
    return _under(path, _system_dirs()[0])


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
    library, prefixes = _system_dirs()
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


def _targets(spec: _Import, roots: list[str], here: str) -> list[str]:
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


def _standard_names(spec: _Import) -> _Import:
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
            _, imports = _analyse(path)
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


# -- the implementation part ---------------------------------------------------------------------
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
    path = _module_file(sys.modules.get(cls.__module__))
    if path and path.endswith('.py') and os.path.isfile(path):
        return os.path.abspath(path)
    return None


def _module_file(module: Any) -> str | None:
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
        return _tree_digest(ast.parse(textwrap.dedent(inspect.getsource(obj))))
    except (OSError, TypeError, SyntaxError, IndentationError):
        pass
    if inspect.isfunction(obj):
        defaults = [_literal_repr(d) if _literal(d) else type(d).__name__ for d in obj.__defaults__ or ()]
        kwdefaults = sorted((k, _literal_repr(v) if _literal(v) else type(v).__name__)
                            for k, v in (obj.__kwdefaults__ or {}).items())
        return sha256(_code_digest(obj.__code__), repr(defaults), repr(kwdefaults))
    constants = (f'{k}={_literal_repr(v)}' for k, v in vars(obj).items() if _literal(v) and not k.startswith('__'))
    return sha256(*sorted(f'{f.__qualname__}:{_source_digest_of(f)}' for f in _functions(obj)), *sorted(constants))


def _used_globals(cls: type) -> tuple[dict[str, str], set[str]]:
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
                path = _module_file(module)
                if path and path.endswith('.py') and is_project_file(path) and os.path.isfile(path):
                    files.add(path)
    return digests, files


def _class_source_digest(cls: type) -> str:
    """For a class without a file: its source (or its methods' code) and what it uses of its module."""
    digests, _ = _used_globals(cls)
    return sha256(_source_digest_of(cls), canonical_json(digests))


def is_standard(path: str) -> bool:
    """Whether a file is one of Sluice's own components/ modules."""
    return os.path.realpath(os.path.dirname(path)) == os.path.realpath(SLUICE_COMPONENTS_DIR)


def _standard_source(path: str) -> bool:
    return is_standard(path) and os.path.basename(path) not in PLUMBING


def _class_closure(cls: type, anchor: str | None = None) -> tuple[list[tuple[str, str]], str | None]:
    """((path, name) of each Python file a class runs, the anchor used for names). A class without a
    file has the entry ('', '<module.qualname>'). Standard files are named relative to Sluice's root
    (``components/trainer.py``), custom ones relative to ``anchor`` (default: the import root of the
    class's file; see ``anchor_dir``) or else to the import root holding them."""
    path = class_file(cls)
    if path is None:
        out = [('', f'<{cls.__module__}.{cls.__qualname__}>')]
        for file in sorted(_used_globals(cls)[1]):
            roots = import_roots(file)
            out.extend((f, display_name(f, anchor or anchor_dir(file), roots)) for f in local_imports(file))
        return out, anchor
    if is_standard(path):
        if not _standard_source(path):
            return [], anchor
        files = local_imports(path, SLUICE_ROOT, _standard_source)
        return [(f, os.path.relpath(f, SLUICE_ROOT)) for f in files], anchor
    anchor = anchor or anchor_dir(path)
    roots = import_roots(path)
    return [(f, display_name(f, anchor, roots)) for f in local_imports(path)], anchor


def _classes(component_cls: type, executor_cls: type | None = None) -> list[type]:
    executor_cls = executor_cls or getattr(component_cls, 'executor', None)
    return [c for c in (executor_cls, component_cls, getattr(component_cls, 'driver', None)) if c is not None]


def _closure(component_cls: type, executor_cls: type | None = None) -> list[tuple[type, str, str]]:
    """(class, path, name) of each Python file the component runs (see ``_class_closure``); custom
    files are named relative to the import root of the executor's file."""
    out: list[tuple[type, str, str]] = []
    anchor: str | None = None
    for cls in _classes(component_cls, executor_cls):
        files, anchor = _class_closure(cls, anchor)
        out.extend((cls, path, name) for path, name in files)
    return out


def implementation_files(component_cls: type, executor_cls: type | None = None) -> dict[str, str]:
    """A digest of each Python file the component runs (name -> ``source_digest``)."""
    files: dict[str, str] = {}
    for cls, path, name in _closure(component_cls, executor_cls):
        digest = source_digest(path) if path else _class_source_digest(cls)
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


# -- the code in memory and the files on disk ----------------------------------------------------
# A key is computed from the files on disk, but what runs is the code in memory, which is older when
# a file was edited after the process imported it. For a custom component, ``note_loaded`` records
# when its classes are defined the (mtime, size, digest) of each file they run, and whether each of
# those files' modules already in memory holds the file's current version:
#
# - a module whose spec Sluice stamped (``_sluice_seen``) holds the version it was stamped with: the
#   stamping finder (installed with the first custom component class, or by ``load_pipeline`` and
#   ``load_module_file``) stamps every project module found for import or reload with its file's
#   (mtime, size) just before the file is read, and a module found fresh is stamped with its digest;
# - a module being executed right now (the module defining the class, or one being imported), or
#   imported since the current import of such a module began, holds the current version;
# - so does a module whose file has not changed since the process started (/proc/self/stat, or
#   psutil; elsewhere, since Sluice was imported);
# - a stamped module whose file changed since is *stale*; any other module is *unknown*.
#
# ``stale_code`` refuses a component whose files changed since its classes were defined (the classes
# hold the old code, even when a module they imported was reloaded since), whose classes were
# defined while a module they use was stale or unknown, or one of whose files' modules is stale or
# unknown now. A spurious refusal is possible (a module imported before the stamping finder was
# installed, not during the current import, from a file changed after the process started). A stale
# module goes unnoticed only if its file kept its size and mtime across an edit, if the file was
# edited during the import that defines the component (between the module's import and the class
# definition), or if the module's last reload failed part-way (its spec is new, its code partly old).
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
                if isinstance(origin, str) and origin.endswith('.py') and _library_dirs is not None \
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
        _system_dirs()  # imports what it needs before the finder sees imports
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
    for name, module in list(sys.modules.items()):
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
    ``stale_code`` compares with (see above); a standard component's class records nothing more
    than its load time (``_loaded_ns``), so importing Sluice stays cheap."""
    path = _module_file(sys.modules.get(cls.__module__))
    if path is not None and os.path.dirname(path) == SLUICE_COMPONENTS_DIR:
        return
    try:
        stamp_imports()
        paths = [p for p, _ in _class_closure(cls)[0] if p]
        cls._sluice_loaded = _memory(paths, _executing_namespaces())
    except Exception:  # noqa: BLE001 - never break a class definition: stale_code then compares load times
        cls._sluice_loaded = None


def stale_code(component_cls: type) -> list[tuple[str, str]]:
    """[(path, why)] for each file the component runs whose code in memory may be older than the
    file: the cache key describes the file, so running the node would cache the old code's results
    under the new code's key."""
    entries = _closure(component_cls)
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


def stale_code_message(node_id: str, component_cls: type) -> str | None:
    """Why a component must not run now and how to fix it, or None if its code in memory is current."""
    stale = stale_code(component_cls)
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


# -- user module files ---------------------------------------------------------------------------
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
