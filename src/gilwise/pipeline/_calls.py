"""The callable a stage hands to its backend: runs the user's function once and times it.

Module level and small so a process backend can pickle it (it pickles the user's function
with it). It returns ``(value, busy_s)``; the stage turns the value into output items, so a
filter sends back a bool rather than the item it already has.
"""

from __future__ import annotations

import time
import traceback
from typing import Any, Callable

STAGE_KINDS = ("map", "filter", "flat_map")


class StageCall:
    """``fn`` for one stage kind; calling it with an item returns ``(value, busy_s)``."""

    def __init__(self, fn: Callable[[Any], Any], kind: str) -> None:
        self.fn = fn
        self.kind = kind
        # Messages about a task (a crashed worker, a timeout) then name the user's function.
        self.__name__ = getattr(fn, "__name__", kind)
        self.__qualname__ = getattr(fn, "__qualname__", self.__name__)

    def __call__(self, item: Any) -> tuple[Any, float]:
        start = time.perf_counter()
        value = self.fn(item)
        if self.kind == "filter":
            value = bool(value)
        elif self.kind == "flat_map":
            # A generator cannot cross a process boundary, and it must run inside the worker.
            value = list(value)
        return value, time.perf_counter() - start


class ChunkCall:
    """Runs a StageCall on each item of a list in one task, so one round trip to a worker
    process carries many items. Returns one outcome per item: ``(True, (value, busy_s))``
    or ``(False, exception, traceback_text)``; a failing item does not fail the others."""

    def __init__(self, call: StageCall) -> None:
        self.call = call
        self.__name__ = call.__name__
        self.__qualname__ = call.__qualname__

    def __call__(self, items: list[Any]) -> list[tuple[Any, ...]]:
        outcomes: list[tuple[Any, ...]] = []
        for item in items:
            try:
                outcomes.append((True, self.call(item)))
            except Exception as exc:
                outcomes.append((False, exc, traceback.format_exc()))
        return outcomes


def outputs_of(kind: str, item: Any, value: Any) -> tuple[Any, ...] | list[Any]:
    """The items a stage emits for ``item`` given its call's value."""
    if kind == "map":
        return (value,)
    if kind == "filter":
        return (item,) if value else ()
    return value  # type: ignore[no-any-return]
