"""The thread-state sampler: runs OUTSIDE the profiled process and reads it through /proc.

Reading the GIL's ``locked`` flag from inside the profiled process is useless (the reader
holds the GIL, or released it to read), so ``monitor`` and ``gilwise profile --pid`` run
``serve`` in a child process with its own GIL on another core: forked from the profiled
process where that is safe, else ``python -m gilwise.probe._sampler`` (see _child).

Protocol of the child (marshal: the same interpreter on both ends, and no pickle import
to slow its start): a fresh interpreter reads SamplerConfig.to_dict() on stdin (a forked
child has it already); the child answers b"R" on stdout once the first sample is taken (or
b"E" and a message, then exits 1); it samples until stdin has a line or closes, then writes
the marshalled ``Sampler.result()`` and exits.

Every sample reads the GIL's ``last_holder``/``locked``/``switch_number`` words and, per
thread, the blocking syscall; a thread's state follows from them (see ``classify``). Samples
are stored run length encoded per thread, so memory grows with state changes, not with time.

GIL hand-offs: a thread woken from its wait for the GIL is "running" to the kernel (on a
CPU, or runnable and waiting for one) before it sets ``locked``; the kernel cannot tell that
window from native work. But a thread inside take_gil cannot leave it without taking the
GIL, and taking it makes the thread ``last_holder`` and bumps ``switch_number``. So a thread
seen waiting for the GIL, then running without holding it, is still acquiring it while it
is not ``last_holder`` and the switch number moved at most once since its wait was seen (to
have taken the GIL and dropped it for native work, it must be ``last_holder``, or another
thread must have taken the GIL after it: two moves). Such samples count as GIL wait.

The other side of a hand-off: a holder made to drop the GIL is preempted by the thread it
signals, and on a busy machine often waits for a CPU inside drop_gil before it waits for the
GIL again; running without the GIL, it looks native. (With more threads, the switch number
also moves twice while a woken waiter waits for a CPU; and a thread woken from any wait
must take the GIL back.) When a thread goes from another state to running without the GIL
and from there straight to waiting for the GIL or holding it, the CPU time the kernel
accounted to it over that window (schedstat) says whether it did native work there: a
hand-off executes microseconds, so under HANDOFF_CPU_NS the window was a hand-off, GIL
wait. (A thread's CPU time is brought up to date whenever it leaves a CPU, so it is exact
where the thread sleeps and at worst one tick behind where it runs.)
"""

from __future__ import annotations

import marshal
import os
import select
import struct
import sys
import time
from array import array

from gilwise.probe import _procfs
from gilwise.probe._frames import FrameLayout, FrameReader, FunctionKey
from gilwise.probe._procfs import (
    FUTEX,
    GIL_HELD,
    GIL_WAIT,
    IO_WAIT,
    LOCK_WAIT,
    NATIVE,
    RUNNING,
    UNKNOWN,
)
from gilwise.probe._record import REQUIRED, Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional

# A window running without the GIL that used less CPU than this was a GIL hand-off.
HANDOFF_CPU_NS = 1_000_000
# States in which a thread runs no Python and stays put until the kernel wakes it.
BLOCKED = frozenset((GIL_WAIT, IO_WAIT, LOCK_WAIT, FUTEX))
# The GIL struct spans interval, last_holder, locked, switch_number, two condvars and two
# mutexes: a futex inside this many bytes after its start is a wait for the GIL.
GIL_STRUCT_BYTES = 256
# How often the thread list and the per-thread CPU clocks are re-read (the list also at once
# when an unknown thread holds the GIL): a thread's CPU time misses at most this much of its
# end. And how often cached thread-state -> thread id mappings are dropped.
THREAD_LIST_S = 0.01
CPU_CLOCKS_S = 0.1
# With more than QUIET_MIN_THREADS threads, a thread blocked in the same wait for
# QUIET_SAMPLES samples in a row is "quiet": its syscall is then read only every QUIET_EVERY
# samples (staggered across threads), and every 10 ms its schedstat run count tells whether
# it ran meanwhile (then it is read every sample again). With 64 idle threads this cuts the
# sampler's CPU from ~30% to ~10% of a core. The price: a quiet thread's short bursts of
# native work (under ~10 ms) can be missed, so with few threads every thread is read every
# sample; a profile says when it subsampled (extra["quiet_subsampled"]).
QUIET_MIN_THREADS = 16
# Up to this many threads, each thread's schedstat stays open too (two descriptors each).
KEEP_SCHED_OPEN_THREADS = 256
QUIET_SAMPLES = 50
QUIET_EVERY = 8


class SamplerConfig(Record):
    """What the sampler needs to know about its target; a plain dict on the child's stdin.

    ``gil_address``: the GIL struct in the target (None: unknown or no GIL). ``holder_chain``:
    how to turn a PyThreadState* into a native thread id: a list of (offset, size) reads,
    each applied to the previous value. ``gil_enabled``: False on a free-threaded build with
    the GIL off, where running threads are simply "native". ``frame_layout``: Python stacks
    read from the target's memory (see _frames), the FrameLayout as a dict, read on every
    ``frame_every``-th sample; None: no stacks from the child. ``follow_children``: also
    sample the target's child processes (see _children). ``rescue_fd``: a pipe to the
    ``gilwise profile`` supervisor; when the target ends without asking for the result (it
    crashed, was killed or called os._exit) the result goes there instead of stdout.
    """

    FIELDS = (
        ("pid", REQUIRED),
        ("rate_hz", REQUIRED),
        ("gil_address", None),
        ("holder_chain", ()),
        ("gil_enabled", True),
        ("machine", None),
        ("duration_s", None),
        ("frame_layout", None),
        ("frame_every", 1),
        ("follow_children", False),
        ("rescue_fd", None),
    )
    __slots__ = tuple(name for name, _ in FIELDS)
    if TYPE_CHECKING:
        pid: int
        rate_hz: float
        gil_address: Optional[int]
        holder_chain: tuple[tuple[int, int], ...]
        gil_enabled: bool
        machine: Optional[str]
        duration_s: Optional[float]
        frame_layout: Optional[dict]
        frame_every: int
        follow_children: bool
        rescue_fd: Optional[int]


class ThreadSeries:
    """Run-length encoded states of one thread: state ``states[i]`` from ``times[i]`` on.

    ``quiet``: consecutive samples in the same blocked state; ``switches``: its schedstat run
    count at the last clock read; ``frame_switches``: the run count when its stack was last
    read while blocked (-1: read while running). ``locks``: the futex address of each
    lock_wait run (0 for other states): threads blocked on one lock share it.
    """

    __slots__ = (
        "acquiring_from",
        "cpu_first_ns",
        "cpu_last_ns",
        "delay_first_ns",
        "delay_last_ns",
        "ended",
        "first_s",
        "frame_run",
        "frame_switches",
        "last_s",
        "locks",
        "name",
        "quiet",
        "released",
        "seen_at_start",
        "states",
        "switches",
        "times",
    )

    def __init__(self, first_s: float, last_s: float, seen_at_start: bool, name: str = "") -> None:
        self.first_s = first_s
        self.last_s = last_s
        self.seen_at_start = seen_at_start
        self.name = name
        self.times = array("d")
        self.states = array("b")
        self.locks = array("Q")
        self.cpu_first_ns: Optional[int] = None
        self.cpu_last_ns: Optional[int] = None
        self.delay_first_ns: Optional[int] = None
        self.delay_last_ns: Optional[int] = None
        self.ended = False
        self.quiet = 0
        self.switches = -1
        self.frame_switches = -1
        self.frame_run = -1
        # The GIL's switch number when this thread was last seen waiting for the GIL, while
        # it may still be acquiring it (None: it is not).
        self.acquiring_from: Optional[int] = None
        # (state before, schedstat) when it went from another state to running without the
        # GIL.
        self.released: Optional[tuple[int, tuple[int, int, int]]] = None

    def record(self, now: float, state: int, lock: int = 0) -> None:
        if not self.states or self.states[-1] != state or self.locks[-1] != lock:
            self.times.append(now)
            self.states.append(state)
            self.locks.append(lock)
            self.quiet = 0
        elif state in BLOCKED:
            self.quiet += 1
        self.last_s = now


class Sampler:
    """Samples one process's threads; not thread safe; call ``sample`` at the sampling rate.

    Raises OSError from the constructor when the target's memory or threads cannot be read
    (permissions, Yama, the process is gone).
    """

    def __init__(self, config: SamplerConfig) -> None:
        self.config = config
        self.pid = config.pid
        futex_numbers, io_numbers = _procfs.syscall_tables(config.machine)
        self._futex = futex_numbers
        self._io = io_numbers
        self._memory: Optional[_procfs.MemoryReader] = None
        if config.gil_address is not None:
            self._memory = _procfs.MemoryReader(self.pid)
            self._memory.read(config.gil_address, 8)  # fail now, not mid-run
        self._gil_low = config.gil_address or 0
        self._gil_high = self._gil_low + GIL_STRUCT_BYTES if config.gil_address else 0
        self._readers: dict[int, _procfs.ThreadReader] = {}
        self._holder_cache: dict[int, int] = {}
        self._retried: set[int] = set()
        self._last_tstate = 0
        self._holder_tstate = 0  # last_holder, whether or not the GIL is locked now
        self._switch: Optional[int] = None  # the GIL's switch_number (None: unreadable)
        self.threads: dict[int, ThreadSeries] = {}
        self.holder_times = array("d")
        self.holder_tids = array("q")
        self.samples = 0
        self.late_samples = 0
        self.start_s: Optional[float] = None
        self.stop_s: Optional[float] = None
        self._next_list_s = 0.0
        self._next_cpu_s = 0.0
        self.errors: list[str] = []
        self.scheduling = "normal"
        self._cpu_at_start_s = 0.0
        self._frames: Optional[FrameReader] = None
        # Per thread: (sample times, stack ids) run-length encoded; a stack id indexes
        # stack_table (each stack a tuple of FunctionKeys, root first).
        self.frame_series: dict[int, tuple[array, array]] = {}
        self.stack_table: list[tuple[FunctionKey, ...]] = []
        self._stack_ids: dict[tuple[FunctionKey, ...], int] = {}
        if config.frame_layout is not None and self._memory is not None:
            self._frames = FrameReader(
                self._memory.read, FrameLayout.from_dict(config.frame_layout)
            )
        self._frame_every = max(1, int(config.frame_every))
        self._tstates: list[int] = []
        self._next_tstates_s = 0.0
        self.frame_samples = 0
        self.quiet_subsampled = False
        self._refresh(time.monotonic(), at_start=True)
        if not self._readers:
            raise OSError(f"process {self.pid} has no readable threads in /proc/{self.pid}/task")

    # -- thread list ---------------------------------------------------------------------

    def _refresh(self, now: float, at_start: bool = False) -> None:
        current = set(_procfs.list_threads(self.pid))
        for tid in list(self._readers):
            if tid not in current:
                self._readers.pop(tid).close()
                self.threads[tid].ended = True
        for tid in current:
            if tid not in self._readers:
                try:
                    self._readers[tid] = _procfs.ThreadReader(
                        self.pid, tid, keep_sched_open=len(current) <= KEEP_SCHED_OPEN_THREADS
                    )
                except OSError as exc:
                    if at_start and not self._readers and tid == self.pid:
                        raise
                    self.errors.append(f"thread {tid}: {exc}")
                    continue
                series = self.threads.get(tid)
                if series is None or series.ended:
                    self.threads[tid] = ThreadSeries(
                        now, now, at_start, _procfs.thread_name(self.pid, tid)
                    )
        for tid in self._readers:
            self._read_cpu(tid)
        if now >= self._next_cpu_s:
            # A freed PyThreadState's address can be reused by a new thread.
            self._holder_cache.clear()
            self._retried.clear()
            self._next_cpu_s = now + CPU_CLOCKS_S
        self._next_list_s = now + THREAD_LIST_S

    def _read_cpu(self, tid: int) -> None:
        sched = self._readers[tid].sched_ns()
        if sched is not None:
            series = self.threads[tid]
            if series.cpu_first_ns is None:
                series.cpu_first_ns = sched[0] if series.seen_at_start else 0
                series.delay_first_ns = sched[1] if series.seen_at_start else 0
            series.cpu_last_ns, series.delay_last_ns, switches = sched
            if switches != series.switches:
                series.quiet = 0  # it ran since the last read: watch it every sample again
                series.switches = switches

    # -- one sample ----------------------------------------------------------------------

    def _holder(self) -> int:
        """Native id of the thread holding the GIL; 0 if free, -1 if held by an unknown one."""
        assert self._memory is not None
        try:
            raw = self._memory.read(self._gil_low + 8, 24)
        except OSError:
            return 0
        if len(raw) < 24:
            self._switch = None
            return 0
        tstate, locked, switch = struct.unpack("<Qi4xQ", raw)
        self._holder_tstate = tstate
        self._switch = switch
        if not locked:
            return 0
        self._last_tstate = tstate
        return self._thread_id(tstate, cache_unknown=True)

    def _thread_id(self, tstate: int, *, cache_unknown: bool = False) -> int:
        """The native id of the thread whose PyThreadState is ``tstate``; -1 if unknown.

        Cached; a cached id whose thread has ended is resolved again (a new thread reuses
        the freed state's memory). ``cache_unknown``: remember -1 too (the GIL holder path,
        which retries through a thread-list refresh instead).
        """
        tid = self._holder_cache.get(tstate)
        if tid is not None and (tid in self._readers or (tid == -1 and cache_unknown)):
            return tid
        tid = self._resolve(tstate)
        if tid != -1 or cache_unknown:
            self._holder_cache[tstate] = tid
        return tid

    def _resolve(self, tstate: int) -> int:
        assert self._memory is not None
        chain = self.config.holder_chain
        value = _procfs.follow_chain(self._memory.read, tstate, chain) if chain else None
        return value if value is not None and value in self._readers else -1

    def classify(self, syscall: tuple[int, int], holds_gil: bool) -> int:
        """The state code of a thread from its syscall (see ThreadReader) and GIL ownership."""
        if holds_gil:
            return GIL_HELD
        number, first_arg = syscall
        if number == -1:
            if not self.config.gil_enabled:
                return NATIVE
            return NATIVE if self._memory is not None else RUNNING
        if number in self._futex:
            if self._gil_high and self._gil_low <= first_arg < self._gil_high:
                return GIL_WAIT
            if self._memory is None and self.config.gil_enabled:
                return FUTEX
            return LOCK_WAIT
        if number in self._io:
            return IO_WAIT
        return UNKNOWN

    def _handing_over(self, tid: int, series: ThreadSeries) -> int:
        """GIL_WAIT while a running thread seen waiting for the GIL may still be taking it
        (see the module docstring), else NATIVE (and it is no longer followed)."""
        since = series.acquiring_from
        switch = self._switch
        if (
            since is not None
            and switch is not None
            and 0 <= switch - since <= 1
            and self._thread_id(self._holder_tstate) != tid
        ):
            return GIL_WAIT
        series.acquiring_from = None
        return NATIVE

    @staticmethod
    def _released(
        now: float, state: int, series: ThreadSeries, reader: _procfs.ThreadReader
    ) -> None:
        """Follow a window running without the GIL that ends on the GIL (see the module
        docstring); turn it into GIL wait when the thread did no native work in it."""
        previous = series.states[-1] if series.states else -1
        if state == NATIVE:
            if previous != NATIVE:
                sched = reader.sched_ns()
                series.released = (previous, sched) if sched is not None else None
            return
        released, series.released = series.released, None
        if released is None or previous != NATIVE:
            return
        if state not in (GIL_WAIT, GIL_HELD):
            return
        before = released[1]
        after = reader.sched_ns()
        if after is None or after[0] - before[0] >= HANDOFF_CPU_NS:
            return
        # Ending on the GIL's wait the thread sleeps, so its CPU time is exact. Ending as the
        # holder it runs, and its CPU time may lag by a tick: a short native call could
        # read as none. Then only a thread put back on a CPU during the window (it was off
        # one, waiting) is taken as handing over.
        if state == GIL_WAIT or after[2] > before[2]:
            series.states[-1] = GIL_WAIT

    def sample(self) -> bool:
        """Take one sample; False when the target process is gone."""
        now = time.monotonic()
        if self.start_s is None:
            self.start_s = now
            self._cpu_at_start_s = time.process_time()
        if now >= self._next_list_s:
            self._refresh(now)
            if not self._readers:
                return False
        holder = self._holder() if self._memory is not None else 0
        if holder == -1 and self._last_tstate not in self._retried:
            # A thread we have not listed yet may hold the GIL: list threads and resolve
            # again, once per unknown thread state (until the next CPU-clock refresh).
            self._retried.add(self._last_tstate)
            self._refresh(now)
            self._holder_cache.pop(self._last_tstate, None)
            holder = self._holder()
        gone = []
        turn = self.samples % QUIET_EVERY
        subsample = len(self._readers) > QUIET_MIN_THREADS
        for tid, reader in self._readers.items():
            series = self.threads[tid]
            if (
                subsample
                and series.quiet >= QUIET_SAMPLES
                and tid % QUIET_EVERY != turn
                and holder != tid
            ):
                self.quiet_subsampled = True
                continue
            syscall = reader.syscall()
            if syscall is None:
                gone.append(tid)
                continue
            state = self.classify(syscall, holder == tid)
            if state == GIL_WAIT:
                if series.acquiring_from is None:
                    series.acquiring_from = self._switch
            elif state == NATIVE and series.acquiring_from is not None:
                state = self._handing_over(tid, series)
            else:
                series.acquiring_from = None
            if series.released is not None or state == NATIVE:
                self._released(now, state, series, reader)
            series.record(now, state, syscall[1] if state == LOCK_WAIT else 0)
        for tid in gone:
            self._readers.pop(tid).close()
            self.threads[tid].ended = True
        if not self.holder_tids or self.holder_tids[-1] != holder:
            self.holder_times.append(now)
            self.holder_tids.append(holder)
        if self._frames is not None and self.samples % self._frame_every == 0:
            self._sample_frames(now)
            self.frame_samples += 1
        self.samples += 1
        self.stop_s = now
        return bool(self._readers)

    def _sample_frames(self, now: float) -> None:
        """Record each Python thread's call stack (read from the target's memory)."""
        assert self._frames is not None
        frames = self._frames
        if not self._tstates or now >= self._next_tstates_s:
            self._tstates = frames.thread_states()
            self._next_tstates_s = now + THREAD_LIST_S
        resolved = [(tstate, self._thread_id(tstate)) for tstate in self._tstates]
        claims: dict[int, int] = {}
        for _, tid in resolved:
            claims[tid] = claims.get(tid, 0) + 1
        for tstate, tid in resolved:
            if tid == -1:
                continue  # a thread state whose thread we have not listed (or no longer)
            if claims[tid] > 1:
                # Two states name one thread: on 3.9/3.10 a new thread's state carries its
                # creator's id until the new thread starts running. Skip both this time and
                # resolve again next time, so neither gets the other's frames.
                self._holder_cache.pop(tstate, None)
                continue
            thread = self.threads.get(tid)
            reader = self._readers.get(tid)
            # A blocked span takes the first stack read inside it (see _build), so the first
            # read of each new state run is recorded even when its stack is the one before:
            # a thread that wakes, calls on and blocks again between two state samples shows
            # as one blocked run, and an unrecorded read would leave that run's head to the
            # next different stack (a whole 20 ms sleep given to the next function).
            run = len(thread.states) if thread is not None else -1
            if thread is not None and reader is not None:
                if thread.states and thread.states[-1] in BLOCKED:
                    # Blocked, and not put on a CPU since its stack was last read: it ran no
                    # Python, so its innermost frame is the same (one small read, not four).
                    sched = reader.sched_ns()
                    if sched is not None and sched[2] == thread.frame_switches:
                        if thread.frame_run != run and tid in self.frame_series:
                            times, ids = self.frame_series[tid]
                            times.append(now)
                            ids.append(ids[-1])
                            thread.frame_run = run
                        continue
                    # The run count is kept only if the thread is still blocked after it was
                    # read: it may have woken since this sample's state read, and a thread
                    # that wakes, calls on and blocks again without losing its CPU keeps its
                    # count, so a count taken while it ran would hide its next wait's stack.
                    call = reader.syscall()
                    still_blocked = call is not None and call[0] != -1
                    thread.frame_switches = sched[2] if sched is not None and still_blocked else -1
                else:
                    thread.frame_switches = -1
            stack = frames.stack(tstate)
            stack_id = self._stack_ids.get(stack)
            if stack_id is None:
                stack_id = self._stack_ids[stack] = len(self.stack_table)
                self.stack_table.append(stack)
            series = self.frame_series.get(tid)
            if series is None:
                series = self.frame_series[tid] = (array("d"), array("l"))
            times, ids = series
            if not ids or ids[-1] != stack_id or (thread is not None and thread.frame_run != run):
                times.append(now)
                ids.append(stack_id)
            if thread is not None:
                thread.frame_run = run

    def run_until(self, should_stop, deadline_s: Optional[float] = None) -> None:
        """Sample at the configured rate until ``should_stop(timeout_s)`` returns True.

        ``should_stop`` is also the sleep between samples: it may block up to ``timeout_s``.
        """
        period = 1.0 / self.config.rate_hz
        next_at = time.monotonic()
        while True:
            if not self.sample():
                return
            next_at += period
            now = time.monotonic()
            if deadline_s is not None and now >= deadline_s:
                return
            if next_at < now:
                self.late_samples += 1
                next_at = now + period
            if should_stop(next_at - now):
                return

    def finish(self) -> None:
        """Read the final CPU clocks and close every /proc file."""
        now = time.monotonic()
        for tid in self._readers:
            self._read_cpu(tid)
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()
        if self._memory is not None:
            self._memory.close()
        if self.stop_s is None:
            self.stop_s = now

    def result(self) -> dict[str, Any]:
        """Everything measured, as plain data (lists, dicts, numbers) for pickling."""
        return {
            "pid": self.pid,
            "start_s": self.start_s,
            "stop_s": self.stop_s,
            "interval_s": 1.0 / self.config.rate_hz,
            "samples": self.samples,
            "late_samples": self.late_samples,
            "gil_known": self._memory is not None,
            "gil_enabled": self.config.gil_enabled,
            "holder_times": self.holder_times.tolist(),
            "holder_tids": self.holder_tids.tolist(),
            "threads": {
                tid: {
                    "first_s": s.first_s,
                    "last_s": s.last_s,
                    "seen_at_start": s.seen_at_start,
                    "name": s.name,
                    "times": s.times.tolist(),
                    "states": s.states.tolist(),
                    "locks": s.locks.tolist(),
                    "cpu_first_ns": s.cpu_first_ns,
                    "cpu_last_ns": s.cpu_last_ns,
                    "delay_first_ns": s.delay_first_ns,
                    "delay_last_ns": s.delay_last_ns,
                    "ended": s.ended,
                }
                for tid, s in self.threads.items()
            },
            "frames": {
                tid: {"times": times.tolist(), "stacks": ids.tolist()}
                for tid, (times, ids) in self.frame_series.items()
            }
            if self._frames is not None
            else None,
            "stack_table": self.stack_table,
            "frame_samples": self.frame_samples,
            "quiet_subsampled": self.quiet_subsampled,
            "errors": list(self.errors),
            "scheduling": self.scheduling,
            # CPU the sampling itself took (start-up of the child excluded).
            "sampler_cpu_s": time.process_time() - self._cpu_at_start_s,
        }


def raise_priority() -> str:
    """Ask the scheduler to run the sampler ahead of ordinary processes (best effort).

    On a saturated machine a sampler that waits for a CPU samples late, mostly when the
    profiled threads have just given up a CPU, which biases every fraction towards
    "waiting" (measured: a 70% duty spinner read as 58% with nice -10 under load 4 on 2
    cores; SCHED_FIFO kept every sample within 1.2 ms and read 70.6%). The sampler sleeps
    between samples and uses a few percent of one core, and the kernel's RT throttling
    bounds it anyway. Needs root, CAP_SYS_NICE or RLIMIT_RTPRIO; returns the policy used:
    "fifo", "nice" or "normal".
    """
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        return "fifo"
    except (OSError, AttributeError):
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, 0, -5)
        return "nice"
    except (OSError, AttributeError):
        return "normal"


def raise_file_limit() -> None:
    """Two kept-open /proc files per thread: let a process with hundreds of threads fit."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = hard if hard != resource.RLIM_INFINITY else 1 << 20
        if soft != resource.RLIM_INFINITY and soft < target:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ImportError, ValueError, OSError):
        pass


def _child_main() -> int:
    """``python -m gilwise.probe._sampler``: the config arrives marshalled on stdin."""
    stdin = sys.stdin.buffer
    try:
        data = marshal.load(stdin)
    except EOFError:
        return 0
    return serve(SamplerConfig.from_dict(data), stdin.fileno(), sys.stdout.buffer)


def serve(config: SamplerConfig, control_fd: int, out: Any) -> int:
    """Sample ``config.pid`` until ``control_fd`` has a line or closes; returns the exit code.

    Writes b"R" to ``out`` (a binary file) once the first sample is taken, or b"E" and the
    reason when the target cannot be read (exit code 1); at the end the marshalled
    ``result()``, to the rescue pipe instead when the target ended without asking.
    """
    scheduling = raise_priority()
    raise_file_limit()
    try:
        sampler = Sampler(config)
        sampler.scheduling = scheduling
        if config.follow_children:
            from gilwise.probe._children import Family

            sampler = Family(sampler)  # type: ignore[assignment]
        sampler.sample()
    except OSError as exc:
        out.write(b"E" + str(exc).encode(errors="replace"))
        out.flush()
        return 1
    out.write(b"R")
    out.flush()

    asked: list[bytes] = []

    def stop_requested(timeout_s: float) -> bool:
        ready, _, _ = select.select([control_fd], [], [], max(0.0, timeout_s))
        if ready:
            asked.append(os.read(control_fd, 64))
        return bool(ready)

    started = sampler.start_s if sampler.start_s is not None else time.monotonic()
    deadline = None if config.duration_s is None else started + config.duration_s
    sampler.run_until(stop_requested, deadline_s=deadline)
    sampler.sample()
    sampler.finish()
    if config.rescue_fd is not None and not any(asked):
        # The target ended without asking (a crash, a signal, os._exit): nobody reads our
        # output any more, so the supervisor gets the result.
        with os.fdopen(config.rescue_fd, "wb") as rescue:
            marshal.dump(sampler.result(), rescue)
        return 0
    marshal.dump(sampler.result(), out)
    out.flush()
    return 0


if __name__ == "__main__":
    # Sampling is latency-sensitive; the profiled program's signals are not ours.
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(_child_main())
