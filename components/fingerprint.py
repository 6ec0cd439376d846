"""Fingerprints for the cache key: canonical parameters, user code, input files.

The cache key of an execution is a sha256 over the pipeline name, node id, component type and
implementation version, the canonical JSON of its parameters, the fingerprint of each input
artifact, and the fingerprint of its user code (a module file and the project-local Python files
it imports). An output artifact's fingerprint is derived from the key of the execution that made
it, so a change upstream changes every key downstream of it, and nothing else.
"""
from __future__ import annotations

import ast
import hashlib
import inspect
import json
import os
from typing import Any, Iterable


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


def cache_key(*, pipeline_name: str, node_id: str, component_type: str, implementation: str,
              parameters: dict[str, Any], input_fingerprints: dict[str, str],
              code_fingerprints: dict[str, str], external: dict[str, str]) -> str:
    return sha256(canonical_json({
        'pipeline': pipeline_name, 'node': node_id, 'component': component_type,
        'implementation': implementation, 'parameters': parameters, 'inputs': input_fingerprints,
        'code': code_fingerprints, 'external': external,
    }))


def output_fingerprint(key: str, output_key: str) -> str:
    return sha256(key, output_key)


def implementation_fingerprint(component_cls: type, executor_cls: type) -> str:
    """The component's declared version plus the source of its executor class."""
    try:
        source = inspect.getsource(executor_cls)
    except (OSError, TypeError):  # defined where no source is kept
        source = f'{executor_cls.__module__}.{executor_cls.__qualname__}'
    return sha256(getattr(component_cls, 'version', '1'), source)


def files_fingerprint(paths: Iterable[str], root: str | None = None) -> str:
    """A fingerprint of file contents (and their names relative to ``root``)."""
    h = hashlib.sha256()
    for path in sorted(paths):
        name = os.path.relpath(path, root) if root else os.path.basename(path)
        h.update(name.encode() + b'\0')
        with open(path, 'rb') as f:
            for block in iter(lambda: f.read(1 << 20), b''):
                h.update(block)
        h.update(b'\0')
    return h.hexdigest()


def local_imports(module_file: str) -> list[str]:
    """The module file and every Python file beside it (or in packages beside it) it imports,
    directly or indirectly. Files that do not parse are included but not followed."""
    module_file = os.path.abspath(module_file)
    base = os.path.dirname(module_file)
    found: list[str] = []
    queue = [module_file]
    while queue:
        path = queue.pop()
        if path in found:
            continue
        found.append(path)
        try:
            with open(path, encoding='utf-8') as f:
                tree = ast.parse(f.read(), filename=path)
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    queue.extend(_resolve(base, alias.name.split('.')))
            elif isinstance(node, ast.ImportFrom):
                here = os.path.dirname(path)
                if node.level:
                    start = here
                    for _ in range(node.level - 1):
                        start = os.path.dirname(start)
                    parts = node.module.split('.') if node.module else []
                    roots = [start]
                else:
                    parts = node.module.split('.') if node.module else []
                    roots = [base]
                for root in roots:
                    queue.extend(_resolve(root, parts))
                    for alias in node.names:  # `from pkg import submodule`
                        queue.extend(_resolve(root, parts + [alias.name], only_last=True))
    return sorted(found)


def _resolve(root: str, parts: list[str], only_last: bool = False) -> list[str]:
    """Files under ``root`` that importing the dotted ``parts`` executes."""
    out = []
    d = root
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        as_file = os.path.join(d, part + '.py')
        as_pkg = os.path.join(d, part, '__init__.py')
        if os.path.isfile(as_file):
            if not only_last or last:
                out.append(as_file)
            break
        if os.path.isfile(as_pkg):
            if not only_last or last:
                out.append(as_pkg)
            d = os.path.join(d, part)
            continue
        break
    if not parts and os.path.isfile(os.path.join(root, '__init__.py')):
        out.append(os.path.join(root, '__init__.py'))
    return out


def code_fingerprint(module_file: str) -> str:
    """Fingerprint of a module file and the local files it imports ('missing:...' if it is absent,
    so that the executor, not the driver, reports the missing file on a FAILED execution)."""
    if not os.path.isfile(module_file):
        return f'missing:{module_file}'
    files = local_imports(module_file)
    return files_fingerprint(files, root=os.path.dirname(os.path.abspath(module_file)))
