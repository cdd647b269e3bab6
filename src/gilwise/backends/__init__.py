"""Execution backends behind one protocol (see _base.Backend). Internal: use gilwise.Executor."""

from __future__ import annotations

import importlib
import threading
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


def prepare_process_workers(
    backend: str, options: dict, *, scale_out: Any = None, workers: int = 1
) -> bool:
    """While this program has one thread, let the worker service fork its zygote from it
    (milliseconds, every import done) and start ``workers`` workers, if ``backend`` (an
    Executor's or a pipeline stage's, with its ``options``) may run on forked processes:
    once threads exist (measuring threads, a pipeline's stages) the service would have to
    start a fresh interpreter. Not for auto where processes cannot help (one core, no GIL,
    Dask's ``scale_out``). True when the service was asked; imports nothing otherwise."""
    if backend not in ("auto", "process") or options.get("start_method") == "spawn":
        return False
    if backend == "auto":
        from .._runtime import current

        facts = current()
        if scale_out is not None or facts.cores < 2 or not facts.gil_enabled:
            return False
    if threading.active_count() > 1:
        return False
    try:
        from ._process import prepare_workers
    except ImportError:  # the process backend cannot run here; auto falls back to threads
        return False
    try:
        prepare_workers(workers)
    except OSError:  # e.g. no fork allowed: workers start the slow way when needed
        return False
    return True


def create(name: str, max_workers: Optional[int] = None, **options: Any) -> Backend:
    """A new, started backend of the given kind."""
    return backend_class(name)(max_workers, **options)


__all__ = ["Backend", "backend_class", "create", "names", "prepare_process_workers"]
