"""Portal flows: one module per portal, one entry function each, registered by name."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module

from flows.base import CheckContext, Outcome

__all__ = ["get_flow", "register", "FLOW_MODULES"]

#: name -> "module:function". Imported lazily so that importing ``flows`` stays cheap.
FLOW_MODULES: dict[str, str] = {
    "imss": "flows.imss:run",
    "issste": "flows.issste:run",
}

_registry: dict[str, Callable[[CheckContext], Outcome]] = {}


def register(name: str, func: Callable[[CheckContext], Outcome]) -> None:
    """Register a flow under ``name``; a second flow with the same name is refused."""
    if name in _registry:
        raise ValueError(f"flow {name!r} is already registered")
    _registry[name] = func


def get_flow(name: str) -> Callable[[CheckContext], Outcome]:
    """The entry function of portal ``name``; unknown names are refused."""
    if name not in _registry:
        if name not in FLOW_MODULES:
            raise KeyError(f"unknown portal {name!r}; known: {', '.join(sorted(FLOW_MODULES))}")
        module, func = FLOW_MODULES[name].split(":")
        register(name, getattr(import_module(module), func))
    return _registry[name]
