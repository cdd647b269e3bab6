"""The callable a stage hands to its backend: runs the user's function once and times it.

Module level and small so a process backend can pickle it (a chunk of items is sent with
the backend's ``submit_batch``, gilwise._chunks) (it pickles the user's function
with it). It returns ``(value, busy_s)``; the stage turns the value into output items, so a
filter sends back a bool rather than the item it already has.
"""

from __future__ import annotations

import time
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

    def __repr__(self) -> str:
        return repr(self.fn)  # messages about the task name the user's function

    def __call__(self, item: Any) -> tuple[Any, float]:
        start = time.perf_counter()
        value = self.fn(item)
        if self.kind == "filter":
            value = bool(value)
        elif self.kind == "flat_map":
            # A generator cannot cross a process boundary, and it must run inside the worker.
            value = list(value)
        return value, time.perf_counter() - start


def outputs_of(kind: str, item: Any, value: Any) -> tuple[Any, ...] | list[Any]:
    """The items a stage emits for ``item`` given its call's value."""
    if kind == "map":
        return (value,)
    if kind == "filter":
        return (item,) if value else ()
    return value  # type: ignore[no-any-return]
