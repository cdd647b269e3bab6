"""The asyncio backend: coroutine functions on one event loop in a dedicated thread."""

from __future__ import annotations

import asyncio
import threading

import pytest

import gilwise
from gilwise.backends import create
from gilwise.errors import TaskTimeoutError

WAIT_S = 30


async def _loop_thread_name():
    await asyncio.sleep(0)
    return threading.current_thread().name


def _plain_thread_name():
    return threading.current_thread().name


def test_coroutines_run_on_the_loop_thread(no_leaks):
    backend = create("asyncio")
    assert backend.submit(_loop_thread_name, (), {}).result(WAIT_S) == "gilwise-asyncio"
    backend.shutdown()


def test_plain_functions_are_offloaded_so_the_loop_never_blocks(no_leaks):
    backend = create("asyncio")
    name = backend.submit(_plain_thread_name, (), {}).result(WAIT_S)
    backend.shutdown()
    assert name.startswith("gilwise-asyncio-offload")


def test_many_waiting_coroutines_overlap(no_leaks):
    backend = create("asyncio")
    gate = asyncio.Event()
    started = []

    async def wait_for_all(total):
        started.append(1)
        if len(started) == total:
            gate.set()
        await gate.wait()
        return True

    futures = [backend.submit(wait_for_all, (50,), {}) for _ in range(50)]
    assert all(f.result(WAIT_S) for f in futures)  # would deadlock if they ran one by one
    backend.shutdown()


def test_timeout_cancels_the_coroutine(no_leaks):
    backend = create("asyncio")
    cancelled = threading.Event()

    async def hang():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    future = backend.submit(hang, (), {}, timeout_s=0.05)
    with pytest.raises(TaskTimeoutError):
        future.result(WAIT_S)
    assert cancelled.wait(WAIT_S)
    backend.shutdown()


def test_shutdown_waits_for_running_coroutines(no_leaks):
    backend = create("asyncio")
    future = backend.submit(asyncio.sleep, (0.01, "done"), {})
    backend.shutdown(wait=True)
    assert future.result(0) == "done"
    with pytest.raises(RuntimeError, match="after shutdown"):
        backend.submit(asyncio.sleep, (0,), {})


def test_async_callers_await_submit_async(no_leaks):
    async def main(executor):
        direct = await executor.submit_async(_loop_thread_name)
        wrapped = await asyncio.wrap_future(executor.submit(_loop_thread_name))
        return direct, wrapped

    with gilwise.Executor("asyncio") as executor:
        assert asyncio.run(main(executor)) == ("gilwise-asyncio", "gilwise-asyncio")
