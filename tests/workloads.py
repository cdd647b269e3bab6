"""Workloads whose GIL behaviour is known by construction: the oracle for gilwise's numbers.

Importable by any test (``from workloads import spinner`` with tests/ on sys.path, or
``from tests.workloads import ...``). Every workload runs for a given number of seconds of
wall time (not a given amount of work), so its answer does not depend on machine speed:

- ``spinner``: pure Python, holds the GIL the whole time.
- ``duty_spinner``: spins ``duty`` of each period, sleeps the rest; returns its real duty.
- ``hasher`` / ``compressor``: sha256 / zlib on large buffers, which release the GIL.
- ``sleeper``: time.sleep, releases the GIL, blocks in a sleep syscall.
- ``socket_waiter``: blocks in recv on a local socketpair until a timer writes to it.
- ``lock_queue``: N threads queueing on one threading.Lock held while spinning.
- ``event_waiter``: waits on an Event nobody sets: no work, no I/O (idle).

``run_threads`` starts N threads on a Barrier so they begin together, and joins them.
``sleep_seconds`` reads the kernel's account of how long a thread slept, the truth for a
spinner's GIL wait.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Optional

JOIN_TIMEOUT_S = 60.0
_BIG_BUFFER = os.urandom(1 << 22)  # 4 MiB: hashing it takes ~10 ms with the GIL released
# Compressible, so zlib's output buffer stays small: growing it happens with the GIL held.
_TEXT_BUFFER = b"".join(b"line %d of a compressible text buffer\n" % i for i in range(1 << 16))


def spinner(seconds: float) -> int:
    """Pure-Python loop for ``seconds`` of wall time; returns the iterations done."""
    deadline = time.monotonic() + seconds
    iterations = 0
    while time.monotonic() < deadline:
        iterations += 1
    return iterations


@dataclass(frozen=True)
class SpinReport:
    """What a spinner thread knows about itself: who it was, how long it ran and slept."""

    native_id: int
    wall_s: float
    sleep_s: float
    cpu_s: float = 0.0  # on-CPU seconds since the thread started, read as it finished
    start_s: float = 0.0  # time.monotonic() as it began spinning (its window: start_s + wall_s)
    window_cpu_s: float = 0.0  # on-CPU seconds inside that window
    # Share of each CPU's time the hypervisor took (steal) in that window: a running thread
    # loses it from its on-CPU time, so the kernel's "sleep" above includes it.
    steal_share: float = 0.0


def measured_spinner(seconds: float) -> SpinReport:
    """``spinner`` that also reports the kernel's account of its sleep (its GIL wait)."""
    native_id = threading.get_native_id()
    before = schedstat(native_id)
    stolen_before = steal_seconds()
    start = time.monotonic()
    spinner(seconds)
    wall_s = time.monotonic() - start
    sleep_s = sleep_seconds(native_id, wall_s, before)
    on_cpu_ns = schedstat(native_id)[0]
    steal_share = (steal_seconds() - stolen_before) / ((os.cpu_count() or 1) * wall_s)
    return SpinReport(
        native_id,
        wall_s,
        sleep_s,
        on_cpu_ns / 1e9,
        start,
        (on_cpu_ns - before[0]) / 1e9,
        steal_share,
    )


def duty_spinner(seconds: float, duty: float, period_s: float = 0.02) -> float:
    """Spin ``duty`` of each ``period_s`` and sleep the rest; returns the real spin share."""
    start = time.monotonic()
    deadline = start + seconds
    spun = 0.0
    while True:
        period_start = time.monotonic()
        if period_start >= deadline:
            break
        spin_until = min(period_start + duty * period_s, deadline)
        while time.monotonic() < spin_until:
            pass
        spun += time.monotonic() - period_start
        rest = period_start + period_s - time.monotonic()
        if rest > 0 and period_start + period_s < deadline:
            time.sleep(rest)
    return spun / (time.monotonic() - start)


def hasher(seconds: float) -> int:
    """sha256 of a 4 MiB buffer, over and over (the GIL is released while hashing)."""
    deadline = time.monotonic() + seconds
    rounds = 0
    while time.monotonic() < deadline:
        hashlib.sha256(_BIG_BUFFER).digest()
        rounds += 1
    return rounds


def measured_hasher(seconds: float) -> tuple[int, float, float]:
    """``hasher`` that reports (native id, on-CPU s, run-queue wait s) from the kernel's
    schedstat, counted from the thread's start: the truth for its cpu_s and cpu_wait_s."""
    hasher(seconds)
    native_id = threading.get_native_id()
    on_cpu_ns, runqueue_ns = schedstat(native_id)
    return native_id, on_cpu_ns / 1e9, runqueue_ns / 1e9


def compressor(seconds: float) -> int:
    """zlib-compress a 2.5 MiB text buffer, over and over (the GIL is released meanwhile)."""
    deadline = time.monotonic() + seconds
    rounds = 0
    while time.monotonic() < deadline:
        zlib.compress(_TEXT_BUFFER, 6)
        rounds += 1
    return rounds


def sleeper(seconds: float) -> None:
    """time.sleep: no CPU, GIL released."""
    time.sleep(seconds)


def socket_waiter(seconds: float) -> bytes:
    """Block in recv on a local socketpair until a timer thread writes one byte."""
    reader, writer = socket.socketpair()
    timer = threading.Timer(seconds, writer.send, args=(b"x",))
    try:
        timer.start()
        return reader.recv(1)
    finally:
        timer.cancel()
        timer.join(JOIN_TIMEOUT_S)
        reader.close()
        writer.close()


def event_waiter(seconds: float) -> bool:
    """Wait on an Event that nobody sets: the thread neither works nor does I/O."""
    return threading.Event().wait(seconds)


def lock_queue(threads: int, seconds: float, hold_s: float = 0.02) -> list[int]:
    """``threads`` threads each repeatedly take one shared Lock and spin ``hold_s`` inside it.

    Returns how often each thread got the lock. At any time one thread holds the lock (and
    the GIL) and the others wait on the lock, not on the GIL. After each turn a thread
    sleeps 1 ms so a woken waiter can take the lock: threads queue in turn instead of one
    thread re-taking the lock forever (sleep(0) was not enough on 3.9, whose waiter could
    not take the GIL back in time).
    """
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker() -> int:
        turns = 0
        while time.monotonic() < deadline:
            with lock:
                spin_until = time.monotonic() + hold_s
                while time.monotonic() < spin_until:
                    pass
            turns += 1
            time.sleep(0.001)
        return turns

    return run_threads(worker, threads)


def run_threads(
    target: Callable[..., Any], count: int, *args: Any, name: str = "worker"
) -> list[Any]:
    """Run ``target(*args)`` on ``count`` threads started together; return their results.

    Raises the first worker exception; fails loudly if a thread outlives JOIN_TIMEOUT_S.
    """
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait(JOIN_TIMEOUT_S)
            results[index] = target(*args)
        except BaseException as exc:
            errors.append(exc)

    workers = [
        threading.Thread(target=run, args=(index,), name=f"{name}-{index}")
        for index in range(count)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(JOIN_TIMEOUT_S)
    alive = [worker.name for worker in workers if worker.is_alive()]
    if alive:
        raise RuntimeError(f"workload threads still running after {JOIN_TIMEOUT_S} s: {alive}")
    if errors:
        raise errors[0]
    return results


def sleep_seconds(native_id: int, wall_s: float, before: Optional[tuple[int, int]] = None) -> float:
    """Seconds a thread slept (neither on a CPU nor runnable) out of ``wall_s``.

    Uses /proc schedstat: on-CPU and runqueue nanoseconds. For a pure-Python spinner the
    only sleep is the wait for the GIL, so this is the truth for its ``gil_wait_s``.
    """
    on_cpu_ns, runqueue_ns = schedstat(native_id)
    if before is not None:
        on_cpu_ns -= before[0]
        runqueue_ns -= before[1]
    return max(0.0, wall_s - (on_cpu_ns + runqueue_ns) / 1e9)


def steal_seconds() -> float:
    """CPU seconds (all CPUs) a hypervisor has taken from this machine since boot (the
    "steal" column of /proc/stat; 0.0 on bare metal or where it cannot be read)."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def schedstat(native_id: int) -> tuple[int, int]:
    """(on-CPU ns, runqueue-wait ns) of a thread of this process, from /proc."""
    with open(f"/proc/self/task/{native_id}/schedstat") as stat:
        on_cpu, runqueue = stat.read().split()[:2]
    return int(on_cpu), int(runqueue)
