"""Wall-clock and CPU time of a region of the demo's own process (and its reaped children)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Span:
    """What one timed region cost: wall seconds, and CPU seconds of this process."""

    wall_s: float
    cpu_s: float
    #: CPU of child processes reaped during the region (os.times children_*), 0 if none.
    children_cpu_s: float


class Stopwatch:
    """``with Stopwatch() as watch: ...`` then ``watch.span``; not reusable, not thread-safe."""

    def __init__(self) -> None:
        self._wall_start = 0.0
        self._times_start: Optional[os.times_result] = None
        self.span: Optional[Span] = None

    def __enter__(self) -> Stopwatch:
        self._times_start = os.times()
        self._wall_start = time.perf_counter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        wall_s = time.perf_counter() - self._wall_start
        end = os.times()
        start = self._times_start
        assert start is not None
        self.span = Span(
            wall_s=wall_s,
            cpu_s=(end.user - start.user) + (end.system - start.system),
            children_cpu_s=(end.children_user - start.children_user)
            + (end.children_system - start.children_system),
        )

    @property
    def result(self) -> Span:
        """The measured span; RuntimeError if the region has not finished."""
        if self.span is None:
            raise RuntimeError("the Stopwatch region has not finished yet")
        return self.span
