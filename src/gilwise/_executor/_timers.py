"""One daemon thread per Executor that runs callbacks at deadlines: task timeouts, delayed
retries, peeks at measured calls still running."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from typing import Callable

_numbers = itertools.count()


class Timers:
    """One thread that runs callbacks at deadlines: task timeouts, peeks at measured calls."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="gilwise-timers", daemon=True)
        self._thread.start()

    def add(self, deadline_s: float, callback: Callable[[], None]) -> None:
        """Run ``callback`` in the timer thread at ``deadline_s`` (time.monotonic)."""
        with self._cond:
            heapq.heappush(self._heap, (deadline_s, next(_numbers), callback))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._heap or self._heap[0][0] > time.monotonic()):
                    wait_s = None if not self._heap else self._heap[0][0] - time.monotonic()
                    self._cond.wait(wait_s)
                if self._stopped:
                    return
                _, _, callback = heapq.heappop(self._heap)
            callback()

    def stop(self, wait: bool) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        if wait and threading.current_thread() is not self._thread:
            self._thread.join()
