"""Measuring real calls of a function, to classify it without running anything twice.

The Executor (backend="auto") and the Pipeline time the first calls of each function with
these pieces and hand the result to ``verdict.decide_for_task``. Nothing here decides
anything or owns a thread pool; the caller runs the wrapped calls wherever it likes.

API (internal, stable enough to share):

``MeasuredCall(fn, start_barrier=None)``
    A callable wrapper: ``wrapper(*args, **kwargs)`` calls ``fn`` and leaves the timing of
    that call in ``wrapper.sample`` (a ``CallSample``), also when ``fn`` raises. With a
    ``threading.Barrier`` the timed region starts only once every party of the barrier has
    arrived, so two calls on two threads start together (a broken or timed-out barrier
    just starts the call: a user's task never fails because of measuring). ``peek()``
    reads a call still running (its thread's CPU clock, from any thread).
``MeasuredCoroutine(fn)``
    The same for an ``async def`` function: ``await wrapper(*args, **kwargs)``.
``FunctionProbe(is_coroutine=False)``
    Collects samples of one function: ``add_single(sample)``, ``add_pair(a, b)`` (a second
    pair is asked for when the first one's overlap is ambiguous). ``next_step()`` says what
    to measure next ("pair", "single" or None when enough is known); ``measurement()``
    returns a ``verdict.TaskMeasurement``.
``pair_waited((first, second))``
    True when two calls measured together mostly waited (I/O) rather than wanted a core.
``waiting_so_far(calls)``
    True when running MeasuredCalls have mostly waited so far (judge I/O before they end).
``DriftWatch(reference_s)``
    ``observe(duration_s) -> bool``: True once the median of the last ``window`` per-call
    durations differs from ``reference_s`` by more than ``ratio`` (default 4x); the first
    ``warmup`` durations (a new pool's start) are let pass.
``span_start()``, ``span_since(start)``
    ``(wall, thread CPU, run-queue wait)`` of a span of the calling thread.
``TimedCalls(fn)``
    A callable wrapper for calls run in the caller's own thread (a lazy inline chunk):
    sums the wall time of its calls and counts them (``wall_s``, ``calls``), leaving out
    whatever the caller does between calls. ~0.3 us per call.
``measure_three_calls(fn, args, kwargs)``
    Runs fn three times (one alone, then two together on two threads) and returns
    ``(results, TaskMeasurement)``; results in call order, exceptions re-raised.

All times are seconds: wall from ``time.perf_counter``, CPU from ``time.thread_time`` (the
calling thread's CPU, which counts native code that released the GIL but not time spent
waiting for the GIL, for I/O or for sleep).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Optional, Sequence

from ._decide import TINY_CALL_S, TaskMeasurement

# How long a measured pair waits for its partner before starting alone.
PAIR_START_TIMEOUT_S = 5.0
# A single call whose thread used less than this share of its wall time is waiting (I/O).
IO_SHARE = 0.5
# Singles measured before deciding without a pair (when calls never arrive two at a time).
MAX_SINGLES = 3
# Calls still running this long after they started, having used a core less than this share
# of the time, are judged waiting (I/O-bound) before they return.
EARLY_AFTER_S = 0.003
EARLY_IO_SHARE = 0.15
# A pair whose overlap falls in this range (cores busy) is measured once more and the two
# are averaged: other programs on a busy machine blur a single pair's answer.
AMBIGUOUS_OVERLAP = (1.15, 1.6)
MAX_PAIRS = 2
# A pair says something about overlapping once its calls ran together this share of the
# shorter one; then calls asleep less than PARALLEL_MAX_ASLEEP of that time overlapped.
TOGETHER_SHARE = 0.3
PARALLEL_MAX_ASLEEP = 0.1
# A pair that kept less than this many cores busy on average was waiting (I/O), even when
# its threads queued for a core on a crowded machine (which counts as wanting the CPU).
MIN_USED_CORES = 0.05
# Two calls taking turns on the GIL keep about one core busy between them once their waits
# for a core are taken out (``_pair_busy_cores``; 0.64 measured beside hogs at load ~15); a
# pair under this, with no other thread of the program busy meanwhile, mostly waited.
TURN_TAKING_MIN_CORES = 0.5


def _runqueue_wait_s(native_id: Optional[int] = None, *, set_up_reader: bool = True) -> float:
    """Seconds this thread has spent runnable but waiting for a core (Linux), else 0.0.

    A busy machine stretches a CPU-bound call's wall time while its thread waits for a core;
    counting that wait as wanting the CPU (not as I/O) keeps the classification independent
    of how loaded the machine is. Waiting for the GIL is not counted: that thread sleeps.
    ``native_id``: another thread of this process (default: the calling thread).

    The calling thread's counter is read without releasing the GIL where possible: a read
    that released it could wait for the GIL (and queue for a core) between this reading and
    the call's clocks, and that wait would count as the call's (a 10 ms call on two threads
    then looked like it overlapped, 1.66 cores busy, on a loaded machine).
    ``set_up_reader=False``: use that reader only if it is set up already (its set-up imports
    ctypes, 3-14 ms in a fresh process), else read with os.read.
    """
    global _SCHEDSTAT_OK
    if not _SCHEDSTAT_OK:
        return 0.0
    if native_id is None and (set_up_reader or _READER is not None):
        reader = _gil_holding_reader()
        if reader is not None:
            value = reader(_SELF_PATH)
            if value is not None:
                return value[1]
    path = (
        "/proc/thread-self/schedstat"
        if native_id is None
        else f"/proc/self/task/{native_id}/schedstat"
    )
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            return int(os.read(fd, 128).split()[1]) / 1e9
        finally:
            os.close(fd)
    except (OSError, IndexError, ValueError):
        if native_id is None:
            _SCHEDSTAT_OK = False
        return 0.0


_SCHEDSTAT_OK = sys.platform.startswith("linux")
_SELF_PATH = b"/proc/thread-self/schedstat"
_READER: Any = None  # None: not tried yet; False: unavailable; else the reader


def _gil_holding_reader() -> Optional[Callable[[bytes], Optional[tuple[float, float]]]]:
    """A reader of a thread's ``(on-CPU s, run-queue wait s)`` from its schedstat file,
    through libc called with the GIL held (ctypes.PyDLL); None where ctypes or libc is
    not there."""
    global _READER
    if _READER is None:
        try:
            import ctypes

            libc = ctypes.PyDLL(None, use_errno=True)
            c_open, c_read, c_close = libc.open, libc.read, libc.close
            c_open.argtypes = [ctypes.c_char_p, ctypes.c_int]
            c_read.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
            c_read.restype = ctypes.c_ssize_t
            c_close.argtypes = [ctypes.c_int]
            flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
            buffer = ctypes.create_string_buffer(128)  # used only with the GIL held

            def read(path: bytes) -> Optional[tuple[float, float]]:
                fd = c_open(path, flags)
                if fd < 0:
                    return None
                try:
                    count = c_read(fd, buffer, 128)
                finally:
                    c_close(fd)
                if count <= 0:
                    return None
                try:
                    on_cpu, queued = buffer.raw[:count].split()[:2]
                    return int(on_cpu) / 1e9, int(queued) / 1e9
                except ValueError:
                    return None

            _READER = read if read(_SELF_PATH) is not None else False
        except (ImportError, OSError, AttributeError):
            _READER = False
    return _READER or None


def _others_busy() -> dict[int, tuple[float, float]]:
    """Per other Python thread of this process (native id): seconds on a core and waiting
    for one, so far. Only Python threads can hold the GIL; a holder is on a core, or waiting
    for one on a loaded machine (then everyone waiting for the GIL waits with it)."""
    reader = _gil_holding_reader() if _SCHEDSTAT_OK else None
    if reader is None:
        return {}
    me = threading.get_native_id()
    busy = {}
    for thread in threading.enumerate():
        native_id = thread.native_id
        if native_id is None or native_id == me:
            continue
        value = reader(b"/proc/self/task/%d/schedstat" % native_id)
        if value is not None:
            busy[native_id] = value
    return busy


def _busy_since(before: dict[int, tuple[float, float]], exclude: Optional[int] = None) -> float:
    """How long other threads may have held the GIL since ``before``: their time on a core
    (one at a time runs Python) plus the longest any one of them waited for a core (a holder
    preempted on a loaded machine; threads queued together do not hold it together)."""
    on_cpu_s = 0.0
    queued_s = 0.0
    for native_id, (on_cpu, queued) in _others_busy().items():
        if native_id == exclude:
            continue
        on_cpu0, queued0 = before.get(native_id, (0.0, 0.0))
        on_cpu_s += max(0.0, on_cpu - on_cpu0)
        queued_s = max(queued_s, queued - queued0)
    return on_cpu_s + queued_s


@dataclass(frozen=True)
class CallSample:
    """Timing of one call: wall and thread-CPU seconds, and when it started and ended.

    ``runqueue_s``: time the thread was ready to run but had no core (0.0 where unknown).
    ``others_busy_s``: time the process's other Python threads spent on a core or waiting
    for one meanwhile (0.0 where unknown): time they may have held the GIL.
    """

    wall_s: float
    cpu_s: float
    started_s: float
    ended_s: float
    runqueue_s: float = 0.0
    others_busy_s: float = 0.0

    @property
    def slept_s(self) -> float:
        """Time the call's thread was neither on a core nor waiting for one."""
        return max(0.0, self.wall_s - self.cpu_s - self.runqueue_s)

    @property
    def blocked_by_others_s(self) -> float:
        """The part of the call's sleep that other threads' work may explain: they may have
        held the GIL it waited for (a garbage collection, the program's own threads, one of
        them preempted on a loaded machine while holding it), which is not this call waiting
        for I/O. Counted only when they were busy for most of that sleep (a few
        milliseconds of other work during a long wait for I/O leaves it a wait), and when
        the call used a core for at least half of the rest (a call that barely ran, like a
        sleep while new threads queued for a core, stays a wait)."""
        held_s = _gil_held_s(self.others_busy_s, self.slept_s)
        return held_s if _ran_apart_from(self.cpu_s, self.wall_s - self.runqueue_s, held_s) else 0.0

    @property
    def idle_machine_wall_s(self) -> float:
        """The wall time without the waits for a core or for other threads: what the call
        takes on an idle machine in an otherwise idle process."""
        return max(self.wall_s - self.runqueue_s - self.blocked_by_others_s, self.cpu_s, 1e-9)

    @property
    def cpu_share(self) -> float:
        return min(1.0, self.cpu_s / self.idle_machine_wall_s)


# Other threads' work explains a sleep (GIL waits) when it covered at least this share of it
# and the calls used a core for at least CPU_AFTER_GIL_SHARE of the rest of their time.
GIL_HELD_SHARE = 0.75
CPU_AFTER_GIL_SHARE = 0.5
MIN_CPU_PER_HELD = 0.1


def _ran_apart_from(cpu_s: float, awake_s: float, held_s: float) -> bool:
    """Whether calls that used ``cpu_s`` look CPU-bound once ``held_s`` (other threads'
    work) is taken out of ``awake_s``: a core for at least half of the rest, and CPU worth
    a tenth of the time taken out (a sleep that barely ran stays a sleep)."""
    return held_s > 0.0 and cpu_s >= max(
        CPU_AFTER_GIL_SHARE * (awake_s - held_s), MIN_CPU_PER_HELD * held_s
    )


def _gil_held_s(others_busy_s: float, slept_s: float) -> float:
    if slept_s <= 0.0 or others_busy_s < GIL_HELD_SHARE * slept_s:
        return 0.0
    return min(others_busy_s, slept_s)


def _clocks() -> tuple[dict[int, tuple[float, float]], float, float, float]:
    """(other threads' busy times, run-queue wait, thread CPU, wall) now. ``_sample_since``
    reads them in the reverse order, so the run-queue span lies inside the CPU span, inside
    the wall span: a wait for a core at a system call's return between two readings is
    inside the wall time it is taken out of. (With the run-queue counter read outside the
    wall, such a wait counted as queueing outside the call: capped at wall - CPU, it hid a
    call's sleep, and a 5 ms sleep measured 100% CPU under load.) The other threads' times
    are read outermost: reading them costs ~0.1 ms, which would count as the call's."""
    others0 = _others_busy()
    wall0 = time.perf_counter()
    cpu0 = time.thread_time()
    return others0, _runqueue_wait_s(), cpu0, wall0


def _sample_since(start: tuple[dict[int, tuple[float, float]], float, float, float]) -> CallSample:
    others0, queued0, cpu0, wall0 = start
    queued1 = _runqueue_wait_s()
    cpu1 = time.thread_time()
    wall1 = time.perf_counter()
    wall_s = wall1 - wall0
    cpu_s = max(0.0, cpu1 - cpu0)
    # On a core or waiting for one, never both (a safety net: both lie inside the wall).
    queued_s = min(max(0.0, queued1 - queued0), max(0.0, wall_s - cpu_s))
    others_s = min(_busy_since(others0), 2 * wall_s) if others0 else 0.0
    return CallSample(wall_s, cpu_s, wall0, wall1, queued_s, others_s)


class MeasuredCall:
    """Wraps fn; each call leaves its timing in ``self.sample``. Use one wrapper per call.

    While the call runs, ``peek()`` (from any thread) returns a ``CallSample`` of the call so
    far, or None before it started, after it ended or where threads' clocks cannot be read.
    """

    __slots__ = ("_started", "fn", "sample", "start_barrier")

    def __init__(self, fn: Callable[..., Any], start_barrier: Optional[threading.Barrier] = None):
        self.fn = fn
        self.start_barrier = start_barrier
        self.sample: Optional[CallSample] = None
        self._started: Optional[tuple[int, int, tuple[Any, float, float, float]]] = None

    def __call__(self, /, *args: Any, **kwargs: Any) -> Any:
        if self.start_barrier is not None:
            if _SCHEDSTAT_OK:  # its one-time set-up (ctypes' import, ~4 ms) before the start
                _gil_holding_reader()
            with contextlib.suppress(threading.BrokenBarrierError):
                self.start_barrier.wait(PAIR_START_TIMEOUT_S)
        start = _clocks()
        self._started = (threading.get_ident(), threading.get_native_id(), start)
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.sample = _sample_since(start)
            self._started = None

    def peek(self) -> Optional[CallSample]:
        started = self._started
        if started is None or self.sample is not None:
            return None
        ident, native_id, (others0, queued0, cpu0, wall0) = started
        try:
            cpu_s = time.clock_gettime(time.pthread_getcpuclockid(ident)) - cpu0
        except (AttributeError, OSError):  # not POSIX, or the thread just ended
            return None
        now = time.perf_counter()
        cpu_s = max(0.0, cpu_s)
        # Read last (they may wait for the GIL): a wait after ``now`` counts as wanting a
        # core, never as waiting for I/O, and the cap keeps it within the time so far.
        queued1 = _runqueue_wait_s(native_id)
        queued_s = min(max(0.0, queued1 - queued0), max(0.0, now - wall0 - cpu_s))
        others_s = min(_busy_since(others0, native_id), 2 * (now - wall0)) if others0 else 0.0
        return CallSample(now - wall0, cpu_s, wall0, now, queued_s, others_s)


def span_start() -> tuple[float, float, float]:
    """(wall, this thread's CPU, its run-queue wait) now: the start of a span of this thread
    (a lazy inline chunk, the consumer's time included); ``span_since`` ends it. (A map run
    inline imports nothing for it: a span lasts milliseconds, so a read that lets another
    thread take the GIL for a moment does not matter.)"""
    wall0 = time.perf_counter()
    cpu0 = time.thread_time()
    return wall0, cpu0, _runqueue_wait_s(set_up_reader=False)


def span_since(start: tuple[float, float, float]) -> tuple[float, float, float]:
    """(wall s, CPU s, run-queue wait s) of this thread since ``span_start``; read in the
    reverse order, so the waits counted lie inside the wall time (as ``_sample_since``)."""
    wall0, cpu0, queued0 = start
    queued1 = _runqueue_wait_s(set_up_reader=False)
    cpu_s = max(0.0, time.thread_time() - cpu0)
    wall_s = time.perf_counter() - wall0
    return wall_s, cpu_s, min(max(0.0, queued1 - queued0), max(0.0, wall_s - cpu_s))


class TimedCalls:
    """Wraps fn; sums the wall time of its calls (``wall_s``) and counts them (``calls``).

    For calls that run in the consumer's thread as it reads their results (auto's lazy
    inline chunks): the time between calls is the consumer's, not the function's, and is
    left out. Costs ~0.3 us per call, so it is worth it only for calls of tens of
    microseconds or more. Not thread safe (one thread runs the calls)."""

    __slots__ = ("calls", "fn", "wall_s")

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.wall_s = 0.0
        self.calls = 0

    def __call__(self, /, *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return self.fn(*args)
        finally:
            self.wall_s += time.perf_counter() - started
            self.calls += 1


class MeasuredCoroutine:
    """Wraps an ``async def`` fn; awaiting a call leaves its timing in ``self.sample``.

    The CPU time is that of the event loop's thread while the call was pending, so it is
    only this call's own when no other coroutine ran meanwhile (the Executor measures a
    coroutine function's first call alone).
    """

    __slots__ = ("fn", "sample")

    def __init__(self, fn: Callable[..., Awaitable[Any]]):
        self.fn = fn
        self.sample: Optional[CallSample] = None

    async def __call__(self, /, *args: Any, **kwargs: Any) -> Any:
        start = _clocks()
        try:
            return await self.fn(*args, **kwargs)
        finally:
            self.sample = _sample_since(start)


class FunctionProbe:
    """What has been measured of one function so far. Not thread safe: guard it outside."""

    def __init__(self, is_coroutine: bool = False) -> None:
        self.is_coroutine = is_coroutine
        self.singles: list[CallSample] = []
        self.pairs: list[tuple[CallSample, CallSample]] = []

    @property
    def calls(self) -> int:
        return len(self.singles) + 2 * len(self.pairs)

    @property
    def pair(self) -> Optional[tuple[CallSample, CallSample]]:
        """The latest measured pair, if any."""
        return self.pairs[-1] if self.pairs else None

    def overlap(self) -> Optional[float]:
        """Cores the measured pairs kept busy, averaged (None before any pair)."""
        if not self.pairs:
            return None
        telling = [pair for pair in self.pairs if _ran_together(pair)] or self.pairs
        return sum(_pair_overlap(pair) for pair in telling) / len(telling)

    def add_single(self, sample: CallSample) -> None:
        self.singles.append(sample)

    def add_pair(self, first: CallSample, second: CallSample) -> None:
        self.pairs.append((first, second))

    def next_step(self) -> Optional[str]:
        """ "pair" (preferred when two calls are at hand), "single", or None: enough known."""
        overlap = self.overlap()
        if overlap is not None:
            ambiguous = AMBIGUOUS_OVERLAP[0] <= overlap < AMBIGUOUS_OVERLAP[1]
            # Tiny calls run inline whatever they overlap: no second pair for those.
            apart = not any(_ran_together(pair) for pair in self.pairs) and all(
                call.idle_machine_wall_s >= TINY_CALL_S for pair in self.pairs for call in pair
            )
            return "pair" if (ambiguous or apart) and len(self.pairs) < MAX_PAIRS else None
        if self.is_coroutine:
            return None if self.singles else "single"
        if self.singles:
            best = self._best_single()
            if best.cpu_share < IO_SHARE or best.idle_machine_wall_s < TINY_CALL_S:
                return None
            if len(self.singles) >= MAX_SINGLES:
                return None
        return "pair"

    def _best_single(self) -> CallSample:
        # The fastest call: the first one often pays for imports and cold caches.
        return min(self.singles, key=lambda sample: sample.idle_machine_wall_s)

    def measurement(self) -> TaskMeasurement:
        """The TaskMeasurement for verdict.decide_for_task; needs at least one sample."""
        pair_wall_s: Optional[float] = None
        pair_cpu_s: Optional[float] = None
        latest_pair = self.pair
        overlap = self.overlap()
        if latest_pair is not None and overlap is not None:
            pair_wall_s = _pair_elapsed_s(latest_pair)
            pair_cpu_s = overlap * pair_wall_s
        waited = latest_pair is not None and pair_waited(latest_pair)
        if self.singles and not waited:
            best = self._best_single()
            wall_s, cpu_s = best.idle_machine_wall_s, best.cpu_s
        elif latest_pair is not None:
            first, second = latest_pair
            cpu_s = (first.cpu_s + second.cpu_s) / 2
            # A pair that waited overrules the singles: they were measured first and paid
            # for imports, a cold connection or the like (a scraper's first download looks
            # half CPU-bound, while the warm pair after it mostly waits).
            if waited:
                wall_s = (first.idle_machine_wall_s + second.idle_machine_wall_s) / 2
            else:
                # Two CPU-bound calls on two threads stretch each other's wall time while
                # they take turns on the GIL; alone, such a call takes about its CPU time.
                wall_s = max(cpu_s, 1e-9)
        else:
            raise ValueError("nothing measured yet: add a sample first")
        return TaskMeasurement(
            wall_s=wall_s,
            cpu_s=cpu_s,
            pair_wall_s=pair_wall_s,
            is_coroutine=self.is_coroutine,
            calls=self.calls,
            pair_cpu_s=pair_cpu_s,
        )


def pair_waited(pair: tuple[CallSample, CallSample]) -> bool:
    """True when the two calls of a pair mostly waited (I/O) rather than wanted a core.

    Cores the pair used or wanted: two calls taking turns on the GIL keep about one busy
    (one holds the GIL while the other sleeps); two waiting calls keep none. (Each call's
    own CPU share cannot tell: a turn-taker also sleeps half the time.) On a crowded machine
    a waiting call also queues for a core each time it wakes; calls that got almost no CPU
    at all were waiting, however long they queued.
    """
    elapsed_s = _pair_elapsed_s(pair)
    wanted_s = sum(call.cpu_s + call.runqueue_s for call in pair)
    others_s = _gil_held_s(_third_party_busy_s(pair), max(0.0, elapsed_s - wanted_s))
    if not _ran_apart_from(sum(call.cpu_s for call in pair), elapsed_s, others_s):
        others_s = 0.0  # the calls barely ran even when the others were not busy: waiting
    if others_s == 0.0 and _ran_together(pair) and _pair_busy_cores(pair) < TURN_TAKING_MIN_CORES:
        # Not even taking turns: a call that queued for a core after each wake-up counts
        # as wanting the CPU above, but it woke from waiting (a fetch under a CPU hog:
        # 0.25 cores, "wanted" 0.61). (Calls that ran one after the other, like two tiny
        # ones, leave the time between them idle: that tells nothing.)
        return True
    wanted_cores = (wanted_s + others_s) / elapsed_s
    used_cores = (sum(call.cpu_s for call in pair) + others_s) / elapsed_s
    return wanted_cores < IO_SHARE or used_cores < MIN_USED_CORES


def _pair_busy_cores(pair: tuple[CallSample, CallSample]) -> float:
    """Cores the pair's calls kept busy while neither waited for a core: ~1.0 for calls
    taking turns on the GIL (a holder preempted on a loaded machine keeps its partner
    asleep, so the queueing of both is taken out), ~0 for calls waiting for I/O."""
    cpu_s = sum(call.cpu_s for call in pair)
    awake_s = _pair_elapsed_s(pair) - sum(call.runqueue_s for call in pair)
    return cpu_s / max(awake_s, cpu_s, 1e-9)


def _third_party_busy_s(calls: Sequence[CallSample]) -> float:
    """Time threads other than ``calls``' own were busy (on or waiting for a core) while
    they ran: each call's ``others_busy_s`` counts its partners' work too, so that is taken
    out (all of it: an underestimate when the partner ran partly outside the call)."""
    if len(calls) == 1:
        return calls[0].others_busy_s
    best = 0.0
    for index, call in enumerate(calls):
        partners_s = sum(
            other.cpu_s + other.runqueue_s for at, other in enumerate(calls) if at != index
        )
        best = max(best, call.others_busy_s - partners_s)
    return best


def _pair_elapsed_s(pair: tuple[CallSample, CallSample]) -> float:
    first, second = pair
    return max(max(first.ended_s, second.ended_s) - min(first.started_s, second.started_s), 1e-9)


def _pair_overlap(pair: tuple[CallSample, CallSample]) -> float:
    """Cores the pair kept busy: about 2.0 when the calls overlap, 1.0 when they take turns.

    Each thread's CPU share of the time it was not waiting for a core: waiting for a core is
    the machine's load; waiting for the GIL (asleep) is what this looks for. On a loaded
    machine that share blurs (a thread waiting for the GIL also queues for a core), so a
    pair that ran together without sleeping counts as overlapping whatever the share says:
    under the GIL one of two calls running together is always waiting for it, and in good
    part asleep (at least a quarter of the time together, measured on a loaded machine).
    """
    elapsed_s = _pair_elapsed_s(pair)
    overlap = sum(call.cpu_s / max(elapsed_s - call.runqueue_s, call.cpu_s, 1e-9) for call in pair)
    if _ran_together(pair):
        asleep = sum(call.slept_s for call in pair) / _together_s(pair)
        if asleep < PARALLEL_MAX_ASLEEP:
            overlap = max(overlap, 2.0 * (1.0 - asleep))
    return overlap


def _together_s(pair: tuple[CallSample, CallSample]) -> float:
    """How long the two calls of a pair ran at the same time."""
    return max(0.0, min(c.ended_s for c in pair) - max(c.started_s for c in pair))


def _ran_together(pair: tuple[CallSample, CallSample]) -> bool:
    """Whether a pair says anything about overlapping: its calls ran at the same time for a
    good part of the shorter one (on a loaded machine one of two 1 ms calls often starts
    only after the other ended: that pair tells nothing, and another is measured)."""
    return _together_s(pair) >= TOGETHER_SHARE * min(call.wall_s for call in pair)


def since(before: CallSample, now: CallSample) -> CallSample:
    """A running call between two of its peeks (``before`` and ``now``)."""
    return CallSample(
        now.wall_s - before.wall_s,
        max(0.0, now.cpu_s - before.cpu_s),
        before.ended_s,
        now.ended_s,
        max(0.0, now.runqueue_s - before.runqueue_s),
        max(0.0, now.others_busy_s - before.others_busy_s),
    )


def gil_held_by_others(samples: Sequence[CallSample]) -> bool:
    """True when other threads were busy (on or waiting for a core) for most of the time
    ``samples`` (calls running over the same time) slept: they may have held the GIL."""
    if not samples:
        return False
    elapsed_s = min(sample.wall_s for sample in samples)
    wanted_s = sum(sample.cpu_s + sample.runqueue_s for sample in samples)
    slept_s = max(0.0, elapsed_s * len(samples) - wanted_s)
    return _gil_held_s(_third_party_busy_s(samples) * len(samples), slept_s) > 0.0


def waiting_so_far(calls: list[MeasuredCall], *, min_elapsed_s: float = EARLY_AFTER_S) -> bool:
    """True when every call in ``calls`` is still running and has mostly waited so far.

    Lets a caller conclude "I/O-bound" while the first calls are still waiting, instead of
    after they return. Time spent waiting for a core counts as wanting the CPU, so a busy
    machine does not make a CPU-bound call look like waiting.
    """
    peeks = [call.peek() for call in calls]
    if not peeks or any(sample is None for sample in peeks):
        return False
    elapsed_s = min(sample.wall_s for sample in peeks if sample is not None)
    if elapsed_s < min_elapsed_s:
        return False
    samples = [sample for sample in peeks if sample is not None]
    if gil_held_by_others(samples):
        return False  # other threads held the GIL meanwhile: not clear that these wait
    wanted_s = sum(sample.cpu_s + sample.runqueue_s for sample in samples)
    return wanted_s < EARLY_IO_SHARE * elapsed_s * len(peeks)


class DriftWatch:
    """Notices when a function's per-call duration moves far from what was measured.

    ``warmup``: observations to let pass first, when the first calls on a new backend carry
    its start (threads created as the first tasks arrive: 70 calls of a 10 ms sleep handed
    to a new pool of 128 threads on a loaded machine took ~40 ms each from hand-over)."""

    def __init__(
        self, reference_s: float, *, window: int = 16, ratio: float = 4.0, warmup: int = 0
    ) -> None:
        self.reference_s = reference_s
        self.ratio = ratio
        self._recent: deque[float] = deque(maxlen=window)
        self._seen = 0
        self._warmup = warmup

    def observe(self, duration_s: float) -> bool:
        """Record one per-call duration; True when behaviour drifted (checked every window)."""
        if self._warmup > 0:
            self._warmup -= 1
            return False
        self._recent.append(duration_s)
        self._seen += 1
        if self._seen % (self._recent.maxlen or 1):
            return False
        ordered = sorted(self._recent)
        middle = len(ordered) // 2
        median_s = (
            ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
        )
        low, high = sorted((max(median_s, 1e-9), max(self.reference_s, 1e-9)))
        # Tiny calls staying tiny are noise, not drift.
        return high / low > self.ratio and high >= TINY_CALL_S


def measure_three_calls(
    fn: Callable[..., Any], args: tuple, kwargs: dict
) -> tuple[list[Any], TaskMeasurement]:
    """Call fn three times (alone, then two together on two threads); see the module doc.

    Blocking. The first exception of any call is re-raised after all three finished.
    A coroutine function is awaited three times in a row on a private event loop.
    """
    from ._callables import is_coroutine_function

    if is_coroutine_function(fn):
        import asyncio  # imported when needed: asyncio alone doubles gilwise's import time

        probe = FunctionProbe(is_coroutine=True)
        results: list[Any] = []
        for _ in range(3):
            measured = MeasuredCoroutine(fn)
            results.append(asyncio.run(measured(*args, **kwargs)))
            assert measured.sample is not None
            probe.add_single(measured.sample)
        return results, probe.measurement()

    probe = FunctionProbe()
    alone = MeasuredCall(fn)
    outcomes: list[tuple[bool, Any]] = [_capture(alone, args, kwargs)]
    barrier = threading.Barrier(2)
    pair = [MeasuredCall(fn, barrier), MeasuredCall(fn, barrier)]
    pair_outcomes: list[tuple[bool, Any]] = [(False, None), (False, None)]

    def run(index: int) -> None:
        pair_outcomes[index] = _capture(pair[index], args, kwargs)

    threads = [
        threading.Thread(target=run, args=(i,), name=f"gilwise-classify-{i}") for i in (0, 1)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    outcomes.extend(pair_outcomes)
    for ok, value in outcomes:
        if not ok:
            raise value
    assert alone.sample is not None and pair[0].sample is not None and pair[1].sample is not None
    probe.add_single(alone.sample)
    probe.add_pair(pair[0].sample, pair[1].sample)
    return [value for _, value in outcomes], probe.measurement()


def _capture(call: MeasuredCall, args: tuple, kwargs: dict) -> tuple[bool, Any]:
    try:
        return True, call(*args, **kwargs)
    except Exception as exc:
        return False, exc
