"""What the Executor queues and dispatches: tasks, lanes (backend instances), plans.

A _Task is one unit handed to a backend: a call, or a chunk of calls of one function
(``items`` > 1; its ``args`` are ``(fn, items, spread)`` for ``_chunks``). A _Lane is one
backend instance and how many of its workers the Executor keeps busy. A _Plan is one
function's queue, the lane it runs on, its Chooser (what was measured and decided) and,
under auto, the measuring driver over that Chooser (gilwise._measuring).
"""

from __future__ import annotations

from collections import deque
from concurrent import futures as cf
from typing import Any, Callable, Optional

from .. import backends as _backends
from .._chooser import Chooser
from .._measuring import Measuring


class Task:
    """One unit handed to a backend: a call, or a chunk of calls (``items`` > 1)."""

    __slots__ = (
        "args",
        "fn",
        "future",
        "handed_at_s",
        "items",
        "key",
        "kwargs",
        "started",
        "tries",
    )

    def __init__(
        self,
        future: cf.Future,
        fn: Callable[..., Any],
        args: tuple,
        kwargs: dict,
        key: Any,
        items: int = 1,
    ) -> None:
        self.future = future
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.key = key
        self.items = items
        self.tries = 0  # handed to a backend this many times
        self.started = False
        self.handed_at_s = 0.0


class Lane:
    """One backend instance and how many of its workers the Executor keeps busy."""

    __slots__ = ("backend", "capacity", "in_flight", "name")

    def __init__(self, name: str, backend: _backends.Backend) -> None:
        self.name = name
        self.backend = backend
        self.capacity = backend.max_workers
        self.in_flight = 0

    def warm_up(self) -> None:
        """Start the backend's workers now (a process pool: see Backend.warm_up)."""
        self.backend.warm_up()


class Plan:
    """Per function: its queue, its lane once decided, its Chooser, map windows waiting."""

    __slots__ = ("chooser", "key", "lane", "listeners", "measuring", "queue")
    measuring: Measuring  # auto's driver of the Chooser, set by the Executor at once

    def __init__(self, key: Any, chooser: Chooser) -> None:
        self.key = key
        self.chooser = chooser
        self.queue: deque[Task] = deque()
        self.lane: Optional[Lane] = None
        self.listeners: list[Callable[[], None]] = []  # map windows waiting for a decision
