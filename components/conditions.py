"""Conditional nodes: components declared inside ``with Cond(predicate):`` run only when the predicate
holds at run time, as TFX's ``tfx.dsl.Cond`` does::

    with Cond(validator.outputs['blessing'].future()[0].custom_property('blessed') == 1):
        pusher = Pusher(model=trainer.outputs['model'], push_destination='serving')

A predicate compares a property of an upstream artifact with a constant: ``channel.future()[0]``
is the channel's artifact in this run; ``.custom_property(name)``, ``.property(name)`` or ``.value``
(a value artifact's value) is what is compared, with ``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``.
Nested ``Cond`` blocks all have to hold. A conditional node waits for the predicate's producer.

When the predicate is false, the node is recorded in ML-Metadata as skipped (a COMPLETE execution
without outputs whose ``skipped`` property says why), and so is every node that takes its outputs:
the run still completes, ``sluice resume`` keeps the skip, and the next run decides again.
"""
from __future__ import annotations

import builtins
import operator
from typing import Any, Callable

# The predicates of the ``with Cond(...)`` blocks open while components are constructed.
_OPEN: list[Predicate] = []

_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    '==': operator.eq, '!=': operator.ne, '<': operator.lt, '<=': operator.le, '>': operator.gt, '>=': operator.ge}


class NodeSkipped(Exception):
    """Raised while a node's inputs are resolved: its condition is false, or an input comes from a
    node that was skipped. Not a failure: the launch records the skip."""


class ArtifactFuture:
    """``channel.future()``: the channel's artifacts as they will be at run time."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel

    def __getitem__(self, index: int) -> ArtifactValue:
        if index != 0:
            raise IndexError(f'{self.channel!r}.future()[{index}]: a Sluice channel holds one artifact per run; use [0].')
        return ArtifactValue(self.channel, 'artifact', '')

    def __repr__(self) -> str:
        return f'{self.channel!r}.future()'


class ArtifactValue:
    """What a predicate reads of the artifact: ``custom_property(name)``, ``property(name)``, ``value``."""

    def __init__(self, channel: Any, kind: str, name: str) -> None:
        self.channel, self.kind, self.name = channel, kind, name

    def custom_property(self, name: str) -> ArtifactValue:
        return ArtifactValue(self.channel, 'custom_property', name)

    def property(self, name: str) -> ArtifactValue:  # noqa: A003 (TFX's name)
        return ArtifactValue(self.channel, 'property', name)

    @builtins.property  # (``property`` is the method above, in this class's body)
    def value(self) -> ArtifactValue:
        return ArtifactValue(self.channel, 'value', '')

    def read(self, artifact: Any) -> Any:
        if self.kind == 'value':
            return artifact.value
        if self.kind == 'property':
            return artifact.properties.get(self.name)
        if self.kind == 'custom_property':  # Sluice declares some of TFX's custom properties (ModelBlessing's blessed)
            return artifact.get(self.name)
        raise TypeError(f'{self!r} is an artifact, not a value: compare .custom_property(name), .property(name) or '
                        '.value')

    def _compare(self, op: str, other: Any) -> Predicate:
        if isinstance(other, ArtifactValue):
            raise TypeError(f'{self!r} {op} {other!r}: a predicate compares an artifact\'s value with a constant.')
        return Predicate(self, op, other)

    def __eq__(self, other: Any) -> Predicate:  # type: ignore[override]
        return self._compare('==', other)

    def __ne__(self, other: Any) -> Predicate:  # type: ignore[override]
        return self._compare('!=', other)

    def __lt__(self, other: Any) -> Predicate:
        return self._compare('<', other)

    def __le__(self, other: Any) -> Predicate:
        return self._compare('<=', other)

    def __gt__(self, other: Any) -> Predicate:
        return self._compare('>', other)

    def __ge__(self, other: Any) -> Predicate:
        return self._compare('>=', other)

    __hash__ = None  # type: ignore[assignment]

    def __bool__(self) -> bool:
        raise TypeError(f'{self!r} has no truth value before the run: compare it, e.g. `{self!r} == 1`.')

    def __repr__(self) -> str:
        read = {'artifact': '', 'value': '.value'}.get(self.kind, f".{self.kind}({self.name!r})")
        return f'{self.channel!r}.future()[0]{read}'


class Predicate:
    """``value <op> constant``, evaluated on the channel's artifact when the node is about to run."""

    def __init__(self, left: ArtifactValue, op: str, right: Any) -> None:
        self.left, self.op, self.right = left, op, right

    @property
    def channel(self) -> Any:
        return self.left.channel

    def holds(self, artifact: Any) -> tuple[bool, str]:
        """Whether it holds for ``artifact``, and the comparison with the value read."""
        value = self.left.read(artifact)
        try:
            held = value is not None and bool(_OPERATORS[self.op](value, self.right))
        except TypeError:
            held = False
        return held, f'{self!r} is {"true" if held else "false"} ({value!r} {self.op} {self.right!r})'

    def __bool__(self) -> bool:
        raise TypeError(f'{self!r} is decided at run time; use it in `with Cond(...)`, not in an if.')

    def __repr__(self) -> str:
        return f'{self.left!r} {self.op} {self.right!r}'


class Cond:
    """``with Cond(predicate):`` the components constructed inside run only when it holds."""

    def __init__(self, predicate: Predicate) -> None:
        if not isinstance(predicate, Predicate):
            raise TypeError(f'Cond() takes a predicate such as channel.future()[0].custom_property("blessed") == 1; '
                            f'got {type(predicate).__name__} {predicate!r}.')
        self.predicate = predicate

    def __enter__(self) -> Cond:
        _OPEN.append(self.predicate)
        return self

    def __exit__(self, *exc: Any) -> None:
        _OPEN.remove(self.predicate)


def open_conditions() -> list[Predicate]:
    """The predicates a component constructed now is conditional on."""
    return list(_OPEN)
