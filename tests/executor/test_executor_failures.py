"""Failures: retries, per-task timeouts, and no task silently dropped or run twice."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from executor_gates import FileGate, nap, wait_then
from hypothesis import given, settings
from hypothesis import strategies as st

import gilwise
from gilwise.errors import TaskInterruptedError, TaskTimeoutError
from gilwise.pipeline import Retry

WAIT_S = 30


class Flaky:
    """Fails the first ``failures[x]`` calls for input x, then returns x; counts every call."""

    def __init__(self, failures: dict[int, int]):
        self.failures = failures
        self.calls: dict[int, int] = {}
        self.lock = threading.Lock()

    def __call__(self, x: int) -> int:
        with self.lock:
            self.calls[x] = self.calls.get(x, 0) + 1
            attempt = self.calls[x]
        if attempt <= self.failures.get(x, 0):
            raise RuntimeError(f"planned failure {attempt} of input {x}")
        return x


@settings(max_examples=30, deadline=None)
@given(
    failures=st.lists(st.integers(0, 3), min_size=1, max_size=25),
    retries=st.integers(0, 2),
    backend=st.sampled_from(["inline", "thread"]),
)
def test_every_submitted_task_is_accounted_for_exactly_once(failures, retries, backend):
    work = Flaky(dict(enumerate(failures)))
    with gilwise.Executor(backend, 3, retries=retries) as executor:
        futures = [executor.submit(work, i) for i in range(len(failures))]
        for i, future in enumerate(futures):
            if failures[i] <= retries:
                assert future.result(WAIT_S) == i
            else:
                with pytest.raises(RuntimeError, match=f"input {i}"):
                    future.result(WAIT_S)
    assert work.calls == {i: min(f, retries) + 1 for i, f in enumerate(failures)}


@settings(max_examples=30, deadline=None)
@given(
    failures=st.lists(st.integers(0, 2), min_size=1, max_size=40),
    chunksize=st.integers(1, 7),
    backend=st.sampled_from(["inline", "thread"]),
)
def test_map_with_chunks_and_retries_runs_each_input_once_per_attempt(failures, chunksize, backend):
    work = Flaky(dict(enumerate(failures)))
    with gilwise.Executor(backend, 2, retries=2) as executor:
        results = list(executor.map(work, range(len(failures)), chunksize=chunksize))
    assert results == list(range(len(failures)))
    assert work.calls == {i: f + 1 for i, f in enumerate(failures)}


def test_retries_are_not_spent_on_success(no_leaks):
    work = Flaky({})
    with gilwise.Executor("thread", retries=3) as executor:
        assert list(executor.map(work, range(10))) == list(range(10))
    assert set(work.calls.values()) == {1}


def test_thread_task_past_its_timeout_fails_with_task_timeout_error(tmp_path, no_leaks):
    gate = FileGate(str(tmp_path / "gate"))
    with gilwise.Executor("thread", 1, timeout=0.1) as executor:
        slow = executor.submit(wait_then, gate, "late")
        with pytest.raises(TaskTimeoutError, match=r"timeout of 0\.1 s"):
            slow.result(WAIT_S)
        gate.open()  # the thread cannot be stopped: let it finish so shutdown can join it


def test_timed_out_tasks_are_not_retried(tmp_path, no_leaks):
    gate = FileGate(str(tmp_path / "gate"))
    calls = []

    def once(g):
        calls.append(1)
        return wait_then(g, "x")

    with gilwise.Executor("thread", 1, timeout=0.1, retries=3) as executor:
        with pytest.raises(TaskTimeoutError):
            executor.submit(once, gate).result(WAIT_S)
        gate.open()
    assert len(calls) == 1


async def _forever():
    await asyncio.Event().wait()


def test_asyncio_timeout_cancels_the_coroutine(no_leaks):
    executor = gilwise.Executor("asyncio", timeout=0.1)
    with executor, pytest.raises(TaskTimeoutError, match="cancelled"):
        executor.submit(_forever).result(WAIT_S)


def test_process_timeout_kills_the_worker_and_the_next_task_runs(no_leaks):
    with gilwise.Executor("process", 1, timeout=0.5) as executor:
        with pytest.raises(TaskTimeoutError):
            executor.submit(nap, 30).result(WAIT_S)
        assert executor.submit(nap, 0).result(WAIT_S) == 0


def test_timeout_is_a_concurrent_futures_timeout_error():
    import concurrent.futures as cf

    assert issubclass(TaskTimeoutError, cf.TimeoutError)


def test_a_crashed_process_task_is_retried_on_a_new_worker(tmp_path, no_leaks):
    from executor_gates import crash_once

    from gilwise.errors import WorkerCrashedError

    marker = str(tmp_path / "crashed")
    with gilwise.Executor("process", 1, retries=1) as executor:
        assert executor.submit(crash_once, marker).result(WAIT_S) == "survived"
    (tmp_path / "crashed").unlink()
    with gilwise.Executor("process", 1) as executor, pytest.raises(WorkerCrashedError):
        executor.submit(crash_once, marker).result(WAIT_S)


class FailsOnce:
    """Fails the first call of input 1 and notes when each call of it started."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.failed = threading.Event()

    def __call__(self, x: int) -> int:
        if x == 1:
            self.starts.append(time.monotonic())
            if len(self.starts) == 1:
                self.failed.set()
                raise RuntimeError("planned failure of input 1")
        return x


@pytest.mark.parametrize("chunksize", [1, 3])
def test_a_failed_call_of_a_map_waits_the_retry_back_off_alone_or_in_a_chunk(chunksize, no_leaks):
    # One retry rule for every failed call: a call that failed inside a chunk used to be
    # tried again at once, skipping the back-off a call submitted alone waits.
    work = FailsOnce()
    retry = Retry(times=1, backoff_s=0.2)
    with gilwise.Executor("thread", 2, retries=retry) as executor:
        assert list(executor.map(work, range(6), chunksize=chunksize)) == list(range(6))
    first, second = work.starts
    assert second - first >= 0.2


def test_a_retry_waiting_for_its_back_off_fails_at_interrupt_instead_of_hanging(no_leaks):
    work = FailsOnce()
    executor = gilwise.Executor("thread", 1, retries=Retry(times=1, backoff_s=WAIT_S))
    future = executor.submit(work, 1)
    assert work.failed.wait(WAIT_S)
    deadline = time.monotonic() + WAIT_S
    while not executor._backing_off:  # the failure is filed: the retry waits its back-off
        assert time.monotonic() < deadline, "the failed call was never set to be retried"
        time.sleep(0.001)
    executor.shutdown(interrupt=True)
    assert isinstance(future.exception(WAIT_S), TaskInterruptedError)
    assert len(work.starts) == 1
