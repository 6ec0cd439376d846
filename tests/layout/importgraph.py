"""The import graph of Sluice's source, read with ``ast`` (nothing is imported).

Three floors, by folder: ``metadata`` (sluice.metadata) < ``components`` (sluice.components) <
``pipelines`` (the rest of sluice). A module may import its own floor or a lower one. Every import
counts, wherever it is written: module level, inside a function, under ``if TYPE_CHECKING``.
"""
from __future__ import annotations

import ast
import os
from dataclasses import dataclass, field

FLOORS = {'metadata': 0, 'components': 1, 'pipelines': 2}
PREFIX = {'metadata': 'sluice.metadata', 'components': 'sluice.components', 'pipelines': 'sluice'}


@dataclass
class Graph:
    modules: dict[str, str] = field(default_factory=dict)        # module name -> file
    floor: dict[str, int] = field(default_factory=dict)
    edges: dict[str, dict[str, int]] = field(default_factory=dict)  # module -> {imported module: line}


def module_name(folder: str, rel: str) -> str:
    parts = rel[:-3].split(os.sep)
    if parts[-1] == '__init__':
        parts = parts[:-1]
    return '.'.join([PREFIX[folder], *parts])


def build(root: str, folders: dict[str, int] = FLOORS) -> Graph:
    graph = Graph()
    for folder, floor in folders.items():
        base = os.path.join(root, folder)
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if d != '__pycache__']
            for name in filenames:
                if name.endswith('.py'):
                    path = os.path.join(dirpath, name)
                    mod = module_name(folder, os.path.relpath(path, base))
                    graph.modules[mod] = path
                    graph.floor[mod] = floor
    for mod, path in graph.modules.items():
        graph.edges[mod] = _imports(mod, path, graph.modules)
    return graph


def _imports(mod: str, path: str, known: dict[str, str]) -> dict[str, int]:
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    is_package = path.endswith('__init__.py')
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                anchor = mod.split('.') if is_package else mod.split('.')[:-1]
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = '.'.join(anchor + ([base] if base else []))
            # `from pkg import name`: the submodule pkg.name if there is one, else pkg itself
            names = [f'{base}.{a.name}' if f'{base}.{a.name}' in known else base for a in node.names]
        else:
            continue
        for name in names:
            target = _owner(name, known)
            if target is not None and target != mod:
                found.setdefault(target, node.lineno)
    return found


def _owner(name: str, known: dict[str, str]) -> str | None:
    """The longest known module that ``name`` is or is inside (``sluice.x.y.attr`` -> ``sluice.x.y``)."""
    parts = name.split('.')
    for i in range(len(parts), 0, -1):
        candidate = '.'.join(parts[:i])
        if candidate in known:
            return candidate
    return None


def upward_imports(graph: Graph) -> list[str]:
    out = []
    for mod, targets in sorted(graph.edges.items()):
        for target, line in sorted(targets.items()):
            if graph.floor[target] > graph.floor[mod]:
                out.append(f'{graph.modules[mod]}:{line}: {mod} imports {target}, a higher floor')
    return out


def cycles(graph: Graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # recursion depth is bounded by the module count (~100)
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph.modules):
        if v not in index:
            visit(v)
    return found


def describe_cycle(graph: Graph, component: list[str]) -> str:
    members = set(component)
    lines = [f'{m} -> {t} ({graph.modules[m]}:{line})'
             for m in component for t, line in sorted(graph.edges[m].items()) if t in members]
    return 'import cycle among ' + ', '.join(component) + ':\n    ' + '\n    '.join(lines)
