"""One daemon thread per Executor that runs callbacks at deadlines: task timeouts, delayed
retries, peeks at measured calls still running.

The thread runs only while a deadline is pending: it ends when none is left and starts
again at the next ``add``. A program whose Executor has nothing timed has no thread for
it, so the worker service can fork its zygote from the program later (auto deciding for
processes after calls it ran inline) instead of starting a fresh interpreter.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from typing import Any, Callable, Optional

_numbers = itertools.count()


class Timers:
    """Runs callbacks at deadlines in one thread (started on demand, ended when idle)."""

    def __init__(self) -> None:
        # (deadline, order, tag, callback); tag: what ``discard`` removes (None: nothing).
        self._heap: list[tuple[float, int, Any, Callable[[], None]]] = []
        self._cond = threading.Condition()
        self._stopped = False
        self._thread: Optional[threading.Thread] = None

    def add(self, deadline_s: float, callback: Callable[[], None], tag: Any = None) -> None:
        """Run ``callback`` in the timer thread at ``deadline_s`` (time.monotonic)."""
        with self._cond:
            if self._stopped:
                return
            heapq.heappush(self._heap, (deadline_s, next(_numbers), tag, callback))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="gilwise-timers", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def discard(self, tag: Any) -> None:
        """Forget the callbacks added with ``tag`` that have not run (the thread ends if
        nothing else is pending)."""
        with self._cond:
            kept = [entry for entry in self._heap if entry[2] != tag]
            if len(kept) != len(self._heap):
                heapq.heapify(kept)
                self._heap = kept
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and self._heap and self._heap[0][0] > time.monotonic():
                    self._cond.wait(self._heap[0][0] - time.monotonic())
                if self._stopped or not self._heap:
                    # Nothing left to wait for: end (``add`` starts a new thread).
                    if self._thread is threading.current_thread():
                        self._thread = None
                    return
                _, _, _, callback = heapq.heappop(self._heap)
            callback()

    def stop(self, wait: bool) -> None:
        with self._cond:
            self._stopped = True
            self._heap.clear()
            thread = self._thread
            self._cond.notify()
        if wait and thread is not None and threading.current_thread() is not thread:
            thread.join()
