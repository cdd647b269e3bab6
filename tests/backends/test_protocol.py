"""Backend protocol v2 (backends/_base.py): options, worker counts, batches, interrupt, warm_up."""

from __future__ import annotations

import threading
import time

import pytest

from gilwise import backends
from gilwise.errors import TaskInterruptedError

WAIT_S = 30
LOCAL = ("inline", "thread", "asyncio")


@pytest.mark.parametrize("name", LOCAL)
def test_an_unknown_option_is_a_type_error_naming_it_and_the_accepted_ones(name):
    with pytest.raises(TypeError, match=r"'colour'.*accepts"):
        backends.create(name, 1, colour="red")


def test_the_thread_backend_lists_its_options_in_the_error():
    with pytest.raises(TypeError, match="initializer, initargs"):
        backends.create("thread", 1, max_tasks=3)


@pytest.mark.parametrize("bad", [0, -1])
def test_max_workers_below_one_is_the_stdlib_value_error(bad):
    with pytest.raises(ValueError, match="max_workers must be greater than 0"):
        backends.create("thread", bad)


@pytest.mark.parametrize("bad", [2.5, "x", True])
def test_max_workers_not_an_int_is_a_type_error_naming_the_parameter(bad):
    with pytest.raises(TypeError, match="max_workers must be an int greater than 0"):
        backends.create("thread", bad)


@pytest.mark.parametrize("name", LOCAL)
def test_submit_batch_gives_one_future_per_call_in_order(name, no_leaks):
    backend = backends.create(name, 2)
    try:
        futures = backend.submit_batch(pow, [((2, n), {}) for n in range(10)])
        assert [f.result(WAIT_S) for f in futures] == [2**n for n in range(10)]
    finally:
        backend.shutdown()


def test_a_failing_call_fails_only_its_own_future_in_a_thread_batch(no_leaks):
    backend = backends.create("thread", 1)
    try:
        futures = backend.submit_batch(int, [(("1",), {}), (("x",), {}), (("3",), {})])
        assert futures[0].result(WAIT_S) == 1
        assert isinstance(futures[1].exception(WAIT_S), ValueError)
        assert futures[2].result(WAIT_S) == 3
    finally:
        backend.shutdown()


def test_a_thread_batch_runs_in_order_on_one_thread(no_leaks):
    backend = backends.create("thread", 4)
    try:
        futures = backend.submit_batch(
            lambda n: (n, threading.current_thread().name), [((n,), {}) for n in range(50)]
        )
        outcomes = [f.result(WAIT_S) for f in futures]
    finally:
        backend.shutdown()
    assert [n for n, _ in outcomes] == list(range(50))
    assert len({name for _, name in outcomes}) == 1


@pytest.mark.parametrize("name", LOCAL)
def test_warm_up_does_not_block_and_the_backend_still_works(name, no_leaks):
    backend = backends.create(name, 1)
    backend.warm_up()
    assert backend.submit(pow, (3, 2), {}).result(WAIT_S) == 9
    backend.shutdown()


def test_the_thread_initializer_runs_once_per_thread_before_its_tasks(no_leaks):
    seen = []
    backend = backends.create("thread", 1, initializer=seen.append, initargs=("ready",))
    try:
        assert backend.submit(lambda: list(seen), (), {}).result(WAIT_S) == ["ready"]
        assert backend.submit(lambda: list(seen), (), {}).result(WAIT_S) == ["ready"]
    finally:
        backend.shutdown()


def test_interrupt_fails_running_and_queued_thread_tasks_at_once():
    backend = backends.create("thread", 1)
    started, release = threading.Event(), threading.Event()

    def busy():
        started.set()
        release.wait(WAIT_S)
        return "late"

    running = backend.submit(busy, (), {})
    queued = backend.submit(pow, (2, 2), {})
    assert started.wait(WAIT_S)
    began_s = time.monotonic()
    backend.shutdown(wait=True, interrupt=True)  # returns without joining the busy thread
    assert time.monotonic() - began_s < 0.5
    assert isinstance(running.exception(0), TaskInterruptedError)
    assert isinstance(queued.exception(0), TaskInterruptedError)
    release.set()  # the abandoned thread ends; its late result is dropped, not raised
    for thread in threading.enumerate():
        if thread.name in backend.thread_names:
            thread.join(WAIT_S)
    assert running.exception(0).__class__ is TaskInterruptedError


def test_thread_workers_are_daemon_threads_so_a_stuck_task_cannot_block_exit(no_leaks):
    backend = backends.create("thread", 1)
    backend.submit(pow, (1, 1), {}).result(WAIT_S)
    assert all(t.daemon for t in threading.enumerate() if t.name in backend.thread_names)
    backend.shutdown()
