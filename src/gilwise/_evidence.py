"""What a Profile says happened, in the terms verdicts are made of.

_verdict.py decides; this module only adds up: per-state seconds over the threads (with the
wait reasons that are never contention kept apart), the threads that wanted the GIL, the
most-waited lock, the event-loop threads kept busy inside a callback, and separate waits
counted from the timeline. Pure functions of a Profile: no clocks, no probe.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Optional

from ._model import (
    QUIET_STATES,
    Frame,
    FunctionStats,
    LockStats,
    Profile,
    StackStats,
    ThreadStats,
)

# A thread "wants the GIL" when holding or awaiting it took this share of its wall time.
WANTS_GIL_SHARE = 0.2
# Without wait reasons (a /1 profile, no stacks), lock waits count as contention only for
# threads that also worked this share of their time (a joining main thread or an idle
# worker waits on locks without contending).
WORKING_SHARE = 0.05
# A timeline span in io_wait shorter than this is not counted as a separate wait.
MIN_WAIT_SPAN_S = 0.001


def busy_s(thread: ThreadStats) -> float:
    """Seconds the thread ran: Python holding the GIL plus native code without it."""
    return (thread.gil_held_s or 0.0) + (thread.native_s or 0.0)


def quiet_s(thread: ThreadStats) -> Optional[float]:
    """Seconds blocked for a reason that is never contention (idle, join, result); None
    when no stack told the reasons."""
    parts = (thread.idle_s, thread.join_wait_s, thread.result_wait_s)
    if all(part is None for part in parts):
        return None
    return sum(part or 0.0 for part in parts)


# Innermost frames of a lock wait that is a wait for work, a join or a result (a Condition,
# an Event, a queue, a pool's plumbing), not a contended acquire. Used only when the probe
# did not tell the wait reasons (a /1 profile): then the share of the functions' lock waits
# spent in these stands for every thread's.
_QUIET_WAIT_FILES = (
    "/threading.py",
    "/queue.py",
    "/concurrent/futures/",
    "/multiprocessing/",
    "/asyncio/",
    "/selectors.py",
    "/subprocess.py",
    "/gilwise/",
)


def _is_quiet_wait_file(path: str) -> bool:
    path = path.replace("\\", "/")
    return any(
        marker in path if marker.endswith("/") else path.endswith(marker)
        for marker in _QUIET_WAIT_FILES
    )


def contended_share(profile: Profile) -> Optional[float]:
    """Without wait reasons: the share of the functions' lock-wait seconds spent acquiring
    a lock in the program's own code (not in a Condition, Event, queue, join or pool);
    None when no function recorded a lock wait or the probe told the reasons."""
    if any(quiet_s(t) is not None for t in profile.threads):
        # The probe told reasons: the functions' lock waits are contended acquires already,
        # and a thread it could not read (no stack yet) is judged by its own work.
        return None
    total = sum(f.lock_wait_s for f in profile.functions)
    if total <= 0:
        return None
    quiet = sum(f.lock_wait_s for f in profile.functions if _is_quiet_wait_file(f.file))
    return max(0.0, total - quiet) / total


def contended_lock_s(thread: ThreadStats, share: Optional[float] = None) -> float:
    """Seconds the thread waited to acquire a lock another thread held.

    With wait reasons, lock_wait_s is exactly that. Without them it also holds joins and idle
    workers' waits: ``share`` (see contended_share) scales it when the functions tell, else
    it counts only for threads that also did work."""
    lock = thread.lock_wait_s or 0.0
    if quiet_s(thread) is not None:
        return lock
    if share is not None:
        return lock * share
    # Its own CPU clock where measured: on a busy machine a thread that only woke up and
    # waited for a core reads as running native code.
    worked_s = thread.cpu_s if thread.cpu_s is not None else busy_s(thread)
    return lock if worked_s >= WORKING_SHARE * thread.wall_s else 0.0


@dataclass(frozen=True)
class Totals:
    """Seconds added up over a profile's threads, per kind of time."""

    wall_s: float
    held_s: float
    gil_wait_s: float
    native_s: float
    io_s: float
    lock_s: float  # contended lock acquires only
    idle_s: float
    join_wait_s: float
    result_wait_s: float
    reasons_known: bool  # some thread's wait reasons were told by its stacks
    #: Runnable but waiting for a CPU (a busy machine): also inside held_s or native_s.
    cpu_wait_s: float = 0.0

    @property
    def busy_s(self) -> float:
        return self.held_s + self.native_s

    #: The threads' own CPU clocks added up; None when some thread's was not measured.
    cpu_s: Optional[float] = None

    @property
    def work_s(self) -> float:
        """Seconds threads really ran on a CPU: their CPU clocks where measured, else busy
        time less the time they were runnable but waited for a core (on a loaded machine
        "native" is mostly that)."""
        if self.cpu_s is not None:
            return min(self.cpu_s, self.busy_s) if self.busy_s > 0 else self.cpu_s
        return max(self.busy_s - self.cpu_wait_s, 0.0)

    @property
    def active_s(self) -> float:
        """Time threads worked or waited for something a change of model could affect."""
        return self.busy_s + self.io_s + self.gil_wait_s + self.lock_s

    @property
    def activity_s(self) -> float:
        """active_s with the CPU really used in place of busy time (see work_s)."""
        return self.work_s + self.io_s + self.gil_wait_s + self.lock_s

    @property
    def quiet_s(self) -> float:
        return self.idle_s + self.join_wait_s + self.result_wait_s


def totals(profile: Profile) -> Totals:
    threads = profile.threads
    share = contended_share(profile)

    def total(attr: str) -> float:
        return sum(getattr(t, attr) or 0.0 for t in threads)

    return Totals(
        wall_s=max(profile.wall_s, 1e-9),
        held_s=total("gil_held_s"),
        gil_wait_s=total("gil_wait_s"),
        native_s=total("native_s"),
        io_s=total("io_wait_s"),
        lock_s=sum(contended_lock_s(t, share) for t in threads),
        idle_s=total("idle_s"),
        join_wait_s=total("join_wait_s"),
        result_wait_s=total("result_wait_s"),
        reasons_known=any(quiet_s(t) is not None for t in threads),
        cpu_wait_s=total("cpu_wait_s"),
        cpu_s=total("cpu_s") if threads and all(t.cpu_s is not None for t in threads) else None,
    )


def wanting_gil(profile: Profile) -> list[ThreadStats]:
    """Threads that spent at least WANTS_GIL_SHARE of their wall time holding or awaiting
    the GIL and held it WORKING_SHARE of it, busiest first."""
    wanting = [
        t
        for t in profile.threads
        if (t.gil_held_s or 0.0) + (t.gil_wait_s or 0.0) >= WANTS_GIL_SHARE * t.wall_s > 0
        # A thread that mostly waits for the GIL but has little Python of its own to run (a
        # producer feeding a busy stage) gains nothing from a GIL of its own.
        and (t.gil_held_s or 0.0) >= WORKING_SHARE * t.wall_s
    ]
    return sorted(wanting, key=lambda t: -(t.gil_held_s or 0.0))


def lock_waiters(profile: Profile) -> list[ThreadStats]:
    """Threads that waited on a contended lock a good share (WANTS_GIL_SHARE) of their time."""
    share = contended_share(profile)
    return [
        t for t in profile.threads if contended_lock_s(t, share) >= WANTS_GIL_SHARE * t.wall_s > 0
    ]


def top_lock(profile: Profile) -> Optional[LockStats]:
    """The contended lock threads waited on longest, if the probe grouped locks."""
    return max(profile.locks, key=lambda lock: lock.wait_s, default=None)


def off_cpu_share_of_holders(lock: LockStats, threads: list[ThreadStats]) -> Optional[float]:
    """Share of the lock holders' time (while someone waited for ``lock``) spent off the
    CPU: blocked in I/O, or woken from it and queued for a core. None when the probe did not
    record the holders' states, 0.0 when the holders ran Python (held the GIL) most of it
    or did no I/O at all.

    "Running native" counts as off the CPU beyond what the lock's ``threads`` really used
    (their CPU clocks): on a busy machine a holder back from fsync waits for a core, which
    the states count as running native code."""
    states = lock.holder_states
    io = states.get("io_wait", 0.0)
    python = states.get("gil_held", 0.0)
    native = states.get("native", 0.0)
    if io + python + native <= 0:
        return None
    if python >= io + native:
        return 0.0
    clocks = [t.cpu_s for t in threads]
    native_cpu = native
    if threads and all(cpu is not None for cpu in clocks):
        native_cpu = min(native, max(sum(cpu or 0.0 for cpu in clocks) - python, 0.0))
    # Without I/O of its own (a tenth of its CPU at least: a fast fsync is short), a holder
    # queued for a core is just a busy machine, not a lock held across I/O.
    if io <= 0 or io < 0.1 * (native_cpu + python):
        return 0.0
    return (io + native - native_cpu) / (io + python + native)


def top_function(profile: Profile, *attrs: str) -> Optional[str]:
    """``name (file:line)`` of the function with the most seconds in ``attrs`` (default
    GIL held) added up, if any."""
    names = attrs or ("gil_held_s",)

    def seconds(function: FunctionStats) -> float:
        return sum(getattr(function, name) for name in names)

    best = max(profile.functions, key=seconds, default=None)
    if best is None or seconds(best) <= 0:
        return None
    return f"{best.function} ({_short_file(best.file)}:{best.line})"


def frame_label(frame: Frame) -> str:
    return f"{frame.function} ({_short_file(frame.file)}:{frame.line})"


def _short_file(path: str) -> str:
    return path.rsplit("/", 1)[-1]


# --- separate waits (timeline) ----------------------------------------------------------


@dataclass(frozen=True)
class Waits:
    """The I/O waits of the run as the timeline saw them."""

    count: int
    longest_s: float


def io_waits(profile: Profile) -> Optional[Waits]:
    """Separate io_wait stretches over all threads; None without a timeline."""
    if not profile.timeline:
        return None
    spans = [s for s in profile.timeline if s.state == "io_wait"]
    # A thread's consecutive spans (the timeline may split one wait) form one wait.
    by_thread: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for span in spans:
        by_thread[span.native_id].append((span.start_s, span.end_s))
    count, longest = 0, 0.0
    for stretches in by_thread.values():
        stretches.sort()
        current: Optional[list[float]] = None
        merged: list[list[float]] = []
        for start, end in stretches:
            if current is not None and start <= current[1] + 1e-9:
                current[1] = max(current[1], end)
            else:
                current = [start, end]
                merged.append(current)
        for start, end in merged:
            if end - start >= MIN_WAIT_SPAN_S:
                count += 1
                longest = max(longest, end - start)
    return Waits(count, longest)


# --- asyncio event loops (stacks) -------------------------------------------------------


@dataclass(frozen=True)
class LoopBlock:
    """An event-loop thread's time inside one callback (a coroutine step) instead of
    waiting in its selector."""

    thread: ThreadStats
    blocked_s: float
    #: The coroutine or callback that ran (the first frame outside asyncio), and the
    #: innermost frame outside asyncio (the blocking call site), with its state.
    coroutine: str
    innermost: str
    state: str


def _is_loop_step(frame: Frame) -> bool:
    return frame.file.endswith(("asyncio/base_events.py", "asyncio\\base_events.py")) and (
        frame.function.endswith("_run_once")
    )


def _is_asyncio(frame: Frame) -> bool:
    return "/asyncio/" in frame.file or "\\asyncio\\" in frame.file


def _user_frames(stack: StackStats) -> Optional[tuple[Frame, ...]]:
    """The frames a loop's callback ran below ``_run_once``, without asyncio's own, or
    None when the stack is not inside an event loop's callback."""
    for index, frame in enumerate(stack.frames):
        if _is_loop_step(frame):
            below = stack.frames[index + 1 :]
            user = tuple(f for f in below if not _is_asyncio(f))
            # Selector waits (select/epoll) live in selectors.py, not in a callback.
            if not user or all(f.file.endswith("selectors.py") for f in user):
                return None
            return user
    return None


def loop_blocks(profile: Profile) -> list[LoopBlock]:
    """Per event-loop thread, its time in callbacks (any state but the quiet ones), with
    the callback that took most of it; longest first. Empty without stacks."""
    by_thread: dict[int, dict[tuple[Frame, Frame, str], float]] = defaultdict(
        lambda: defaultdict(float)
    )
    for stack in profile.stacks:
        if stack.state in QUIET_STATES:
            continue
        user = _user_frames(stack)
        if user is None:
            continue
        by_thread[stack.native_id][(user[0], user[-1], stack.state)] += stack.seconds
    blocks = []
    threads = {t.native_id: t for t in profile.threads}
    for native_id, per_site in by_thread.items():
        thread = threads.get(native_id)
        if thread is None:
            continue
        (coroutine, innermost, state), _ = max(per_site.items(), key=lambda item: item[1])
        blocks.append(
            LoopBlock(
                thread,
                sum(per_site.values()),
                frame_label(coroutine),
                frame_label(innermost),
                state,
            )
        )
    return sorted(blocks, key=lambda block: -block.blocked_s)


# --- child processes --------------------------------------------------------------------


def all_processes(profile: Profile) -> list[Profile]:
    """The profile and every followed descendant process, parent first."""
    found = [profile]
    for child in profile.processes:
        found.extend(all_processes(child))
    return found


def process_label(profile: Profile) -> str:
    pid = "?" if profile.pid is None else str(profile.pid)
    return f"pid {pid}"


def io_share_of_threads(threads: list[ThreadStats]) -> float:
    """Share of the threads' working time (I/O plus CPU) spent in I/O. CPU is the threads'
    own CPU clock where measured: on a busy machine "native" also holds the time a thread
    woke up but waited for a CPU, which is not work done while holding a lock."""
    io = sum(t.io_wait_s or 0.0 for t in threads)
    cpu = sum(t.cpu_s if t.cpu_s is not None else busy_s(t) for t in threads)
    return io / (io + cpu) if io + cpu > 0 else 0.0


# --- the evidence as a report shows it --------------------------------------------------

# An evidence line is shown when its seconds reach this share of the wall time.
SHOWN_SHARE = 0.01


def evidence_lines(profile: Profile) -> list[tuple[str, str]]:
    """The figures a verdict is made of, as (label, sentence) pairs for a report: the time
    threads worked, what they waited for (and what was not contention), the busiest thread
    and, for a whole program, the processes followed. Seconds add up over threads."""
    sums = totals(profile)
    shown = max(SHOWN_SHARE * sums.wall_s, 0.005)
    lines = [
        (
            "work",
            f"{sums.held_s:.2f}s running Python (GIL held), {sums.native_s:.2f}s native code "
            f"(GIL released), {sums.io_s:.2f}s in I/O or sleep",
        )
    ]
    waits = [
        f"{seconds:.2f}s {what}"
        for seconds, what in (
            (sums.gil_wait_s, "waiting for the GIL"),
            (sums.lock_s, "acquiring contended locks"),
        )
        if seconds >= shown
    ]
    if waits:
        lines.append(("contention", ", ".join(waits)))
    quiet = [
        f"{seconds:.2f}s {what}"
        for seconds, what in (
            (sums.idle_s, "idle (waiting for work)"),
            (sums.join_wait_s, "joining"),
            (sums.result_wait_s, "waiting for results"),
        )
        if seconds >= shown
    ]
    if quiet:
        lines.append(("not contention", ", ".join(quiet)))
    if profile.threads:
        busiest = max(profile.threads, key=busy_s)
        if busy_s(busiest) >= shown:
            where = top_function(profile, "gil_held_s", "native_s")
            lines.append(
                (
                    "busiest thread",
                    f"{busiest.name}: {busy_s(busiest):.2f}s running "
                    f"({busy_s(busiest) / max(busiest.wall_s, 1e-9):.0%} of its time)"
                    + (f"; busiest function {where}" if where else ""),
                )
            )
    children = all_processes(profile)[1:]
    cpu_wait_s = sums.cpu_wait_s + sum(totals(child).cpu_wait_s for child in children)
    if cpu_wait_s >= 0.05 * sums.wall_s:
        where = " (all processes)" if children else ""
        lines.append(("machine", f"{cpu_wait_s:.2f}s runnable but waiting for a CPU{where}"))
    if children:
        said = ", ".join(
            f"{process_label(child)} ({child.verdict.kind if child.verdict else 'not judged'})"
            for child in children
        )
        lines.append(("processes", f"{len(children)} followed: {said}"))
    return lines
