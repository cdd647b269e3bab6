"""backend="auto" for a stage: run its first items here, measure them, ask verdict.py.

The measured calls are real work: their results flow on like any other, so no item runs
twice. The first item runs alone; then two run together on two threads: for CPU-bound calls
that shows whether they overlap (native code releasing the GIL) or take turns (pure
Python); for waiting calls it gives warm samples. Then ``verdict.decide_for_task`` picks
the backend and the worker count. The timing itself is gilwise._measure's, shared with the
Executor."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, Optional

from .. import verdict
from .._measure import IO_SHARE, CallSample, FunctionProbe, MeasuredCall
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


class AutoProbe:
    """What a stage has measured of its function so far, and what to measure next.

    Follows ``_measure.FunctionProbe`` (a first call alone, then pairs while the overlap is
    unclear), with one addition: when the first call looks like waiting, one pair is run
    as well and counted as two more single calls, because a first call often pays for
    imports and a cold connection and looks more CPU-bound than the stream will be; the
    worker count of an I/O stage depends on that share.
    """

    def __init__(self) -> None:
        self.probe = FunctionProbe()
        self._warm_pair_done = False
        self.failed = False

    def next_step(self) -> Optional[str]:
        """ "single", "pair", or None once it is time to decide."""
        if self.failed:
            return None
        if not self.probe.singles and not self.probe.pairs:
            return "single"
        step = self.probe.next_step()
        if step is None and self._looks_like_waiting() and not self._warm_pair_done:
            return "pair"
        return step

    def _looks_like_waiting(self) -> bool:
        return (
            bool(self.probe.singles)
            and not self.probe.pairs
            and (min(sample.cpu_share for sample in self.probe.singles) < IO_SHARE)
        )

    def record_single(self, timed: Timed) -> None:
        if timed.ok:
            self.probe.add_single(timed.sample)
        else:
            self.failed = True

    def record_pair(self, first: Timed, second: Timed) -> None:
        if not (first.ok and second.ok):
            self.failed = True
        elif self._looks_like_waiting():
            self._warm_pair_done = True
            self.probe.add_single(first.sample)
            self.probe.add_single(second.sample)
        else:
            self.probe.add_pair(first.sample, second.sample)

    def decide(self, max_workers: Optional[int]) -> Decision:
        """verdict.decide_for_task on what succeeded; threads when nothing did."""
        if self.probe.calls == 0:
            return Decision(
                "io-bound",
                "thread",
                max_workers or 4,
                1.0,
                "no call succeeded while measuring, so nothing is known: threads by default",
                TaskMeasurement(wall_s=0.0, cpu_s=0.0),
            )
        return verdict.decide_for_task(self.probe.measurement(), max_workers=max_workers)
