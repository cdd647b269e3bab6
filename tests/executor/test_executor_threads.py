"""An auto Executor's own threads live only while they have work: the timer thread while a
deadline is pending, the measuring threads while a function is measured. A program whose
functions are decided is back to its own threads, so the worker service can fork its
zygote from it later (tests/executor/test_prefork.py has the fork itself)."""

from __future__ import annotations

import threading

import gilwise
from gilwise._executor._timers import Timers

WAIT_S = 30


def _gilwise_threads(prefix):
    return [thread for thread in threading.enumerate() if thread.name.startswith(prefix)]


def test_the_timer_thread_ends_when_nothing_is_pending_and_starts_again():
    timers = Timers()
    ran = threading.Event()
    timers.add(0.0, ran.set)
    assert ran.wait(WAIT_S)
    for thread in _gilwise_threads("gilwise-timers"):
        thread.join(WAIT_S)
    assert not _gilwise_threads("gilwise-timers")
    again = threading.Event()
    timers.add(0.0, again.set)
    assert again.wait(WAIT_S)
    timers.stop(wait=True)
    assert not _gilwise_threads("gilwise-timers")


def test_discarded_callbacks_never_run_and_leave_no_thread():
    timers = Timers()
    ran = []
    import time

    timers.add(time.monotonic() + 60, lambda: ran.append("peek"), tag=("peek", 1))
    timers.add(time.monotonic() + 60, lambda: ran.append("timeout"))
    timers.discard(("peek", 1))
    assert [entry[2] for entry in timers._heap] == [None]
    timers.discard(None)
    for thread in _gilwise_threads("gilwise-timers"):
        thread.join(WAIT_S)
    assert not _gilwise_threads("gilwise-timers")
    assert ran == []
    timers.stop(wait=True)


def _tiny(x):
    return x + 1


def test_decided_functions_leave_no_measuring_or_timer_thread(no_leaks):
    # A program thread holds the count above one, so this checks the Executor's threads.
    with gilwise.Executor() as executor:
        results = executor.map(_tiny, iter(range(10_000)))
        assert next(results) == 1
        assert sum(results) == sum(range(2, 10_001))
        decision = executor.decisions[next(iter(executor.decisions))]
        assert decision.backend == "inline"
        for thread in _gilwise_threads("gilwise-t"):  # gilwise-thread-N, gilwise-timers
            thread.join(WAIT_S)
        assert not _gilwise_threads("gilwise-t")
        # A new function is measured on new threads.
        assert list(executor.map(abs, iter(range(-5, 0)))) == [5, 4, 3, 2, 1]
