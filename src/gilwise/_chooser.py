"""The one place that measures a function's calls, decides its backend and re-decides.

Used by the Executor (``backend="auto"``, one Chooser per function) and by every Pipeline
stage with ``backend="auto"``, both through the one driver gilwise._measuring.Measuring. A
Chooser owns no thread and runs nothing: its driver runs the wrapped calls it hands out
(``measured``) wherever it likes, files them (``record``), and asks what to do next. It
holds:

- what was measured (``_measure.FunctionProbe``), what to measure next (``next_step``), an
  early judgement of calls still running (``peek``), the decision (``decide``: asks
  ``verdict.decide_for_task``, then adjusts for coroutines, ``scale_out`` and a backend
  that is unavailable here), and a drift watch that asks for a re-measure (``observe``);
- the per-call time that sizes chunks (``chunksize``), so calls of any length are handed
  over in units worth their round trip;
- a watch on calls decided inline (``ran_inline``): they run in the caller's thread as lazy
  chunks that are no task, so nothing else times them. Their running mean per call says
  when the work left is worth another backend after all (first calls of 0.3 ms, every
  tenth call 20 ms: the long calls are most of the work);
- the crash memory: once a call crashed a process worker (os._exit, a signal), the function
  is never measured or run in the caller again, only on processes;
- the decision as early as it is clear: a pair of calls judged while still running
  (``peek``), so the driver can start process workers (``warm_up``) while the measured calls
  finish. (Starting workers before the pair is measured would take the cores the pair is
  judged on.)

Not thread safe: the driver guards a Chooser with its own lock. All times are seconds.
"""

from __future__ import annotations

import collections
import functools
import math
import sys
import threading
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional, Union

from . import _runtime
from ._decide import (
    PROCESS_CHUNK_TARGET_S,
    TINY_CALL_S,
    Decision,
    TaskMeasurement,
    cpu_backend,
    decide_for_task,
    parallel_speedup,
)
from ._measure import (
    AMBIGUOUS_OVERLAP,
    EARLY_IO_SHARE,
    IO_SHARE,
    CallSample,
    DriftWatch,
    FunctionProbe,
    MeasuredCall,
    MeasuredCoroutine,
    gil_held_by_others,
    pair_waited,
    since,
    waiting_so_far,
)

# Backends that ship work to other processes or machines: chunks must be worth a round trip.
REMOTE_BACKENDS = frozenset({"process", "interpreter", "dask"})
# A chunk on a local backend (inline, thread) should last about this long: long enough to
# make the per-task bookkeeping negligible, short enough to keep results streaming.
LOCAL_CHUNK_TARGET_S = 0.002
MAX_CHUNKSIZE = 4096
# Calls decided inline run in the consumer's thread as lazy chunks lasting about this long
# and at most this many calls (a lazy chunk is no task: a big one costs only the inputs it
# reads ahead). Each chunk costs ~0.1-0.2 ms of timing and bookkeeping (7% of x + 1's
# chunks of 1 ms; ~0.2 ms per chunk of two 1 ms calls when chunks lasted 2 ms). A timed
# call much longer than the calls before it ends its chunk at once
# (LONG_INLINE_CALL_FACTOR), so a long chunk notices a long call as soon as a short one.
INLINE_CHUNK_TARGET_S = 0.01
MAX_LAZY_CHUNKSIZE = 4 * MAX_CHUNKSIZE
# A timed inline call this many times the running per-call estimate, and at least
# TINY_CALL_S, ends its lazy chunk: the watch weighs it before the next call runs here.
LONG_INLINE_CALL_FACTOR = 4.0
# Inline calls at least this long (by the running estimate) are timed one by one (~0.3 us
# per call, <= 1%), leaving out the consumer's time between them; shorter ones only by
# their chunk's span, the consumer's time included, which can only ask for a re-measure.
TIMED_INLINE_MIN_S = 3e-5
# How often one function is re-measured after its call durations drifted.
MAX_RECHECKS = 3
# A pair of busy calls is judged while running only after this long (less is noise).
EARLY_CPU_AFTER_S = 0.035
# ... and only when its overlap (cores busy) is outside this range: clearly turns or parallel.
EARLY_CLEAR_OVERLAP = (1.1, 1.75)
# ... and, to be judged overlapping (threads) early, it must have used this many cores for
# real: calls taking turns on the GIL never use more than one core between them.
EARLY_PARALLEL_CORES = 1.2
# When a driver peeks at measured calls still running (seconds after they started).
PEEK_DELAYS_S = (0.004, 0.012, 0.04, 0.1)
# A call whose first milliseconds were busy (a cold connection, a lazy import) and that has
# waited since is judged waiting from the time between two peeks, once that is this long.
RECENT_WAIT_MIN_S = 0.02
# A first call run in the caller (gilwise._first_call) decides at once, with no pair, when it
# kept its thread busy at least this share of its time and was shorter than FIRST_CALL_TINY_S
# (inline: no pool pays for it), or held the GIL (a clear reading of the probe: at least this
# share of its wake-ups found it held).
FIRST_CALL_CPU_SHARE = 0.8
FIRST_CALL_TINY_S = 0.00005
GIL_HELD_CLEAR = 0.6
# A busy first call in which the probe found the GIL held at most this share of its wake-ups
# (a clear reading) is native code that releases it (hashlib): threads, one per core, at once
# (calls on threads would overlap, as a pair would show) and no zygote is forked.
GIL_RELEASED_CLEAR = 0.25
# Calls judged tiny (< TINY_CALL_S) but at least this long still go to processes, in chunks,
# when a sized map has enough of them to save more than the start (400 calls of 0.8 ms).
# (Calls measured on threads carry ~0.1 ms of measuring: a call that returns its argument
# read 0.12-0.18 ms in a pair.)
SMALL_CALL_MIN_S = 0.0003
# The same bound for calls timed in the caller's own thread (a map's first calls), which
# carry none of that measuring: a 0.3 ms call reads 0.25-0.30 ms there.
FIRST_CALL_SMALL_MIN_S = 0.0002
# When the probe cannot tell from a map's first call (a 1 ms call gives it one or two
# wake-ups; a 0.1 ms call none), the caller runs the next calls too, each with the probe,
# and their wake-ups add up, until the reading is clear or the calls run here after the
# first reach this long (then a pair measures, as before). Also after a first call that
# imported modules (a cold call): one more, warm, decides.
PROBE_MORE_S = 0.006
PROBE_MORE_CALLS = 64
# Exceptions that mean "the worker process died", by name (the process backend defines them).
_CRASH_ERRORS = ("WorkerCrashedError",)


def label(fn: Callable[..., Any]) -> str:
    """``module.qualname`` of a function (through partials), for messages and explain()."""
    target = fn
    while isinstance(target, functools.partial):
        target = target.func
    module = getattr(target, "__module__", None) or ""
    name = str(getattr(target, "__qualname__", None) or type(target).__qualname__)
    return f"{module}.{name}" if module and module != "builtins" else name


def key(fn: Callable[..., Any]) -> Any:
    """Calls that share this key are assumed to behave alike (same code, e.g. one lambda line)."""
    target = fn
    while isinstance(target, functools.partial):
        target = target.func
    target = getattr(target, "__func__", target)  # bound methods are new objects per access
    code = getattr(target, "__code__", None)
    if code is not None:
        return code
    try:
        hash(target)
    except TypeError:
        return type(target)
    return target


def is_crash(error: Optional[BaseException]) -> bool:
    """True for the error a backend reports when a worker process died under a call."""
    return error is not None and any(cls.__name__ in _CRASH_ERRORS for cls in type(error).__mro__)


@dataclass(eq=False)
class Measure:
    """A measured hand-over: the wrapper that timed the call, and its pair partner if any."""

    call: Union[MeasuredCall, MeasuredCoroutine]
    partner: Optional[Measure] = None
    done: bool = False
    ok: bool = True


class Chooser:
    """Measuring, deciding and re-deciding for one function.

    ``max_workers``: the caller's cap on workers. ``scale_out``: send GIL-bound work to dask
    instead of local processes. ``pair_first``: measure two calls together first (the
    Executor, which usually has many calls queued) or one alone first (a pipeline stage,
    whose items arrive one by one).
    """

    def __init__(
        self,
        label_text: str,
        is_coroutine: bool = False,
        *,
        max_workers: Optional[int] = None,
        scale_out: Any = None,
        pair_first: bool = True,
        memory_key: Any = None,
    ) -> None:
        self.label = label_text
        self.memory_key = memory_key  # remember decisions for later Executors (see recall)
        # A decision an earlier Executor of this program took for this function, to decide
        # from instead of measuring (``recall``); None once decided.
        self.recalled: Optional[TaskMeasurement] = None
        self.is_coroutine = is_coroutine
        self.max_workers = max_workers
        self.scale_out = scale_out
        self.pair_first = pair_first
        self.probe = FunctionProbe(is_coroutine)
        self.generation = 0  # bumped by each re-measure, so stale peeks are ignored
        self.measuring = 0
        self.decision: Optional[Decision] = None
        self.drift: Optional[DriftWatch] = None
        self.rechecks = 0
        self.early = False  # the decision came from a peek at calls still running
        self.failed = False  # a measured call raised: decide from what succeeded
        self.crashed = False  # a call killed a worker process: processes only, from now on
        # The remote backend it was sent to, once it was: it never comes back to this process
        # (a call that crashes its worker there would crash the caller here).
        self.remote: Optional[str] = None
        self.notes: list[str] = []
        self.per_call_s: Optional[float] = None
        self.expected_calls: Optional[int] = None  # calls announced by maps (sized inputs)
        self.calls_done = 0  # calls finished (measured, on a backend or inline), for the above
        # Calls run inline since the decision: calls, wall s, CPU s (an upper bound).
        self._inline_ran: tuple[int, float, float] = (0, 0.0, 0.0)
        self._warm_pair_done = False
        self._peeked: dict[int, tuple[Any, Any]] = {}  # id(call) -> (call, its last peek)

    # --- remembering ---------------------------------------------------------------------

    def recall(self) -> bool:
        """Take what an earlier Executor of this program decided for this function (the
        same code, ``memory_key``), if anything: ``recalled`` is then the measurement to
        decide from (the driver calls ``decide`` with it) and no call is measured again. A
        function that was sent to worker processes (or crashed one) stays there: it never
        runs in this process again. Any other is watched as it runs, as after measuring (a
        lasting change in its calls' duration has it measured again)."""
        if self.memory_key is None:
            return False
        with _memory_lock:
            memory = _memory.get(self.memory_key)
            if memory is None:
                return False
            _memory.move_to_end(self.memory_key)
        self.recalled = memory.measured
        self.crashed = self.crashed or memory.crashed
        self.remote = self.remote or memory.remote
        measured = memory.measured
        calls = f"{measured.calls} real call{'s' if measured.calls != 1 else ''}"
        self.notes.append(
            f"decided as before in this program: an earlier Executor measured {calls} "
            f"({measured.wall_s * 1000:.3f} ms each) and chose {memory.backend}; not measured "
            "again"
            + (
                " (a function sent to worker processes never runs in this one again)"
                if memory.remote
                else " (watched as it runs: measured again if its calls change)"
            )
        )
        return True

    def _remember(self) -> None:
        """Keep this function's decision for the program's later Executors (``recall``)."""
        decision = self.decision
        if self.memory_key is None or decision is None:
            return
        memory = _Remembered(decision.measured, decision.backend, self.remote, self.crashed)
        with _memory_lock:
            _memory[self.memory_key] = memory
            _memory.move_to_end(self.memory_key)
            while len(_memory) > MEMORY_SIZE:
                _memory.popitem(last=False)

    # --- measuring ----------------------------------------------------------------------

    @property
    def deciding(self) -> bool:
        """True while calls must be measured before (or to redo) a decision."""
        return self.decision is None

    def next_step(self) -> Optional[str]:
        """ "single", "pair", or None once it is time to decide."""
        probe = self.probe
        if self.failed:
            return None
        if not probe.singles and not probe.pairs:
            return "pair" if self.pair_first and not self.is_coroutine else "single"
        step = probe.next_step()
        if step is None and self._looks_like_waiting() and not self._warm_pair_done:
            # A first call often pays for imports and a cold connection and looks more
            # CPU-bound than the stream will be: measure one warm pair as two more singles.
            return "pair"
        return step

    def _looks_like_waiting(self) -> bool:
        probe = self.probe
        return (
            not self.is_coroutine
            and bool(probe.singles)
            and not probe.pairs
            and min(sample.cpu_share for sample in probe.singles) < IO_SHARE
        )

    def expect(self, calls: int) -> None:
        """A map over a sized input announced ``calls`` more calls of this function."""
        self.expected_calls = (self.expected_calls or 0) + max(0, calls)

    def first_call(
        self,
        sample: CallSample,
        gil: Optional[Any],
        *,
        imported: bool = False,
        before: tuple = (),
    ) -> Optional[TaskMeasurement]:
        """The first call ran in the driver's thread (gilwise._first_call: ``sample``, and
        ``gil``, the probe's GilReading or None; ``imported``: it imported modules, so it
        was a cold call). ``before``: when the driver ran several first calls (see
        ``probe_more``), the samples of those before the last, ``sample`` the last, and
        ``gil`` their merged reading. Files them as singles. Returns a TaskMeasurement to
        decide from now (the driver calls ``decide`` with it) when the calls are enough:
        they kept their thread busy and were tiny (inline), or held the GIL by the probe
        (a cold first call alone may wait less than the calls after it); else None, and a
        pair is measured as before."""
        samples = [*before, sample]
        for one in samples:
            self.calls_done += 1
            self.probe.add_single(one)
        if self.is_coroutine or self.crashed or self.remote is not None or self.decision:
            return None
        first = _mean_sample(warm_calls(samples, imported))
        wall_s = first.idle_machine_wall_s
        if first.cpu_share < FIRST_CALL_CPU_SHARE:
            return None
        calls = len(samples)
        where = "its first call" if calls == 1 else f"its first {calls} calls"
        measured = TaskMeasurement(wall_s=wall_s, cpu_s=min(first.cpu_s, wall_s), calls=calls)
        if wall_s < FIRST_CALL_TINY_S:
            self.notes.append(
                f"decided from {where}, run in this thread ({wall_s * 1e6:.1f} us, "
                "shorter than any hand-over), without measuring more; the calls that run "
                "here are watched as they run"
            )
            return measured
        if imported and calls == 1:
            return None
        released = gil is not None and gil.clear and gil.held_share < GIL_HELD_CLEAR
        if FIRST_CALL_SMALL_MIN_S <= wall_s < TINY_CALL_S and not released:
            # Too short for the probe to say, and it need not: short busy calls stay here,
            # or, when a sized map has many, go to processes in chunks, GIL or not.
            self.notes.append(
                f"decided from {where}, run in this thread ({wall_s * 1000:.2f} ms, "
                "busy), without a pair"
            )
            return measured
        if gil is None:
            return None
        if not gil.clear:
            warm = calls - 1 if imported else calls
            if warm < 2:
                return None  # one call: a pair tells
            # Several busy calls ran here and the probe still cannot tell (a busy machine
            # starves it): a pair on threads would be read on the same busy machine. Busy
            # calls run in parallel on processes whether they hold the GIL or not, so they
            # are decided as CPU work (processes, if the work left pays for them).
            self.notes.append(
                f"decided from {where}, run in this thread ({wall_s * 1000:.2f} ms each on "
                f"average, busy): the GIL probe could not tell from {gil.wakes} wake-ups "
                "(the machine was busy), and busy calls run in parallel on processes "
                "whether they hold the GIL or not"
            )
            return measured
        if gil.held_share <= GIL_RELEASED_CLEAR and wall_s >= TINY_CALL_S:
            found = f"free at {1.0 - gil.held_share:.0%}"
        elif gil.held_share >= GIL_HELD_CLEAR:
            found = f"held at {gil.held_share:.0%}"
        else:
            return None  # in between: a pair tells
        self.notes.append(
            f"decided from {where}, run in this thread, without a pair: a probe thread "
            f"found the GIL {found} of its {gil.wakes} wake-ups during the busy "
            f"call{'s' if calls > 1 else ''}"
        )
        return replace(measured, gil_held_share=gil.held_share)

    def measured(self, fns: list[Callable[..., Any]]) -> list[Measure]:
        """Wrappers timing one call of each of ``fns`` (two: a pair started together)."""
        if self.is_coroutine:
            return [Measure(MeasuredCoroutine(fn)) for fn in fns]
        if len(fns) == 2:
            barrier = threading.Barrier(2)
            pair = [Measure(MeasuredCall(fn, barrier)) for fn in fns]
            pair[0].partner, pair[1].partner = pair[1], pair[0]
            return pair
        return [Measure(MeasuredCall(fn)) for fn in fns]

    def record(self, measure: Measure, *, ok: bool, items: int = 1) -> bool:
        """File a finished measured call. True when every measured call is in and it is time
        to (re-)decide: the driver then calls ``decide``."""
        self.measuring -= 1
        self.calls_done += items
        measure.done = True
        measure.ok = ok
        sample = measure.call.sample
        partner = measure.partner
        if not ok:
            self.failed = True
        elif items > 1 and sample is not None:  # a chunk queued before a re-measure
            sample = CallSample(
                sample.wall_s / items, sample.cpu_s / items, sample.started_s, sample.ended_s
            )
            partner = None
        if ok and sample is not None:
            if partner is None:
                self.probe.add_single(sample)
            elif partner.done and partner.ok and partner.call.sample is not None:
                if self._looks_like_waiting():
                    self._warm_pair_done = True
                    warm = (partner.call.sample, sample)
                    if pair_waited(warm):
                        # Judged together, they waited: as singles, a call whose sleep
                        # another stage's busy threads happened to cover looked CPU-bound.
                        self.probe.add_pair(*warm)
                    else:
                        # Filed as singles: each call's others_busy_s counts its partner's
                        # work, which is not a third thread holding the GIL.
                        self.probe.add_single(_without_partner(warm[0], sample))
                        self.probe.add_single(_without_partner(sample, warm[0]))
                else:
                    self.probe.add_pair(partner.call.sample, sample)
        if self.measuring:
            return False
        if self.early:
            return True
        return self.decision is None and (
            self.failed or self.next_step() is None or self.probe.calls >= 6
        )

    def peek(self, generation: int, calls: list) -> Optional[TaskMeasurement]:
        """Judge calls still running: a TaskMeasurement when they clearly wait or clearly
        take turns/overlap (the driver then decides early), else None."""
        if self.decision is not None or generation != self.generation:
            return None
        peeks = [call.peek() for call in calls]
        if not peeks or any(sample is None for sample in peeks):
            return None
        recent_share = self._recent_share(calls, peeks)
        waiting_lately = recent_share is not None and recent_share < EARLY_IO_SHARE
        if waiting_so_far(calls) or waiting_lately:
            elapsed_s = min(sample.wall_s for sample in peeks)
            cpu_s = sum(sample.cpu_s for sample in peeks) / len(peeks)
            if waiting_lately:  # judge what the calls do now, not their busy start
                cpu_s = min(cpu_s, recent_share * elapsed_s)  # type: ignore[operator]
            so_far = TaskMeasurement(wall_s=elapsed_s, cpu_s=cpu_s, calls=0)
            what = "I/O-bound (they were waiting)"
        else:
            busy = busy_pair_so_far(peeks)
            if busy is None:
                return None
            so_far = busy
            what = f"CPU-bound (two calls on two threads kept {busy.overlap:.2f} cores busy)"
        self.notes.append(
            f"judged {what} {so_far.wall_s * 1000:.1f} ms into its first calls, so queued "
            f"calls started before those returned; decided again once they did"
        )
        return so_far

    def _recent_share(self, calls: list, peeks: list) -> Optional[float]:
        """Share of the time since the previous peek at ``calls`` that they used or wanted a
        core; None on the first peek or when that was less than RECENT_WAIT_MIN_S ago."""
        previous, self._peeked = (
            self._peeked,
            {id(call): (call, sample) for call, sample in zip(calls, peeks)},
        )
        wanted_s = interval_s = 0.0
        lately = []
        for call, sample in zip(calls, peeks):
            before = previous.get(id(call))
            if before is None or before[0] is not call:
                return None
            interval = sample.wall_s - before[1].wall_s
            if interval < RECENT_WAIT_MIN_S:
                return None
            lately.append(since(before[1], sample))
            wanted_s += lately[-1].cpu_s + lately[-1].runqueue_s
            interval_s += interval
        if gil_held_by_others(lately):
            return None  # others held the GIL meanwhile: not clear that the calls wait
        return max(0.0, wanted_s) / interval_s

    # --- deciding -----------------------------------------------------------------------

    def decide(
        self,
        open_backend: Callable[[str, int], Any],
        measured: Optional[TaskMeasurement] = None,
        *,
        early: bool = False,
    ) -> tuple[Decision, Any]:
        """Decide (from ``measured``, else what was measured) and open the backend with
        ``open_backend(name, workers)``; an unavailable backend falls back to threads.
        Returns the decision and whatever ``open_backend`` returned."""
        self.recalled = None
        if self.early and not early and measured is None:
            self.early = False
            redo = self._confirm_early()
            if redo is None:
                assert self.decision is not None
                self._remember()
                return self.decision, None
        decision = self.prospect(measured)
        try:
            opened = open_backend(decision.backend, decision.workers)
        except (ImportError, RuntimeError, ValueError, TypeError, OSError) as exc:
            # UnsupportedError (a RuntimeError), NoClusterError (a ValueError), a missing
            # module or a refused connection: the work still runs, and explain() says why.
            if self.crashed:
                raise
            decision = replace(
                decision,
                backend="thread",
                reason=decision.reason + f" The {decision.backend} backend is unavailable "
                f"here ({exc}), so threads run it.",
            )
            opened = open_backend("thread", decision.workers)
        self.decision = decision
        self.early = early
        self._peeked = {}
        if decision.backend in REMOTE_BACKENDS:
            self.remote = decision.backend
        self.per_call_s = decision.measured.wall_s or None
        seed = decision.measured
        self._inline_ran = (seed.calls, seed.calls * seed.wall_s, seed.calls * seed.cpu_s)
        # A function whose calls keep changing would be re-measured forever: stop watching.
        # One sent to other processes is never re-measured here: re-measuring runs calls in
        # this process, and a call that crashes a worker would crash the caller.
        if early or self.rechecks >= MAX_RECHECKS or self.crashed:
            self.drift = None  # an early judgement is a lower bound: watch after the redo
        elif decision.backend in REMOTE_BACKENDS:
            self.drift = None
        else:
            # A new thread pool creates a thread for each of its first tasks (all handed over
            # at once): their time from hand-over is not the calls' own (70 sleeps of 10 ms
            # on a new pool of 128 threads took ~40 ms each on a loaded machine).
            warmup = decision.workers if decision.backend == "thread" else 0
            self.drift = DriftWatch(decision.measured.wall_s, warmup=warmup)
        if not early:
            self._remember()
        return decision, opened

    def prospect(self, measured: Optional[TaskMeasurement] = None) -> Decision:
        """The decision ``decide`` would take now (from ``measured``, else what was
        measured), opening nothing: for a driver that must prepare its backend first."""
        facts = _runtime.current()
        if measured is None and self.probe.calls == 0:
            decision = Decision(
                "io-bound",
                "asyncio" if self.is_coroutine else "thread",
                self.max_workers or 4,
                1.0,
                "no measured call succeeded, so nothing is known: threads by default",
                TaskMeasurement(wall_s=0.0, cpu_s=0.0),
            )
        else:
            measured = measured or self.probe.measurement()
            decision = decide_for_task(measured, facts, max_workers=self.max_workers)
        decision = self._send_many_small_calls_away(decision)
        decision = self._keep_small_work_here(decision)
        if self.is_coroutine and decision.backend != "asyncio":
            decision = replace(
                decision,
                backend="asyncio",
                workers=max(decision.workers, facts.cores),
                reason=decision.reason + " It is a coroutine function, so it runs on the "
                "event loop all the same.",
            )
        if self.crashed and decision.backend != "process":
            decision = replace(
                decision,
                backend="process",
                reason=decision.reason + " But one of its calls crashed a worker process, so "
                "it runs only in worker processes, never in this one.",
            )
        if (
            self.remote is not None
            and not self.is_coroutine
            and decision.backend not in REMOTE_BACKENDS
        ):
            decision = replace(
                decision,
                backend=self.remote,  # type: ignore[arg-type]
                workers=max(1, min(facts.cores, self.max_workers or facts.cores)),
                reason=decision.reason + f" But it had been sent to {self.remote} workers "
                "already, and a function sent to other processes never runs in this one "
                "again (a call that crashes its worker would crash this program).",
            )
        if decision.backend == "process" and self.scale_out is not None:
            decision = replace(
                decision,
                backend="dask",  # type: ignore[arg-type]
                reason=decision.reason + " Scaled out to the dask cluster given as scale_out.",
            )
        return self._no_more_than_the_calls(decision)

    def _no_more_than_the_calls(self, decision: Decision) -> Decision:
        """A map of n calls cannot finish more than n times sooner than one after another:
        the expected speedup of sized maps is capped there (40 downloads on 128 threads are
        not 128x; the first calls measured here are not sped up at all)."""
        calls = self.expected_calls
        if calls is None or calls < 1 or decision.expected_speedup <= calls:
            return decision
        return replace(
            decision,
            expected_speedup=float(calls),
            reason=decision.reason + f" At most {calls}x: the maps so far had {calls} calls.",
        )

    def _send_many_small_calls_away(self, decision: Decision) -> Decision:
        """Tiny calls run inline, unless they are many: a map over a sized input whose calls
        (at least SMALL_CALL_MIN_S, busy, not overlapping on threads) add up to more work
        than starting processes costs goes to processes in chunks, as a hand-picked pool
        would (400 calls of 0.8 ms: 2 processes finish ~0.15 s sooner than inline)."""
        measured = decision.measured
        facts = _runtime.current()
        if (
            decision.kind != "tiny"
            or self.expected_calls is None
            or self.is_coroutine
            or self.scale_out is not None
            or measured.wall_s < SMALL_CALL_MIN_S
            or measured.cpu_share < FIRST_CALL_CPU_SHARE
            or (measured.overlap is not None and measured.overlap >= 1.5)
            or cpu_backend(facts) != "process"
        ):
            return decision
        workers = max(1, min(facts.cores, self.max_workers or facts.cores))
        left = self._calls_left() or 0
        work_s = left * measured.wall_s
        worth, saved_s, start_s, how = _worth_a_start(work_s, workers)
        if workers < 2 or not worth:
            return decision
        return replace(
            decision,
            backend="process",
            workers=workers,
            expected_speedup=parallel_speedup(workers, facts),
            reason=decision.reason + f" But there are many: {left} calls of "
            f"{measured.wall_s * 1000:.2f} ms = {work_s * 1000:.0f} ms of CPU work, of which "
            f"{workers} processes, in chunks, save up to {saved_s * 1000:.0f} ms, more than "
            f"starting them costs ({how}, ~{start_s * 1000:.0f} ms): processes, one per core.",
        )

    def _keep_small_work_here(self, decision: Decision) -> Decision:
        """Processes for GIL-bound work only when the work left is worth starting them: the
        calls announced (a map over a sized input) times the per-call time, spread over the
        workers, must save more than the workers take to start. Else inline, and explain()
        says why. Never for a function already sent to processes or that crashed one."""
        if (
            decision.backend != "process"
            or self.expected_calls is None
            or self.remote is not None
            or self.crashed
            or self.scale_out is not None
        ):
            return decision
        remaining = self._calls_left()
        assert remaining is not None
        work_s = remaining * decision.measured.wall_s
        worth, saved_s, start_s, how = _worth_a_start(work_s, decision.workers)
        if worth:
            return decision
        return replace(
            decision,
            backend="inline",
            workers=1,
            expected_speedup=1.0,
            chunksize=1,
            reason=decision.reason + f" But the work left is small: {remaining} call"
            f"{'s' if remaining != 1 else ''} of {decision.measured.wall_s * 1000:.2f} ms = "
            f"{work_s * 1000:.0f} ms, of which {decision.workers} processes would save at "
            f"most {saved_s * 1000:.0f} ms, less than starting them costs ({how}, "
            f"~{start_s * 1000:.0f} ms): it runs inline, in this process.",
        )

    def _calls_left(self) -> Optional[int]:
        """Calls still to come of the maps that announced their length (None: unknown)."""
        if self.expected_calls is None:
            return None
        return max(0, self.expected_calls - max(self.calls_done, self.probe.calls))

    def _confirm_early(self) -> Optional[bool]:
        """The calls judged early have finished: None to keep the early decision (the full
        pair is less clear than the part judged early, as on a busy machine), True to redo."""
        full = self.probe.measurement() if self.probe.calls else None
        early = self.decision
        if (
            full is not None
            and early is not None
            and early.kind != "io-bound"
            and full.overlap is not None
            and AMBIGUOUS_OVERLAP[0] <= full.overlap < AMBIGUOUS_OVERLAP[1]
        ):
            self.per_call_s = full.wall_s
            if self.rechecks < MAX_RECHECKS:
                self.drift = DriftWatch(full.wall_s)
            return None
        return True

    def fall_back_to_threads(self, why: str) -> None:
        """The chosen backend refused the function (e.g. it cannot be pickled)."""
        note = f"{self.decision.backend if self.decision else 'the backend'} could not take it "
        note += f"({why}); it runs on threads instead"
        if note not in self.notes:
            self.notes.append(note)
        if self.decision is not None:
            self.decision = replace(self.decision, backend="thread")
        self.remote = None  # it cannot go to another process at all
        self._remember()

    # --- after deciding -----------------------------------------------------------------

    def observe(self, per_call_s: float, items: int = 1) -> bool:
        """Track per-call durations; True when the function drifted and must be re-measured
        (the Chooser is then reset to measuring)."""
        self.calls_done += items
        return self._drifted(per_call_s, items)

    def ran_inline(
        self, calls: int, wall_s: float, cpu_s: float, queued_s: float = 0.0, *, timed: bool
    ) -> Optional[TaskMeasurement]:
        """A lazy inline chunk ran: ``calls`` calls took ``wall_s`` (their own time when
        ``timed``, else the chunk's span, the consumer's time included), at most ``cpu_s``
        of CPU and waited up to ``queued_s`` for a core (the thread's, over the span: the
        consumer's too). Waits for a core are the machine's load, not the calls' own time.

        Returns a TaskMeasurement to decide again from (the driver calls ``decide`` with it)
        when the running mean of the timed calls says the work left is worth another backend:
        a per-call time above TINY_CALL_S, and, for processes, the work left (the calls
        announced, else as much again as ran inline so far) saves more than a start costs.
        Else None; then, as ``observe``, a lasting change in per-call time (the span of an
        untimed chunk can only do that) resets the Chooser to measuring (``deciding``)."""
        if calls <= 0:
            return None
        self.calls_done += calls
        wall_s = max(wall_s - queued_s, min(cpu_s, wall_s), 1e-9)
        decision = self.decision
        if (
            timed
            and decision is not None
            and decision.backend == "inline"
            and not self.is_coroutine
            and not self.crashed
        ):
            ran_calls, ran_wall_s, ran_cpu_s = self._inline_ran
            self._inline_ran = ran = (
                ran_calls + calls,
                ran_wall_s + wall_s,
                ran_cpu_s + min(cpu_s, wall_s),
            )
            measured = self._worth_leaving_inline(*ran)
            if measured is not None:
                return measured
        self._drifted(wall_s / calls, calls)
        return None

    def _worth_leaving_inline(
        self, calls: int, wall_s: float, cpu_s: float
    ) -> Optional[TaskMeasurement]:
        mean_s = wall_s / max(1, calls)
        if mean_s < TINY_CALL_S:
            return None
        measured = TaskMeasurement(
            wall_s=mean_s, cpu_s=mean_s * min(1.0, cpu_s / max(wall_s, 1e-9)), calls=calls
        )
        prospect = decide_for_task(measured, _runtime.current(), max_workers=self.max_workers)
        if prospect.backend == "inline":
            return None
        left = self._calls_left()
        if prospect.backend in REMOTE_BACKENDS:
            # Of unknown length: as much work again as ran inline (a start then costs at
            # most what waiting for proof would).
            work_s = wall_s if left is None else left * mean_s
            if not _worth_a_start(work_s, prospect.workers)[0]:
                return None
        self.notes.append(
            f"decided again after {calls} calls ran inline at {mean_s * 1000:.2f} ms per "
            f"call on average ({measured.cpu_share:.0%} CPU), more than its first calls "
            f"took: the work left is worth {prospect.backend}"
        )
        return measured

    def _drifted(self, per_call_s: float, items: int) -> bool:
        previous = self.per_call_s
        if previous is None or items >= 8:
            # A chunk's average is already smooth, and a single call's duration carries the
            # hand-over cost: trust chunks at once so chunk sizes converge in a few steps.
            self.per_call_s = per_call_s
        else:
            self.per_call_s = 0.8 * previous + 0.2 * per_call_s
        if self.drift is None or self.crashed or not self.drift.observe(per_call_s):
            return False
        self.rechecks += 1
        self.notes.append(
            f"re-measured after calls took {per_call_s * 1000:.2f} ms against "
            f"{self.drift.reference_s * 1000:.2f} ms measured before"
        )
        self.decision = None
        self.drift = None
        self.early = False
        self.failed = False
        self._warm_pair_done = False
        self.generation += 1
        self.probe = FunctionProbe(self.is_coroutine)
        return True

    def note_crash(self, error: BaseException) -> bool:
        """A call crashed a worker process. True the first time: from now on this function
        runs only in processes (the driver must re-route it if it is not on processes)."""
        if self.crashed:
            return False
        self.crashed = True
        self.drift = None
        self.notes.append(
            f"a call crashed its worker process ({error}); from then on it runs only in "
            "worker processes, never re-measured in this process"
        )
        self._remember()
        return True

    def lazy_chunksize(self, max_calls: int = MAX_LAZY_CHUNKSIZE) -> int:
        """Calls per lazy inline chunk: about INLINE_CHUNK_TARGET_S of work, at most
        ``max_calls``."""
        per_call_s = self.per_call_s or TINY_CALL_S
        return max(1, min(max_calls, math.ceil(INLINE_CHUNK_TARGET_S / per_call_s)))

    def times_inline_calls(self) -> bool:
        """Whether lazy inline chunks time each call (calls long enough for the cost)."""
        return (self.per_call_s or 0.0) >= TIMED_INLINE_MIN_S

    def long_inline_call_s(self) -> float:
        """A call of a timed lazy inline chunk that takes longer than this ends the chunk
        (the calls after it are planned again, maybe for another backend)."""
        return max(TINY_CALL_S, LONG_INLINE_CALL_FACTOR * (self.per_call_s or 0.0))

    def chunksize(self, backend_name: str) -> int:
        """Calls per hand-over for ``backend_name``, from the measured per-call time."""
        per_call_s = self.per_call_s
        if per_call_s is None or self.is_coroutine or backend_name == "asyncio":
            return 1
        decision = self.decision
        if decision is not None and decision.chunksize > 1 and decision.measured.wall_s:
            per_call_s = min(per_call_s, decision.measured.wall_s)
        if backend_name in REMOTE_BACKENDS:
            target_s = PROCESS_CHUNK_TARGET_S
        else:
            if backend_name == "thread" and per_call_s >= LOCAL_CHUNK_TARGET_S / 4:
                return 1  # threads balance long calls better one by one
            target_s = LOCAL_CHUNK_TARGET_S
        return max(1, min(MAX_CHUNKSIZE, math.ceil(target_s / max(per_call_s, 1e-7))))

    def explain(self) -> str:
        """What was measured and decided, and why (needs a decision)."""
        decision = self.decision
        assert decision is not None
        measured = decision.measured
        lines = [
            f"{self.label}: {decision.kind} -> {decision.backend} "
            f"({decision.workers} worker{'s' if decision.workers != 1 else ''}"
            f"{f', chunks of {decision.chunksize}' if decision.chunksize > 1 else ''}), "
            f"expected {decision.expected_speedup:.2f}x"
        ]
        lines.append(
            f"  measured {measured.calls} real call{'s' if measured.calls != 1 else ''}: one "
            f"call {measured.wall_s * 1000:.3f} ms wall, {measured.cpu_s * 1000:.3f} ms CPU "
            f"({measured.cpu_share:.0%} CPU)"
        )
        if measured.pair_wall_s is None and measured.gil_held_share is not None:
            lines.append(
                f"  while that call ran in this thread, a probe thread found the GIL held "
                f"{measured.gil_held_share:.0%} of the time (100%: calls on threads would "
                f"take turns; 0%: they would overlap)"
            )
        elif measured.overlap is not None:
            lines.append(
                f"  two calls together on two threads kept {measured.overlap:.2f} cores busy "
                f"(2.0: they overlap; 1.0: they take turns on the GIL)"
            )
        lines.append(f"  why: {decision.reason}")
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)


@dataclass(frozen=True)
class _Remembered:
    """A decision kept for the program's later Executors (Chooser.recall)."""

    measured: TaskMeasurement
    backend: str
    remote: Optional[str]
    crashed: bool


# What auto decided per function (Chooser.memory_key: its code) in this program, most recent
# last, for a later Executor (the program's next job) to take instead of measuring again.
MEMORY_SIZE = 256
_memory: collections.OrderedDict[Any, _Remembered] = collections.OrderedDict()
_memory_lock = threading.Lock()


def forget_decisions() -> None:
    """Forget every remembered decision: the next Executors measure afresh (tests)."""
    with _memory_lock:
        _memory.clear()


# What starting process workers costs when nothing tells better (seconds): a worker service
# to start (its zygote, then a worker and its first round trip), or a worker to fork from a
# running zygote.
COLD_PROCESS_START_S = 0.1
WARM_ZYGOTE_START_S = 0.03


def process_start_cost_s(workers: int) -> tuple[float, str]:
    """What getting ``workers`` process workers ready costs now, and how that is known.
    Imports nothing: a program that has not imported the worker service (~15 ms) has none.

    As time lost against ``workers`` workers ready at once: with ``warm`` of them idle
    already, those start work now and the others one start later, so the work finishes
    ``start * (workers - warm) / workers`` later (one warm of two: half a start)."""
    _service = sys.modules.get("gilwise.backends._service")
    if _service is None or _service.current() is None:
        if threading.active_count() == 1:  # its zygote would be a fork of this program
            return WARM_ZYGOTE_START_S, "the worker service to fork from this program, estimated"
        return COLD_PROCESS_START_S, "the worker service to start, estimated"
    warm = min(_service.warm_workers(), workers)
    if warm >= workers:
        return 0.0, f"{workers} warm workers idle"
    last_s = _service.start_cost_s()
    if last_s is not None:
        start_s, how = last_s, "the last worker start"
    else:
        start_s, how = WARM_ZYGOTE_START_S, "a worker to fork, estimated"
    if warm:
        how += f", for {workers - warm} of {workers} workers ({warm} warm)"
    return start_s * (workers - warm) / workers, how


def probe_more(samples: list, readings: list, *, imported: bool, failed: bool) -> bool:
    """Whether a map's driver, having run the calls of ``samples`` in its thread (their
    probe ``readings``; ``imported``: the first imported modules; ``failed``: the last
    raised), should run the next call there too, probed, rather than leave the rest to a
    pair: the calls are busy, too short for the probe to read clearly (or only a cold one
    ran), the machine gave the probe a core, and PROBE_MORE_S is not spent."""
    from ._first_call import merged

    last = samples[-1]
    if failed or readings[-1] is None or len(samples) >= PROBE_MORE_CALLS:
        return False
    if sum(one.wall_s for one in samples[1:]) + last.wall_s > PROBE_MORE_S:
        return False
    if imported and len(samples) == 1:
        return True  # a cold first call, short: one warm call tells more than a pair
    first = _mean_sample(warm_calls(samples, imported))
    wall_s = first.idle_machine_wall_s
    if first.cpu_share < FIRST_CALL_CPU_SHARE or wall_s < FIRST_CALL_TINY_S:
        return False  # waiting (a pair's peeks tell in milliseconds), or tiny: inline
    if FIRST_CALL_SMALL_MIN_S <= wall_s < TINY_CALL_S:
        return False  # decided without a clear reading (see Chooser.first_call)
    gil = merged(warm_calls(readings, imported))
    return gil is not None and not gil.clear and not gil.starved


def warm_calls(calls: list, imported: bool) -> list:
    """What a map's first calls (or their samples, readings) are judged by: all but the
    first when it imported modules (a cold call) and a warm one followed; else all."""
    return calls[1:] if imported and len(calls) > 1 else calls


def _mean_sample(samples: list) -> CallSample:
    """One call's sample standing for ``samples`` (calls run one after the other)."""
    if len(samples) == 1:
        return samples[0]
    count = len(samples)
    return CallSample(
        wall_s=sum(one.wall_s for one in samples) / count,
        cpu_s=sum(one.cpu_s for one in samples) / count,
        started_s=samples[0].started_s,
        ended_s=samples[-1].ended_s,
        runqueue_s=sum(one.runqueue_s for one in samples) / count,
        others_busy_s=sum(one.others_busy_s for one in samples) / count,
    )


def _without_partner(sample: CallSample, partner: CallSample) -> CallSample:
    """``sample`` of a pair's call as if alone: its partner's time on or waiting for a core
    taken out of the time other threads were busy."""
    others_s = max(0.0, sample.others_busy_s - partner.cpu_s - partner.runqueue_s)
    return replace(sample, others_busy_s=others_s)


def _worth_a_start(work_s: float, workers: int) -> tuple[bool, float, float, str]:
    """Whether ``work_s`` of GIL-bound work spread over ``workers`` processes saves more
    than starting them costs: (worth it, seconds saved, start seconds, how that is known)."""
    start_s, how = process_start_cost_s(workers)
    saved_s = work_s * (1.0 - 1.0 / max(1, workers))
    return saved_s > start_s, saved_s, start_s, how


def busy_pair_so_far(peeks: list) -> Optional[TaskMeasurement]:
    """A pair still running that clearly overlaps or clearly takes turns, else None."""
    if len(peeks) != 2:
        return None
    elapsed_s = min(sample.wall_s for sample in peeks)
    if elapsed_s < EARLY_CPU_AFTER_S:
        return None
    wanted_share = sum(s.cpu_s + s.runqueue_s for s in peeks) / (2 * elapsed_s)
    if wanted_share < 0.45:  # partly waiting: let the calls finish before judging
        return None
    overlap = sum(s.cpu_s / max(elapsed_s - s.runqueue_s, s.cpu_s, 1e-9) for s in peeks)
    if EARLY_CLEAR_OVERLAP[0] <= overlap < EARLY_CLEAR_OVERLAP[1]:
        return None
    if overlap >= EARLY_CLEAR_OVERLAP[1] and sum(s.cpu_s for s in peeks) < (
        EARLY_PARALLEL_CORES * elapsed_s
    ):
        # Overlapping only after the waits for a core are taken out: on a loaded machine
        # that is not clear enough to run queued calls on threads in this process early.
        return None
    return TaskMeasurement(
        wall_s=elapsed_s,
        cpu_s=elapsed_s,
        pair_wall_s=elapsed_s,
        pair_cpu_s=overlap * elapsed_s,
        calls=0,
    )
