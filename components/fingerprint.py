"""Fingerprints for the cache key: canonical parameters, the code that runs, input files.

The cache key of an execution is a sha256 over its *parts* (``Driver.cache_key_parts``):

- ``pipeline``, ``node``, ``component``: the pipeline name, node id and component type;
- ``implementation``: the code of the component itself (``implementation_parts``): the component's
  ``version``, a digest of each Python file it runs, and the installed versions of the libraries
  its output depends on (the class attribute ``libraries``). For a *standard* component (defined in
  Sluice's ``components`` package) the files are its module and the ``components/`` modules that
  module imports, transitively, less framework plumbing (``PLUMBING``); for a *custom* component
  they are the files defining its executor, component and driver classes plus the project-local
  Python files those import, transitively (``local_imports``);
- ``parameters``: the canonical JSON of its parameters (module file paths excluded);
- ``inputs``: each input artifact's fingerprint;
- ``code``: for each module file parameter, a digest of the module file and the local files it
  imports;
- ``external``: what the driver adds (ExampleGen: the content of its input files).

Python files are digested by their syntax tree without docstrings (``source_digest``), so comments,
docstrings, blank lines and formatting do not change a key, and any edit to code that runs does.
Digests are memoised per process by (path, mtime, size). Nothing here imports the libraries whose
versions it records. An output artifact's fingerprint is derived from the key of the execution that
made it, so a change upstream changes every key downstream of it, and nothing else.
"""
from __future__ import annotations

import ast
import hashlib
import inspect
import json
import os
import sys
import textwrap
import time
from importlib import metadata as _importlib_metadata
from typing import Any, Callable, Iterable

SLUICE_COMPONENTS_DIR = os.path.dirname(os.path.abspath(__file__))
SLUICE_ROOT = os.path.dirname(SLUICE_COMPONENTS_DIR)

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


# -- Python source: normalised digests and local imports -----------------------------------------
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


def local_imports(module_file: str, base: str | None = None,
                  accept: Callable[[str], bool] | None = None) -> list[str]:
    """The module file and every Python file beside it (or in packages beside it) it imports,
    directly or indirectly: ``import a.b`` (a/__init__.py, a/b.py), ``from a import f`` (a.py or
    a/__init__.py, and a/f.py if f is a module), relative imports, and imports inside functions.
    Absolute imports resolve against ``base`` (default: the module file's directory); ``accept``
    limits which found files are included and followed. Files that do not parse are included but
    not followed."""
    module_file = os.path.abspath(module_file)
    base = os.path.dirname(module_file) if base is None else base
    found: list[str] = []
    seen = {module_file}
    queue = [module_file]
    while queue:
        path = queue.pop()
        found.append(path)
        try:
            _, imports = _analyse(path)
        except OSError:
            continue
        here = os.path.dirname(path)
        for spec in imports:
            for target in _targets(spec, base, here):
                target = os.path.abspath(target)
                if target not in seen and (accept is None or accept(target)):
                    seen.add(target)
                    queue.append(target)
    return sorted(found)


def _targets(spec: _Import, base: str, here: str) -> list[str]:
    if spec[0] == 'import':
        return _resolve(base, list(spec[1]))
    _, level, parts, names = spec
    root = base
    if level:
        root = here
        for _ in range(level - 1):
            root = os.path.dirname(root)
    out = _resolve(root, list(parts))
    for name in names:  # `from pkg import submodule`
        out.extend(_resolve(root, [*parts, name], only_last=True))
    return out


def _resolve(root: str, parts: list[str], only_last: bool = False) -> list[str]:
    """Files under ``root`` that importing the dotted ``parts`` executes (packages' __init__.py
    files, then the module); directories without __init__.py are namespace packages."""
    if not parts:
        init = os.path.join(root, '__init__.py')
        return [init] if os.path.isfile(init) else []
    out = []
    d = root
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        package = os.path.join(d, part)
        init = os.path.join(package, '__init__.py')
        if os.path.isfile(init):
            if not only_last or last:
                out.append(init)
            d = package
            continue
        module = package + '.py'
        if os.path.isfile(module):
            if not only_last or last:
                out.append(module)
            break
        if not last and os.path.isdir(package):
            d = package
            continue
        break
    return out


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
    for value in vars(cls).values():  # its methods know where they were compiled
        func = getattr(value, '__func__', value)
        try:
            func = inspect.unwrap(func)
        except ValueError:
            continue
        code = getattr(func, '__code__', None)
        if code is not None and getattr(func, '__qualname__', '').startswith(cls.__qualname__ + '.') \
                and os.path.isfile(code.co_filename):
            return os.path.abspath(code.co_filename)
    path = getattr(sys.modules.get(cls.__module__), '__file__', None)
    if path and path.endswith('.py') and os.path.isfile(path):
        return os.path.abspath(path)
    return None


def _class_source_digest(cls: type) -> str:
    """For a class without a file: its source (or its methods' sources) as the interpreter kept them."""
    try:
        sources = [inspect.getsource(cls)]
    except (OSError, TypeError):
        sources = []
        for name, value in sorted(vars(cls).items()):
            func = getattr(value, '__func__', value)
            if inspect.isfunction(func):
                try:
                    sources.append(inspect.getsource(func))
                except (OSError, TypeError):
                    sources.append(f'{name}:{func.__code__.co_code.hex()}')
    digests = []
    for source in sources or [f'{cls.__module__}.{cls.__qualname__}']:
        try:
            digests.append(_tree_digest(ast.parse(textwrap.dedent(source))))
        except SyntaxError:
            digests.append(sha256(source))
    return sha256(*digests)


def is_standard(path: str) -> bool:
    """Whether a file is one of Sluice's own components/ modules."""
    return os.path.realpath(os.path.dirname(path)) == os.path.realpath(SLUICE_COMPONENTS_DIR)


def _standard_source(path: str) -> bool:
    return is_standard(path) and os.path.basename(path) not in PLUMBING


def _closure(component_cls: type, executor_cls: type | None = None) -> list[tuple[type | None, str, str]]:
    """(class, path, name) of each Python file the component runs; path '' for a class without a
    file. Standard files are named relative to Sluice's root (``components/trainer.py``), custom ones
    relative to the directory of the executor's file."""
    executor_cls = executor_cls or getattr(component_cls, 'executor', None)
    classes = [c for c in (executor_cls, component_cls, getattr(component_cls, 'driver', None)) if c is not None]
    out: list[tuple[type | None, str, str]] = []
    anchor: str | None = None
    for cls in classes:
        path = class_file(cls)
        if path is None:
            out.append((cls, '', f'<{cls.__module__}.{cls.__qualname__}>'))
            continue
        if is_standard(path):
            if not _standard_source(path):
                continue
            out.extend((cls, f, os.path.relpath(f, SLUICE_ROOT))
                       for f in local_imports(path, SLUICE_ROOT, _standard_source))
        else:
            anchor = anchor or os.path.dirname(path)
            out.extend((cls, f, os.path.relpath(f, anchor)) for f in local_imports(path))
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


def changed_since_loaded(component_cls: type) -> list[str]:
    """Files the component runs that were modified after its classes were loaded into this process:
    the code in memory is then older than the file, and the file's digest would not describe it.
    Classes record when they were loaded (``_loaded_ns``, set by Component and Executor)."""
    stale = []
    for cls, path, _ in _closure(component_cls):
        loaded = getattr(cls, '_loaded_ns', None)
        if path and loaded is not None and os.stat(path).st_mtime_ns > loaded:
            stale.append(path)
    return sorted(set(stale))


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


# -- user module files ---------------------------------------------------------------------------
def code_parts(module_file: str) -> Any:
    """What a module file parameter contributes to the cache key: ``{'file': its name, 'files':
    {name relative to its directory: source_digest}}`` for it and the local files it imports, or
    'missing:<path>' if it is absent (so that the executor, not the driver, reports the missing file
    on a FAILED execution)."""
    if not os.path.isfile(module_file):
        return f'missing:{module_file}'
    module_file = os.path.abspath(module_file)
    root = os.path.dirname(module_file)
    return {'file': os.path.basename(module_file),
            'files': {os.path.relpath(f, root): source_digest(f) for f in local_imports(module_file)}}


def code_fingerprint(module_file: str) -> str:
    """One digest of ``code_parts`` (or 'missing:<path>')."""
    parts = code_parts(module_file)
    return parts if isinstance(parts, str) else sha256(canonical_json(parts))
