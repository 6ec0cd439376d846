"""Sizes a reader can hold: a module of at most MODULE_LINES lines, a function of at most
FUNCTION_LINES, unless a comment starting ``# long:`` on the line of its ``def`` (or the line above)
says why it is one piece."""
from __future__ import annotations

import ast
import os

MODULE_LINES = 500
FUNCTION_LINES = 80
FOLDERS = ('components', 'metadata', 'pipelines')


def source_files(root: str) -> list[str]:
    out = []
    for folder in FOLDERS:
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, folder)):
            dirnames[:] = [d for d in dirnames if d != '__pycache__']
            out.extend(os.path.join(dirpath, n) for n in filenames if n.endswith('.py'))
    return sorted(out)


def oversized(root: str) -> list[str]:
    found = []
    for path in source_files(root):
        with open(path) as f:
            text = f.read()
        lines = text.splitlines()
        rel = os.path.relpath(path, root)
        if len(lines) > MODULE_LINES:
            found.append(f'{rel}: {len(lines)} lines (at most {MODULE_LINES})')
        for node in ast.walk(ast.parse(text, path)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                length = node.end_lineno - first + 1
                if length > FUNCTION_LINES and not _explained(lines, node.lineno):
                    found.append(f'{rel}:{node.lineno}: {node.name}() is {length} lines (at most '
                                 f'{FUNCTION_LINES}, or a "# long: why" comment on its def line)')
    return found


def _explained(lines: list[str], lineno: int) -> bool:
    return any('# long:' in lines[i] for i in (lineno - 2, lineno - 1) if 0 <= i < len(lines))
