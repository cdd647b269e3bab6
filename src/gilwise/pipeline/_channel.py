"""A bounded queue between two pipeline threads that gives up when the run stops.

Every blocking wait in the pipeline goes through here, waking every ``POLL_S`` to look at the
run's stop event, so an error, a ``break`` in the consumer or Ctrl-C ends every thread
promptly. A full channel is what makes a fast stage wait for a slow one (backpressure).
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Optional

POLL_S = 0.05


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


END = _Marker("end of stream")
STOPPED = _Marker("run stopped")
TIMEOUT = _Marker("timed out")


class Failed:
    """Sent downstream in place of END when a stage (or the source) failed under "raise":
    each later stage finishes what it holds, then passes it on; the consumer raises ``error``."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class Channel:
    """A bounded FIFO of items followed by END; ``get``/``put`` return early once stopped."""

    def __init__(self, maxsize: int, stop: threading.Event) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize)
        self._stop = stop
        self._cut = threading.Event()

    def cut(self) -> None:
        """Stop this channel only: the stages feeding it stop; the ones after it carry on."""
        self._cut.set()

    def stopped(self) -> bool:
        return self._stop.is_set() or self._cut.is_set()

    def put(self, value: Any) -> bool:
        """Block until there is room; False if the run stopped first."""
        while not self.stopped():
            try:
                self._queue.put(value, timeout=POLL_S)
            except queue.Full:
                continue
            return True
        return False

    def get(self, timeout_s: Optional[float] = None) -> Any:
        """The next value (an item or END), STOPPED once the run stops, TIMEOUT after timeout_s."""
        deadline = None if timeout_s is None else time.perf_counter() + timeout_s
        while not self.stopped():
            wait = POLL_S
            if deadline is not None:
                wait = min(wait, deadline - time.perf_counter())
                if wait <= 0:
                    return TIMEOUT
            try:
                return self._queue.get(timeout=wait)
            except queue.Empty:
                continue
        return STOPPED

    def get_nowait(self) -> Any:
        """The next value, or TIMEOUT if none is waiting (STOPPED once the run stops)."""
        if self.stopped():
            return STOPPED
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            return TIMEOUT

    def qsize(self) -> int:
        return self._queue.qsize()
