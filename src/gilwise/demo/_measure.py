"""Measure several ways of doing the same work, in turn, keeping each way's fastest run.

On a shared machine a background program can steal a core for a moment. Running the ways in
turn (a, b, c, a, b, c, ...) spreads that noise over all of them instead of one, and the
fastest of a few runs, as ``timeit`` keeps, is the best estimate of what the work itself
costs. The GIL share, when asked for, comes from one more run under the probe outside the
timings: the probe's sampler process uses CPU that would distort speedups on 2 cores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Collection, Mapping, Optional

from ._gil import gil_share
from ._timing import Stopwatch

DEFAULT_REPEATS = 3

#: A way's work; it may return CPU seconds spent elsewhere (worker processes) to add to
#: this process's own CPU, or None.
Work = Callable[[], Optional[float]]


@dataclass(frozen=True)
class Measurement:
    """A way's fastest run: wall and CPU seconds, and the GIL share if it was measured."""

    wall_s: float
    cpu_s: float
    gil_held_fraction: Optional[float]


def fastest_in_turn(
    ways: Mapping[str, Work], *, repeats: int, gil_ways: Collection[str] = ()
) -> dict[str, Measurement]:
    """Run every way ``repeats`` times in turn; the fastest run of each, by name.

    Ways named in ``gil_ways`` run once more under the GIL probe (not timed). Blocking.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats!r}")
    best: dict[str, tuple[float, float]] = {}
    for _ in range(repeats):
        for name, work in ways.items():
            with Stopwatch() as watch:
                elsewhere_cpu_s = work()
            span = watch.result
            if name not in best or span.wall_s < best[name][0]:
                best[name] = (span.wall_s, span.cpu_s + (elsewhere_cpu_s or 0.0))
    measured = {}
    for name, work in ways.items():
        held_fraction = None
        if name in gil_ways:
            with gil_share(True) as share:
                work()
            held_fraction = share.held_fraction
        wall_s, cpu_s = best[name]
        measured[name] = Measurement(wall_s, cpu_s, held_fraction)
    return measured


def fastest_of(work: Work, *, repeats: int, measure_gil: bool) -> Measurement:
    """``fastest_in_turn`` for a single way."""
    return fastest_in_turn(
        {"work": work}, repeats=repeats, gil_ways=("work",) if measure_gil else ()
    )["work"]
