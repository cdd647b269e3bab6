"""Facts about a callable that the Executor, the chooser and the backends all need.

Kept apart from backends._asyncio so that asking "is this a coroutine function?" does not
import asyncio (tens of milliseconds) for programs that never use it.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable


def is_coroutine_function(fn: Callable[..., Any]) -> bool:
    """True for ``async def`` functions, partials of them and objects with ``async __call__``."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - an instance with async __call__
    return call is not None and not inspect.isfunction(fn) and inspect.iscoroutinefunction(call)
