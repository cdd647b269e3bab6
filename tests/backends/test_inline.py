"""The inline backend runs each task in the caller, inside submit."""

from __future__ import annotations

import threading

import pytest

from gilwise.backends import create


def test_runs_in_the_calling_thread_and_returns_a_finished_future(no_leaks):
    backend = create("inline")
    future = backend.submit(threading.current_thread, (), {})
    assert future.done()
    assert future.result() is threading.current_thread()
    backend.shutdown()


def test_exception_is_delivered_through_the_future():
    backend = create("inline")
    future = backend.submit(int, ("x",), {})
    assert isinstance(future.exception(), ValueError)


def test_keyboard_interrupt_propagates_to_the_caller():
    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        create("inline").submit(interrupted, (), {})


def test_submit_after_shutdown_raises():
    backend = create("inline")
    backend.shutdown()
    backend.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        backend.submit(int, (), {})
