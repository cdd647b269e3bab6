"""Execution backends behind one protocol (see _base.Backend). Internal: use gilwise.Executor."""

from __future__ import annotations

import importlib
from typing import Any, Optional

from ._base import Backend

# name -> "module:class", imported on first use so an unused backend costs nothing
# (and a missing optional dependency only matters to the backend that needs it).
_REGISTRY: dict[str, str] = {
    "inline": "._inline:InlineBackend",
    "thread": "._thread:ThreadBackend",
    "process": "._process:ProcessBackend",
    "asyncio": "._asyncio:AsyncioBackend",
    "interpreter": "._interpreter:InterpreterBackend",
    "dask": "._dask:DaskBackend",
}


def names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def backend_class(name: str) -> type[Backend]:
    """The Backend subclass registered under ``name``; ValueError listing the valid names."""
    try:
        target = _REGISTRY[name]
    except KeyError:
        valid = ", ".join(repr(n) for n in (*_REGISTRY, "auto"))
        raise ValueError(f"unknown backend {name!r}; choose one of {valid}") from None
    module_name, _, class_name = target.partition(":")
    module = importlib.import_module(module_name, __name__)
    cls: type[Backend] = getattr(module, class_name)
    return cls


def create(name: str, max_workers: Optional[int] = None, **options: Any) -> Backend:
    """A new, started backend of the given kind."""
    return backend_class(name)(max_workers, **options)


__all__ = ["Backend", "backend_class", "create", "names"]
