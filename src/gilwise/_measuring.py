"""The one measuring driver: starts a function's measured calls, peeks, files, decides.

Used by the Executor (``backend="auto"``, one per function) and by every Pipeline stage
with ``backend="auto"``. The Chooser (gilwise._chooser) judges and decides; this drives it
the same way for both owners:

    owner: calls waiting        Measuring                         Chooser
    ------------------------    -------------------------------   ---------------------
    next_step() ------------>   single or pair (a pair only when  next_step()
                                two workers are allowed)
    start(fns) ------------->   wrappers, counted as measuring    measured(fns)
    run them anywhere           peek at PEEK_DELAYS_S ----------> peek() -> decide early
    finished(measure, ok) -->   file it; decide when due -------> record() / decide()
                                decide(): open the backend via
                                the owner, tell it, warm it up
    ran(per_call_s) -------->   drifted? measure again ---------> observe()
    failed(error) ---------->   a worker crash: processes only -> note_crash() / decide()
    chunk_ran(outcomes) ---->   the same for a call of a chunk

A stage decides once (and confirms or redoes an early decision); only the Executor, whose
functions live as long as it does, also reports the calls that ran (``ran``, ``failed``,
``chunk_ran``).

What stays with the owner: where a measured call runs (the Executor's measuring threads,
a stage's helper threads), how the peeks are timed (the Executor's timer thread, as its
caller does not wait; a stage's submitter, which waits for the decision anyway:
``schedule_peeks`` or ``watch``), and what a decision changes there (``on_decided``).

Not thread safe on its own: every method but ``peek`` and ``watch`` is called with the
owner's lock held (the one given here, which also guards the Chooser); those two take it.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from typing import Any, Callable, Optional

from ._chooser import PEEK_DELAYS_S, REMOTE_BACKENDS, Chooser, Measure, is_crash
from ._chunks import Failure, WithFailures
from ._decide import Decision, TaskMeasurement


class Measuring:
    """Measuring, deciding and re-deciding of one function, driven for its owner.

    ``lock``: the owner's lock (guards the Chooser). ``open_backend(name, workers, early)``
    opens (or reuses) the owner's backend for a decision and returns it.
    ``on_decided(decision, opened, early)``: what the owner does once decided (``opened``
    is None when a decision taken early was confirmed: nothing new was opened); called
    under the lock. ``closed()``: True once the owner takes no decision any more.
    """

    def __init__(
        self,
        chooser: Chooser,
        lock: Any,
        open_backend: Callable[[str, int, bool], Any],
        on_decided: Callable[[Decision, Any, bool], None],
        closed: Callable[[], bool] = lambda: False,
    ) -> None:
        self.chooser = chooser
        self.lock = lock
        self._open_backend = open_backend
        self._on_decided = on_decided
        self._closed = closed

    # --- starting measured calls (under the lock) ----------------------------------------

    def next_step(self) -> Optional[str]:
        """ "single", "pair" or None (time to decide): the Chooser's wish, a pair only when
        the caller allows two workers (``max_workers=1`` never runs two calls at once)."""
        step = self.chooser.next_step()
        workers = self.chooser.max_workers
        if step == "pair" and workers is not None and workers < 2:
            return "single"
        return step

    def start(self, fns: list[Callable[..., Any]]) -> list[Measure]:
        """Wrappers timing one call of each of ``fns`` (two: a pair started together); the
        owner runs each wrapper's ``call`` once and files it with ``finished``."""
        measures = self.chooser.measured(fns)
        self.chooser.measuring += len(measures)
        return measures

    def not_started(self, count: int = 1) -> None:
        """``count`` measured calls handed out by ``start`` were never run (a hand-over
        failed, Ctrl-C put them back in the queue): they are not waited for."""
        self.chooser.measuring -= count

    # --- while they run ------------------------------------------------------------------

    def schedule_peeks(
        self,
        measures: list[Measure],
        add_timer: Callable[[float, Callable[[], None]], None],
        then: Callable[[], None],
    ) -> None:
        """Under the lock: have ``add_timer(delay_s, callback)`` peek at the running calls at
        each of PEEK_DELAYS_S after now; ``then()`` runs (without the lock) after a peek
        that decided early."""
        generation = self.chooser.generation
        calls = [measure.call for measure in measures]

        def tick() -> None:
            if self.peek(generation, calls):
                then()

        for delay_s in PEEK_DELAYS_S:
            add_timer(delay_s, tick)

    def watch(self, measures: list[Measure], finished: threading.Event, started_s: float) -> bool:
        """Wait in this thread while the measured calls run (``finished`` is set once all are
        filed), peeking at PEEK_DELAYS_S after ``started_s`` (time.perf_counter). True once
        a peek decided early (the calls still run); False once they finished or the last
        peek told nothing."""
        with self.lock:
            generation = self.chooser.generation
        calls = [measure.call for measure in measures]
        for delay_s in PEEK_DELAYS_S:
            if finished.wait(max(0.0, started_s + delay_s - time.perf_counter())):
                return False
            if self.peek(generation, calls):
                return True
        return False

    def peek(self, generation: int, calls: list) -> bool:
        """Takes the lock: judge measured calls still running (``generation``: the Chooser's
        when they started; a re-measure since makes this a no-op) and decide early when
        they are clear. True when this decided."""
        with self.lock:
            if self._closed() or self.chooser.decision is not None:
                return False
            so_far = self.chooser.peek(generation, calls)
            if so_far is None:
                return False
            self.decide(so_far, early=True)
            return True

    # --- filing and deciding (under the lock) --------------------------------------------

    def finished(self, measure: Measure, *, ok: bool, items: int = 1) -> bool:
        """File a measured call that returned (``ok``) or raised; decide when it was the
        last one needed (or confirm, or redo, a decision taken early). True if decided."""
        if self.chooser.record(measure, ok=ok, items=items):
            self.decide()
            return True
        return False

    def decide(
        self, measured: Optional[TaskMeasurement] = None, *, early: bool = False
    ) -> Decision:
        """Decide (from ``measured``, else what was measured), open the backend through the
        owner, tell the owner (``on_decided``), then start a new process pool's workers
        (not for an early decision: the measured calls still use the cores it is judged on).
        """
        decision, opened = self.chooser.decide(
            lambda name, workers: self._open_backend(name, workers, early), measured, early=early
        )
        self._on_decided(decision, opened, early)
        final = self.chooser.decision  # the owner may have fallen back to threads
        if (
            opened is not None
            and not early
            and final is not None
            and final.backend in REMOTE_BACKENDS
        ):
            opened.warm_up()  # every worker now, not at its first task
        return decision

    # --- after deciding: re-deciding (under the lock) ------------------------------------

    def ran(self, per_call_s: float, items: int = 1) -> bool:
        """``items`` calls on the decided backend took ``per_call_s`` each (chunk sizes
        follow it). True when their durations drifted from what was measured: the Chooser
        measures again, and the owner sends the next calls to be measured."""
        return self.chooser.observe(per_call_s, items)

    def failed(self, error: BaseException) -> bool:
        """A call on a backend raised ``error``. The first time a call crashed its worker
        process, the function never runs in this process again (a re-measure here would
        crash the caller): decided again, for processes, unless it runs on them already.
        True when this decided again."""
        if not is_crash(error) or not self.chooser.note_crash(error):
            return False
        decision = self.chooser.decision
        if decision is not None and decision.backend == "process":
            return False
        self.decide()
        return True

    def chunk_ran(self, outcomes: list) -> bool:
        """A chunk's per-call outcomes (gilwise._chunks) are in: a call of it that crashed
        its worker counts as ``failed``, as a call handed over alone does. True when this
        decided again."""
        if type(outcomes) is not WithFailures:
            return False  # no call failed
        for outcome in outcomes:
            if type(outcome) is Failure and is_crash(outcome.exception):
                return self.failed(outcome.exception)
        return False


def run_measured(measure: Measure, *args: Any) -> Future:
    """Run one measured call in this thread (a pipeline stage's helper); its outcome goes
    into a finished future (an exception too: the stage's error policy decides)."""
    future: Future = Future()
    try:
        result = measure.call(*args)
    except Exception as exc:
        future.set_exception(exc)
    else:
        future.set_result(result)
    return future
