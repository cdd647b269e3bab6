"""Run a region several times and keep the fastest run, as ``timeit`` does.

On a shared machine a background process can steal a core for a moment; the fastest of a few
runs is the best estimate of what the work itself costs. The GIL share, when asked for, comes
from one more run under the probe, outside the timings: the probe's sampler process uses CPU
that would otherwise distort the speedups on a 2-core machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from ._gil import gil_share
from ._timing import Stopwatch

DEFAULT_REPEATS = 3


@dataclass(frozen=True)
class Measurement:
    """The fastest run: wall and CPU seconds, and the GIL share if it was measured."""

    wall_s: float
    cpu_s: float
    gil_held_fraction: Optional[float]


def fastest_of(
    work: Callable[[], Optional[float]], *, repeats: int, measure_gil: bool
) -> Measurement:
    """Run ``work`` ``repeats`` times (plus once under the GIL probe if ``measure_gil``).

    Returns the run with the least wall time. ``work`` may return CPU seconds spent
    elsewhere (in worker processes) to add to this process's own CPU; None adds nothing.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats!r}")
    best_wall_s, best_cpu_s = float("inf"), 0.0
    for _ in range(repeats):
        with Stopwatch() as watch:
            elsewhere_cpu_s = work()
        span = watch.result
        if span.wall_s < best_wall_s:
            best_wall_s, best_cpu_s = span.wall_s, span.cpu_s + (elsewhere_cpu_s or 0.0)
    held_fraction = None
    if measure_gil:
        with gil_share(True) as share:
            work()
        held_fraction = share.held_fraction
    return Measurement(best_wall_s, best_cpu_s, held_fraction)
