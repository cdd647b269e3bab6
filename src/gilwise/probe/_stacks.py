"""In-process stacks: each thread's Python call stack, sampled at a modest rate.

The fallback for when the sampler child cannot read stacks from our memory (see _frames). A
daemon thread snapshots ``sys._current_frames()``; each snapshot takes the GIL, and on a
GIL-bound program forces two hand-offs (~2.5% slower at 100 Hz on 2 cores), so the rate stays
low. The thread-state samples of a thread are attributed to its latest stack.

A stack is a tuple of FunctionKeys, root first, gilwise's own frames included (the build
decides what to show), at most MAX_STACK_DEPTH deep: the same form the remote reader gives.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Optional

from gilwise.probe._frames import MAX_STACK_DEPTH, TRUNCATED, FunctionKey

_THREAD_NAME = "gilwise-stacks"

Stack = tuple[FunctionKey, ...]


@dataclass
class FrameSeries:
    """Run-length encoded call stacks of one thread: ``stacks[i]`` from ``times[i]`` on."""

    times: list[float] = field(default_factory=list)
    stacks: list[Stack] = field(default_factory=list)


# gilwise's package directory: src/gilwise/ (this file is src/gilwise/probe/_stacks.py).
GILWISE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _stack_of(frame) -> Stack:
    keys: list[FunctionKey] = []
    while frame is not None and len(keys) < MAX_STACK_DEPTH:
        code = frame.f_code
        keys.append(
            (getattr(code, "co_qualname", code.co_name), code.co_filename, code.co_firstlineno)
        )
        frame = frame.f_back
    if frame is not None:
        keys.append(TRUNCATED)
    keys.reverse()
    return tuple(keys)


class StackSampler:
    """Snapshots every thread's call stack ``rate_hz`` times a second until ``stop``.

    ``native_id`` is the sampler thread's own id (exclude it from reports). Thread safe to
    start/stop from one controlling thread; results are read after ``stop``.
    """

    def __init__(self, rate_hz: float) -> None:
        if rate_hz <= 0:
            raise ValueError(f"stack rate_hz must be positive, got {rate_hz}")
        self.period_s = 1.0 / rate_hz
        self.series: dict[int, FrameSeries] = {}  # by native thread id
        self.native_id: Optional[int] = None
        self.snapshots = 0
        self._stop = threading.Event()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name=_THREAD_NAME, daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._started.wait(timeout=10):
            raise RuntimeError("the gilwise stack sampler thread did not start within 10 s")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.snapshot()

    def _run(self) -> None:
        self.native_id = threading.get_native_id()
        self.snapshot()
        self._started.set()
        while not self._stop.wait(self.period_s):
            self.snapshot()

    def snapshot(self) -> None:
        """Record every thread's stack now (also called once more at stop)."""
        now = time.monotonic()
        ident_to_native = {}
        for thread in threading.enumerate():
            native = getattr(thread, "native_id", None)
            if native is not None and thread.ident is not None:
                ident_to_native[thread.ident] = native
        frames = sys._current_frames()
        try:
            for ident, frame in frames.items():
                native = ident_to_native.get(ident)
                if native is None or native == self.native_id:
                    continue
                stack = _stack_of(frame)
                series = self.series.get(native)
                if series is None:
                    series = self.series[native] = FrameSeries()
                if not series.stacks or series.stacks[-1] != stack:
                    series.times.append(now)
                    series.stacks.append(stack)
        finally:
            del frames
        self.snapshots += 1
