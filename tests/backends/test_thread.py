"""The thread backend: a reusable pool of threads named gilwise-thread-N."""

from __future__ import annotations

import threading

import pytest

from gilwise.backends import create

WAIT_S = 30


def test_threads_are_named_and_reused_not_created_per_task(no_leaks):
    backend = create("thread", 2)
    names = [backend.submit(lambda: threading.current_thread().name, (), {}) for _ in range(200)]
    seen = {future.result(WAIT_S) for future in names}
    backend.shutdown()
    assert all(name.startswith("gilwise-thread-") for name in seen)
    assert len(seen) <= 2
    assert len(backend.thread_names) <= 2


def test_runs_up_to_max_workers_tasks_at_once(no_leaks):
    backend = create("thread", 3)
    barrier = threading.Barrier(3, timeout=WAIT_S)
    futures = [backend.submit(barrier.wait, (), {}) for _ in range(3)]
    assert sorted(f.result(WAIT_S) for f in futures) == [0, 1, 2]
    backend.shutdown()


def test_shutdown_finishes_queued_tasks_and_joins_threads(no_leaks):
    backend = create("thread", 1)
    release = threading.Event()
    first = backend.submit(release.wait, (WAIT_S,), {})
    queued = backend.submit(pow, (2, 3), {})
    release.set()
    backend.shutdown(wait=True)
    assert first.result(0) is True and queued.result(0) == 8
    assert not any(t.name in backend.thread_names and t.is_alive() for t in threading.enumerate())


def test_exception_keeps_its_traceback():
    backend = create("thread", 1)
    error = backend.submit(int, ("x",), {}).exception(WAIT_S)
    backend.shutdown()
    assert isinstance(error, ValueError) and error.__traceback__ is not None


def test_submit_after_shutdown_raises(no_leaks):
    backend = create("thread", 1)
    backend.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        backend.submit(int, (), {})


def test_shutdown_from_one_of_its_own_threads_does_not_deadlock(no_leaks):
    backend = create("thread", 1)
    future = backend.submit(backend.shutdown, (), {"wait": True})
    assert future.result(WAIT_S) is None
    backend.shutdown()
