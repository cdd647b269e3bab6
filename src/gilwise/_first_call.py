"""A function's first call, run in the caller's thread and timed, with a GIL probe beside it.

auto runs a map's first call in the caller (its result is the map's first). Timed alone, a
call says how long it takes and how much of that its thread was on a core, but not whether
it held the GIL: pure Python and a native function that releases the GIL (hashlib) both
keep their thread busy. Two calls on two threads (the measured pair) can tell, but only
after both ran, taking turns on one core. The probe tells from the one call:

    caller thread:  |====== first call (holds the GIL?) ======|  stop, join
    probe thread:     nap .25 ms, want the GIL ... got it (late?) nap ...

A thread that naps ~0.25 ms at a time and then needs the GIL to go on gets it at once when
the call has released it (native code, I/O, sleep), and only at the next forced switch when
the call holds it: the switch interval, lowered to 0.5 ms while the probe runs so that a
2 ms call gives a few wake-ups. Each wake-up due while the call ran is judged on its own:
kept waiting half a switch interval or more (held), or hardly at all (free). The share of
held wake-ups is the reading; it is clear when there were at least two, at least 3 in 4
agree (one odd wake-up, a timer late on a virtual machine, does not decide), and neither
the probe nor the call's thread waited for a core more than a tenth of the call (on a
loaded machine a wake-up is late for want of a core, and a call preempted without the GIL
leaves it free); else it says nothing (``clear`` is False), and auto measures a pair.
The probe reads no counter while it runs: a read gives up the GIL, and taking it back from
a call that holds it costs a forced switch each time.

The call starts once the probe runs (~0.1 ms; started while the call held the GIL it could
begin only at the first forced switch), waiting at most 2 ms for it (a thread's start can
wait milliseconds for a core on a busy machine, where the reading would say nothing
anyway). It is joined before ``run_first_call`` returns, so the program has one thread
again (the worker service can then fork its zygote from it).

A call holding the GIL is interrupted once per switch interval for some microseconds (~3%
of a first call); one that releases it sees the probe take the GIL briefly every nap.
"""

from __future__ import annotations

import _thread
import os
import sys
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable, Optional, cast

from ._measure import CallSample

# How long the probe thread naps between wake-ups (each needs the GIL to go on).
PROBE_NAP_S = 0.00025
# A wake-up is this late when nobody holds the GIL (the timer's slack and the wake-up).
PROBE_SLACK_S = 0.00007
# While the probe runs, the GIL's switch interval (sys.setswitchinterval) is this short, so
# that a call holding the GIL keeps each wake-up waiting about this long, and a 2 ms call
# already gives a few wake-ups. (Restored after the call; the program has no other thread
# running Python then, so nothing else sees it.)
PROBE_SWITCH_S = 0.0005
# A wake-up kept waiting at least this share of the switch interval found the GIL held; one
# kept waiting at most FREE_SHARE of it found it free (between: neither).
PROBE_HELD_SHARE = 0.5
PROBE_FREE_SHARE = 0.2
# The reading says something once the probe woke this many times while the call ran, at
# least this share of them agreeing, and neither it nor the call's thread waited for a core
# more than this share of the call: a late wake-up would be the machine's load, and a call
# queued without the GIL (after a forced switch) would leave it free (a loaded machine).
PROBE_MIN_WAKES = 2
PROBE_AGREEING = 0.75
PROBE_MAX_QUEUED = 0.1
# The probe stops after this many wake-ups (~20 ms beside a call that releases the GIL,
# ~50 ms beside one that holds it) and puts the switch interval back: a long first call (a
# big download, a minute of CPU) is watched that long, not taxed for its whole length.
PROBE_MAX_WAKES = 64
# How long ``start`` waits for the probe thread to run (~0.1 ms when a core is free; on a busy
# machine it may queue for one, and then it could not watch the call either).
PROBE_READY_WAIT_S = 0.002
# How long ``stop`` waits for the probe thread to end (it ends within a nap).
PROBE_JOIN_TIMEOUT_S = 5.0


class GilReading:
    """What the probe saw while the call ran: ``held_share`` (0..1) of the time it was
    awake, the GIL was held by someone else (the call); ``clear`` False when it was awake
    too little of the call to say (a short call, a busy machine). ``lateness``: each
    wake-up's delay, ``window_s``/``queued_s``: how long the probe watched and waited for a
    core, ``starved``: the call's own thread waited for a core too long (see
    ``run_first_call``); kept so that readings of several calls add up (``merged``)."""

    __slots__ = (
        "awake_s",
        "clear",
        "held_share",
        "lateness",
        "queued_s",
        "starved",
        "wakes",
        "window_s",
    )

    def __init__(
        self,
        held_share: float,
        awake_s: float,
        clear: bool,
        wakes: int = 0,
        *,
        lateness: tuple = (),
        window_s: float = 0.0,
        queued_s: float = 0.0,
    ) -> None:
        self.held_share = held_share
        self.awake_s = awake_s
        self.clear = clear
        self.wakes = wakes
        self.lateness = lateness
        self.window_s = window_s
        self.queued_s = queued_s
        self.starved = False

    def __repr__(self) -> str:
        return (
            f"GilReading(held_share={self.held_share:.2f}, awake_s={self.awake_s:.6f}, "
            f"clear={self.clear}, wakes={self.wakes})"
        )


def merged(readings: list[Optional[GilReading]]) -> Optional[GilReading]:
    """One reading of several calls probed one after the other: their wake-ups together,
    judged as one call's (a 1 ms call gives one or two wake-ups: too few alone). None when
    a call had no reading; not clear when a call's thread was starved of a core."""
    if not readings or any(reading is None for reading in readings):
        return None
    if len(readings) == 1:
        return readings[0]
    parts = cast(list[GilReading], readings)
    reading = _reading(
        [late_s for part in parts for late_s in part.lateness],
        sum(part.awake_s for part in parts),
        sum(part.window_s for part in parts),
        sum(part.queued_s for part in parts),
    )
    if any(part.starved for part in parts):
        reading.clear = False
        reading.starved = True
    return reading


class GilProbe:
    """The probe thread (see the module doc). ``start()`` returns once it runs; ``stop(ended_s)``
    (``ended_s``: when the call ended, perf_counter) joins it and returns a GilReading."""

    def __init__(self, switch_s: Optional[float] = None) -> None:
        # The switch interval to put back when the probe stops by itself (None: leave it).
        self._switch_s = switch_s
        self._done_s = 0.0  # when it stopped by itself (0.0: it did not)
        self._stop = _thread.allocate_lock()
        self._stop.acquire()
        self._ended = _thread.allocate_lock()
        self._ended.acquire()
        self._ready = _thread.allocate_lock()
        self._ready.acquire()
        # Each finished wake-up (when due, how late); None until the probe has one. Only
        # the probe appends to it, and only with the GIL, which ``stop`` holds as it reads.
        self._wakes: Optional[list[tuple[float, float]]] = None
        self._began_s = 0.0
        self._queued0_s = 0.0
        self._native_id: Optional[int] = None
        self._running = False

    def start(self) -> None:
        """Start the probe thread and wait (briefly) until it runs: started while the call
        holds the GIL, it could begin only at the first forced switch (5 ms in)."""
        _thread.start_new_thread(self._run, ())
        self._running = True
        self._ready.acquire(True, PROBE_READY_WAIT_S)

    def _run(self) -> None:
        try:
            self._native_id = threading.get_native_id()
            self._queued0_s = _queued_s(self._native_id)
            clock = time.perf_counter
            stop = self._stop.acquire
            wakes: list[tuple[float, float]] = []  # (when due, how late)
            self._wakes = wakes
            self._began_s = clock()
            self._ready.release()
            while True:
                # Nothing here gives up the GIL but the nap (a read of a counter would, and
                # taking the GIL back from a call that holds it costs a forced switch).
                due_s = clock() + PROBE_NAP_S
                if stop(True, PROBE_NAP_S):
                    return
                wakes.append((due_s, max(0.0, clock() - due_s - PROBE_SLACK_S)))
                if len(wakes) >= PROBE_MAX_WAKES:  # enough: the rest of the call runs alone
                    self._done_s = clock()
                    if self._switch_s is not None:
                        sys.setswitchinterval(self._switch_s)
                    return
        finally:
            self._ended.release()

    def stop(self, started_s: float, ended_s: float) -> Optional[GilReading]:
        """Stop the probe and read the wake-ups due while the call ran (from ``started_s``
        to ``ended_s``, perf_counter); None if it never ran or could not be joined."""
        if not self._running:
            return None
        self._running = False
        wakes = [wake for wake in self._wakes or () if started_s <= wake[0] <= ended_s]
        queued_s = 0.0 if self._native_id is None else _queued_s(self._native_id) - self._queued0_s
        began_s = self._began_s
        self._stop.release()
        if not self._ended.acquire(True, PROBE_JOIN_TIMEOUT_S):
            return None  # cannot happen short of a frozen machine: then no reading
        if not began_s:
            return None  # never ran while the call did (no core for it)
        if self._done_s:  # it stopped by itself: it watched the call until then
            ended_s = min(ended_s, self._done_s)
        window_s = max(0.0, ended_s - max(began_s, started_s))
        awake_s = max(0.0, window_s - queued_s)
        return _reading([late_s for _, late_s in wakes], awake_s, window_s, queued_s)


def _reading(
    lateness: list[float], awake_s: float, window_s: float, queued_s: float = 0.0
) -> GilReading:
    """Each wake-up held (kept waiting about a forced switch) or free (not waiting); the
    share held, clear when most agree and the probe hardly waited for a core (see the
    module doc)."""
    held = sum(1 for late_s in lateness if late_s >= PROBE_HELD_SHARE * PROBE_SWITCH_S)
    free = sum(1 for late_s in lateness if late_s <= PROBE_FREE_SHARE * PROBE_SWITCH_S)
    count = len(lateness)
    share = held / count if count else 0.0
    clear = (
        count >= PROBE_MIN_WAKES
        and max(held, free) >= PROBE_AGREEING * count
        and queued_s <= PROBE_MAX_QUEUED * max(window_s, 1e-9)
        and _SCHEDSTAT_OK
    )
    return GilReading(
        share, awake_s, clear, count, lateness=tuple(lateness), window_s=window_s, queued_s=queued_s
    )


def _queued_s(native_id: int) -> float:
    """Seconds thread ``native_id`` of this process waited for a core so far (Linux), else
    0.0. A plain read (no ctypes: a first call must not pay for importing it)."""
    if not _SCHEDSTAT_OK:
        return 0.0
    try:
        fd = os.open(f"/proc/self/task/{native_id}/schedstat", os.O_RDONLY)
        try:
            return int(os.read(fd, 128).split()[1]) / 1e9
        finally:
            os.close(fd)
    except (OSError, IndexError, ValueError):
        return 0.0


# Without run-queue counters a probe starved of a core looks like one kept from the GIL.
_SCHEDSTAT_OK = sys.platform.startswith("linux") and os.path.exists("/proc/thread-self/schedstat")


class FirstCall:
    """The first call run here: its outcome (a finished future), its timing (a CallSample
    of this thread: wall, CPU, run-queue wait) and the probe's GilReading (None: unknown)."""

    __slots__ = ("gil", "outcome", "sample")

    def __init__(self, outcome: Future, sample: CallSample, gil: Optional[GilReading]) -> None:
        self.outcome = outcome
        self.sample = sample
        self.gil = gil


def run_first_call(fn: Callable[..., Any], args: tuple, *, probe: bool = True) -> FirstCall:
    """Run ``fn(*args)`` in this thread, timed, with a GIL probe beside it (``probe``; only
    in a program whose other threads are not running Python, or they would be read as the
    call). Its exception is caught into the outcome; KeyboardInterrupt and the like
    propagate (the probe is stopped first)."""
    switch_s = sys.getswitchinterval()
    gil_probe = GilProbe(switch_s) if probe else None
    if gil_probe is not None:
        sys.setswitchinterval(PROBE_SWITCH_S)
        gil_probe.start()
    outcome: Future = Future()
    native_id = threading.get_native_id()
    queued0 = _queued_s(native_id)
    cpu0 = time.thread_time()
    wall0 = time.perf_counter()
    try:
        try:
            value = fn(*args)
        except Exception as error:
            wall1, cpu1 = time.perf_counter(), time.thread_time()
            outcome.set_exception(error)
        else:
            wall1, cpu1 = time.perf_counter(), time.thread_time()
            outcome.set_result(value)
            del value
    finally:
        reading = None
        if gil_probe is not None:
            reading = gil_probe.stop(wall0, time.perf_counter())
            sys.setswitchinterval(switch_s)
    cpu_s = max(0.0, cpu1 - cpu0)
    wall_s = wall1 - wall0
    queued_s = min(max(0.0, _queued_s(native_id) - queued0), max(0.0, wall_s - cpu_s))
    if reading is not None and queued_s > PROBE_MAX_QUEUED * wall_s:
        reading.clear = False
        reading.starved = True
    return FirstCall(outcome, CallSample(wall_s, cpu_s, wall0, wall1, queued_s), reading)
