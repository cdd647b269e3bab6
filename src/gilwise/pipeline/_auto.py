"""backend="auto" for a stage: run its first items here, measure them, ask verdict.py.

The measured calls are real work: their results flow on like any other, so no item runs
twice. The first item runs alone; when it looks CPU-bound, the next two run together on two
threads to see whether they overlap (native code releasing the GIL) or take turns (pure
Python). Then ``verdict.decide_for_task`` picks the backend and the worker count. The timing
itself is gilwise._measure's, shared with the Executor.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, Optional

from .. import verdict
from .._measure import CallSample, FunctionProbe, MeasuredCall
from ..verdict import Decision, TaskMeasurement


@dataclass(frozen=True)
class Timed:
    """One measured call: its finished future and its timing."""

    future: Future
    sample: CallSample

    @property
    def ok(self) -> bool:
        return self.future.exception() is None


def run_measured(call: Callable[[Any], Any], item: Any, barrier: Any = None) -> Timed:
    """Run ``call(item)`` in this thread; its outcome goes into a finished future."""
    measured = MeasuredCall(call, barrier)
    future: Future = Future()
    try:
        result = measured(item)
    except Exception as exc:
        future.set_exception(exc)
    else:
        future.set_result(result)
    assert measured.sample is not None
    return Timed(future, measured.sample)


def run_pair_measured(call: Callable[[Any], Any], first: Any, second: Any) -> tuple[Timed, Timed]:
    """Run two calls at once, one here and one on a helper thread, started together."""
    barrier = threading.Barrier(2)
    results: list[Timed] = []
    helper = threading.Thread(
        target=lambda: results.append(run_measured(call, second, barrier)),
        name="gilwise-pipeline-measure",
    )
    helper.start()
    try:
        mine = run_measured(call, first, barrier)
    finally:
        helper.join()
    return mine, results[0]


def needs_pair(first: Timed) -> bool:
    """True when the first call looks CPU-bound and long enough for the overlap to matter."""
    if not first.ok:
        return False
    probe = FunctionProbe()
    probe.add_single(first.sample)
    return probe.next_step() == "pair"


def decide(
    first: Optional[Timed], pair: Optional[tuple[Timed, Timed]], max_workers: Optional[int]
) -> Decision:
    """verdict.decide_for_task on what succeeded; threads when nothing did."""
    probe = FunctionProbe()
    if first is not None and first.ok:
        probe.add_single(first.sample)
    if pair is not None and pair[0].ok and pair[1].ok:
        probe.add_pair(pair[0].sample, pair[1].sample)
    if probe.calls == 0:
        return Decision(
            "io-bound",
            "thread",
            max_workers or 4,
            1.0,
            "no call succeeded while measuring, so nothing is known: threads by default",
            TaskMeasurement(wall_s=0.0, cpu_s=0.0),
        )
    return verdict.decide_for_task(probe.measurement(), max_workers=max_workers)
