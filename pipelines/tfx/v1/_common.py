"""What every part of the TFX compatibility layer shares: the error for what is not offered, and a
module ``__getattr__`` that names the TFX attribute asked for and the Sluice way to do the same."""
from __future__ import annotations

import difflib
from typing import Any, Callable

from sluice.components.component import WiringError


class NotOffered(ImportError, WiringError):
    """A part of TFX's API that Sluice does not offer. Raised when the name is imported or reached
    (an ImportError, so ``from sluice.tfx.v1.components import Tuner`` fails with this message) or
    when a component or pipeline is constructed with an argument Sluice cannot honour (a
    WiringError/TypeError, like every other wiring mistake). The message names what and the Sluice way."""
    retryable = False


def not_offered(what: str, sluice_way: str) -> NotOffered:
    return NotOffered(f'{what} is not offered by Sluice: {sluice_way}')


def module_getattr(module: str, offered: Callable[[], list[str]], missing: dict[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__``: TFX names listed in ``missing`` raise NotOffered with their Sluice
    way; any other name is an AttributeError that says what the module offers."""

    def __getattr__(name: str) -> Any:
        if name in missing:
            raise not_offered(f'{module}.{name}', missing[name])
        if name.startswith('__'):
            raise AttributeError(name)
        names = offered()
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
        hint = f" Did you mean '{close[0]}'?" if close else ''
        raise AttributeError(f"module '{module}' has no attribute '{name}'.{hint} It offers: {', '.join(names)}.")

    return __getattr__


def check_none(where: str, **given: Any) -> None:
    """Refuse TFX arguments Sluice cannot honour: each of ``given`` must be None/empty/False.
    ``given`` maps an argument name to (value, the Sluice way)."""
    for name, (value, way) in given.items():
        if value is None or value is False or (hasattr(value, '__len__') and len(value) == 0):
            continue
        raise not_offered(f'{where}({name}=...)', way)
