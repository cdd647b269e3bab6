"""Stacks, wait reasons and locks against programs whose answer is known by construction.

Every truth is measured by the program itself (the seconds a thread spent in ``join``, in
``Future.result``, acquiring a lock), never assumed from this machine's timing.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
import time
from multiprocessing.pool import ThreadPool

import pytest

import gilwise
import workloads
from gilwise._model import Profile

pytestmark = [pytest.mark.multiversion, pytest.mark.usefixtures("no_leaks")]

# Sampling at 1 kHz and reading stacks at 250 Hz: a wait is placed within a few ms.
MARGIN_S = 0.03
TIMEOUT_S = 30


def _timed(fn, *args) -> float:
    start = time.monotonic()
    fn(*args)
    return time.monotonic() - start


def _basename() -> str:
    return os.path.basename(__file__)


def outer(seconds: float) -> None:
    middle(seconds)


def middle(seconds: float) -> None:
    inner(seconds)


def inner(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass


@pytest.mark.parametrize("stack_source", ["remote", "in-process"])
def test_a_call_chain_appears_root_first_with_its_seconds(stack_source):
    with gilwise.monitor(stack_source=stack_source) as mon:
        spent = _timed(outer, 0.3)
    profile = mon.profile
    main = threading.get_native_id()
    chain = [
        stack
        for stack in profile.stacks
        if stack.native_id == main
        and [f.function for f in stack.frames[-3:]] == ["outer", "middle", "inner"]
    ]
    assert chain, [[f.function for f in s.frames] for s in profile.stacks]
    # Time goes to a stack from its first read on: in-process snapshots come every 20 ms
    # (50 Hz), and each waits for the GIL held by the spinning chain.
    margin_s = MARGIN_S if stack_source == "remote" else MARGIN_S + 2 * 0.02
    assert sum(s.seconds for s in chain) == pytest.approx(spent, abs=margin_s)
    assert all(s.state == "gil_held" for s in chain if s.seconds > 0.02)
    frame = chain[0].frames[-1]
    assert frame.file == __file__ and frame.line == inner.__code__.co_firstlineno
    # The test function calls outer (through _timed), and the stacks go on to the root.
    below = [f.function for f in chain[0].frames[-5:-3]]
    assert below[1] == "_timed" and below[0].endswith("root_first_with_its_seconds")
    # Folded: one row per distinct (thread, state, stack).
    keys = [(s.native_id, s.state, s.frames) for s in profile.stacks]
    assert len(keys) == len(set(keys))


def test_a_thread_joining_another_is_join_wait():
    started = threading.Event()

    def work() -> None:
        started.set()
        time.sleep(0.3)

    with gilwise.monitor() as mon:
        worker = threading.Thread(target=work)
        worker.start()
        assert started.wait(TIMEOUT_S)
        joined = _timed(worker.join, TIMEOUT_S)
    main = mon.profile.thread(threading.get_native_id())
    assert main.join_wait_s == pytest.approx(joined, abs=MARGIN_S)
    assert main.lock_wait_s == pytest.approx(0.0, abs=0.01)


def test_waiting_for_a_future_is_result_wait_and_idle_workers_are_idle():
    ready = threading.Barrier(5)
    pool = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="pool")
    with gilwise.monitor() as mon, pool:
        # Four tasks meet at a barrier, so the pool starts four threads; then one sleeps
        # while the other three wait for work.
        for _ in range(4):
            pool.submit(ready.wait, TIMEOUT_S)
        ready.wait(TIMEOUT_S)
        future = pool.submit(time.sleep, 0.3)
        waited = _timed(future.result, TIMEOUT_S)
    profile = mon.profile
    main = profile.thread(threading.get_native_id())
    assert main.result_wait_s == pytest.approx(waited, abs=MARGIN_S)
    assert main.lock_wait_s == pytest.approx(0.0, abs=0.01)
    workers = [t for t in profile.threads if t.name.startswith("pool")]
    assert len(workers) == 4
    for stats in workers:
        assert stats.lock_wait_s == pytest.approx(0.0, abs=0.01)
    # The sleeping task's thread was in I/O (sleep) for it, the others idle all along.
    assert sum(t.io_wait_s for t in workers) == pytest.approx(0.3, abs=MARGIN_S)
    assert sum(t.idle_s for t in workers) == pytest.approx(4 * waited - 0.3, abs=4 * MARGIN_S)
    assert not profile.locks


def test_a_multiprocessing_thread_pool_waits_for_results_not_for_locks():
    with gilwise.monitor() as mon, ThreadPool(2) as pool:
        waited = _timed(pool.map, time.sleep, [0.2, 0.2, 0.2, 0.2])
    profile = mon.profile
    main = profile.thread(threading.get_native_id())
    assert main.result_wait_s == pytest.approx(waited, abs=MARGIN_S)
    # The pool's workers and handler threads hold no contended lock.
    assert sum(t.lock_wait_s for t in profile.threads) == pytest.approx(0.0, abs=0.02)
    assert not profile.locks


def test_a_user_thread_blocked_on_a_queue_is_idle():
    import queue

    items: queue.Queue = queue.Queue()
    waiting_since: list[float] = []

    def consume() -> None:
        waiting_since.append(time.monotonic())
        items.get(True, TIMEOUT_S)

    with gilwise.monitor() as mon:
        consumer = threading.Thread(target=consume, name="consumer")
        consumer.start()
        time.sleep(0.3)
        put_at = time.monotonic()  # the sleep may overrun on a busy machine: measured
        items.put(None)
        consumer.join(TIMEOUT_S)
    stats = mon.profile.thread("consumer")
    assert stats.idle_s == pytest.approx(put_at - waiting_since[0], abs=MARGIN_S)
    assert stats.lock_wait_s == pytest.approx(0.0, abs=0.01)


LOCK = threading.Lock()


def hold_while_sleeping(held: threading.Event, seconds: float) -> None:
    with LOCK:
        held.set()
        time.sleep(seconds)


def acquire_after(held: threading.Event, waited: list[float]) -> None:
    assert held.wait(TIMEOUT_S)
    start = time.monotonic()
    with LOCK:
        waited.append(time.monotonic() - start)


def _contend(holder, *holder_args) -> tuple[Profile, list[float]]:
    held = threading.Event()
    waited: list[float] = []
    with gilwise.monitor() as mon:
        threads = [threading.Thread(target=holder, args=(held, *holder_args), name="holder")]
        threads += [
            threading.Thread(target=acquire_after, args=(held, waited), name=f"waiter-{i}")
            for i in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT_S)
    return mon.profile, waited


def test_a_lock_held_across_sleep_is_one_lock_with_both_waiters_and_its_holder():
    profile, waited = _contend(hold_while_sleeping, 0.4)
    (lock,) = profile.locks
    assert sorted(lock.waiters) == ["waiter-0", "waiter-1"]
    assert lock.wait_s == pytest.approx(sum(waited), abs=2 * MARGIN_S)
    assert lock.longest_wait_s == pytest.approx(max(waited), abs=MARGIN_S)
    line = acquire_after.__code__.co_firstlineno
    assert lock.waiting_functions == (f"acquire_after ({_basename()}:{line})",)
    assert lock.label == lock.waiting_functions[0]
    line = hold_while_sleeping.__code__.co_firstlineno
    assert lock.held_across == f"io_wait in hold_while_sleeping ({_basename()}:{line})"
    # Meanwhile the holder slept; the main thread joined (never contention).
    assert lock.holder_states["io_wait"] == pytest.approx(max(waited), abs=MARGIN_S)
    for name in ("waiter-0", "waiter-1"):
        assert profile.thread(name).lock_wait_s == pytest.approx(max(waited), abs=MARGIN_S)


def write_record(held: threading.Event, path: str, seconds: float, fsync_s: list[float]) -> None:
    with LOCK:
        held.set()
        with open(path, "ab") as record:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                record.write(b"record\n")
                record.flush()
                start, start_cpu = time.monotonic(), time.thread_time()
                os.fsync(record.fileno())
                # Off-CPU seconds of this fsync: the kernel may do the flush on this thread's
                # own CPU (then the thread is running, not waiting for I/O, as the probe sees).
                fsync_s.append((time.monotonic() - start) - (time.thread_time() - start_cpu))


def test_a_lock_held_across_fsync_names_the_writing_function(tmp_path):
    fsync_s: list[float] = []
    profile, waited = _contend(write_record, str(tmp_path / "log"), 0.3, fsync_s)
    (lock,) = profile.locks
    assert sorted(lock.waiters) == ["waiter-0", "waiter-1"]
    assert lock.wait_s == pytest.approx(sum(waited), abs=2 * MARGIN_S)
    line = write_record.__code__.co_firstlineno
    assert lock.held_across is not None, lock
    assert lock.held_across.endswith(f" in write_record ({_basename()}:{line})")
    # On a real disk fsync's off-CPU time dominates the hold; on tmpfs it is instant, and on
    # some file systems the kernel does the flush on the calling thread's CPU (running, not
    # waiting: fsync_s counts only off-CPU time). Off-CPU time also includes waiting for a
    # CPU after each fsync returns (a busy machine), which the kernel reports as runnable,
    # not in I/O: that is not counted.
    cpu_wait_s = profile.thread("holder").cpu_wait_s or 0.0
    if sum(fsync_s) - cpu_wait_s > 0.7 * 0.3:
        assert lock.held_across.startswith("io_wait in ")


def test_a_loop_thread_with_no_user_frame_is_idle():
    import asyncio

    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, name="loop")
    with gilwise.monitor() as mon:
        runner.start()
        time.sleep(0.3)
        loop.call_soon_threadsafe(loop.stop)
        runner.join(TIMEOUT_S)
    loop.close()
    stats = mon.profile.thread("loop")
    assert stats.idle_s == pytest.approx(0.3, abs=MARGIN_S)
    assert stats.io_wait_s == pytest.approx(0.0, abs=0.01)


def test_a_user_asyncio_program_waiting_for_io_stays_io_wait():
    import asyncio

    with gilwise.monitor() as mon:
        asyncio.run(asyncio.sleep(0.3))
    main = mon.profile.thread(threading.get_native_id())
    assert main.io_wait_s >= 0.3 - MARGIN_S
    assert main.idle_s == pytest.approx(0.0, abs=0.01)


def test_hashing_threads_joined_by_main_are_native_and_join_wait():
    with gilwise.monitor() as mon:
        workloads.run_threads(workloads.hasher, 2, 0.3)
    profile = mon.profile
    main = profile.thread(threading.get_native_id())
    assert main.join_wait_s is not None and main.join_wait_s >= 0.25
    assert main.lock_wait_s == pytest.approx(0.0, abs=0.01)
    for stats in (t for t in profile.threads if t.name.startswith("worker-")):
        assert stats.native_s is not None and stats.native_s >= 0.25
