"""A Python file as the key sees it: its syntax tree without docstrings (``source_digest``), so that
comments, docstrings, blank lines and formatting do not change a key, and the imports it holds
(``analyse``), which ``imports`` follows. Both are memoised per process by (mtime, size, inode), and
by the file's bytes (a file changed in the last two seconds is read again, but parsed only if its bytes
are new)."""
from __future__ import annotations

import ast
import hashlib
import os
import time

from sluice.components.fingerprint.key import sha256

ImportSpec = tuple  # ('import', parts) or ('from', level, parts, names)
_analysed: dict[str, tuple[tuple[int, int, int], str, tuple[ImportSpec, ...]]] = {}
_parsed: dict[bytes, tuple[str, tuple[ImportSpec, ...]]] = {}  # by the bytes' SHA-256: what parsing gave
RACY_NS = 2_000_000_000  # a file changed this recently may change again within its mtime's resolution


def _strip_docstrings(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:]


def tree_digest(tree: ast.AST) -> str:
    _strip_docstrings(tree)
    return sha256('python-ast', ast.dump(tree, include_attributes=False))


def _import_specs(tree: ast.AST) -> tuple[ImportSpec, ...]:
    specs: list[ImportSpec] = []
    for node in ast.walk(tree):  # also imports inside functions (e.g. the Trainer's onnx_export)
        if isinstance(node, ast.Import):
            specs.extend(('import', tuple(alias.name.split('.'))) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = tuple(node.module.split('.')) if node.module else ()
            specs.append(('from', node.level, parts, tuple(a.name for a in node.names if a.name != '*')))
    return tuple(specs)


def analyse(path: str) -> tuple[str, tuple[ImportSpec, ...]]:
    """(normalised digest, imports) of a file, memoised by (mtime, size, inode)."""
    st = os.stat(path)
    stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
    hit = _analysed.get(path)
    if hit is not None and hit[0] == stamp:
        return hit[1], hit[2]
    with open(path, 'rb') as f:
        data = f.read()
    content = hashlib.sha256(data).digest()
    known = _parsed.get(content)  # the same bytes parsed before (a file written just now, checked again)
    if known is not None:
        digest, imports = known
    else:
        try:
            tree = ast.parse(data, filename=path)
        except (SyntaxError, ValueError, UnicodeDecodeError):  # not Python: its bytes, nothing to follow
            digest, imports = sha256('raw', data), ()
        else:
            imports = _import_specs(tree)
            digest = tree_digest(tree)
        if len(_parsed) >= 20_000:  # a long-lived process (sluice watch) that saw many versions of files
            _parsed.clear()
        _parsed[content] = digest, imports
    if time.time_ns() - st.st_mtime_ns > RACY_NS:  # else an edit within the same tick could be missed
        _analysed[path] = (stamp, digest, imports)
    return digest, imports


def source_digest(path: str) -> str:
    """Digest of a Python file that ignores comments, docstrings, blank lines and formatting: its
    syntax tree without docstrings. A file that does not parse is digested byte for byte."""
    return analyse(os.path.abspath(path))[0]
