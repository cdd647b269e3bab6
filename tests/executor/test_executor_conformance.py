"""gilwise.Executor behaves as the concurrent.futures docs say, on every backend.

In the manner of CPython's Lib/test/test_concurrent_futures: the same checks run on each
backend. Tasks are held busy with a FileGate (works across processes), never with sleeps
that hope a thread has started; a task counts as RUNNING once the Executor hands it over.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
import traceback

import pytest
from executor_gates import FileGate, async_square, mul, raise_on, square, wait_then

import gilwise
from gilwise.errors import RemoteTraceback, TaskInterruptedError, UnsupportedError

pytestmark = pytest.mark.multiversion

BACKENDS = ["inline", "thread", "process", "asyncio", "interpreter"]
# Backends whose tasks run in another process: exceptions come back with a RemoteTraceback.
REMOTE = {"process", "interpreter"}
WAIT_S = 30


def _executor(backend: str, max_workers=None, **kwargs) -> gilwise.Executor:
    try:
        return gilwise.Executor(backend, max_workers, **kwargs)
    except (UnsupportedError, ImportError) as exc:
        pytest.skip(f"{backend} backend unavailable here: {exc}")


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def gate(tmp_path):
    gate = FileGate(str(tmp_path / "gate"))
    yield gate
    gate.open()  # never leave a worker waiting


@pytest.fixture
def blocking_backend(backend):
    if backend == "inline":
        pytest.skip("inline runs each task inside submit: nothing can be held busy")
    return backend


def test_submit_returns_the_result(backend, no_leaks):
    with _executor(backend) as executor:
        future = executor.submit(pow, 2, 8)
        assert future.result(WAIT_S) == 256
        assert executor.submit(mul, 3, y=4).result(WAIT_S) == 12


def test_map_keeps_input_order(backend, no_leaks):
    with _executor(backend, 2) as executor:
        assert list(executor.map(square, range(20), timeout=WAIT_S)) == [i * i for i in range(20)]
        assert list(executor.map(mul, range(5), range(5, 10))) == [
            a * b for a, b in zip(range(5), range(5, 10))
        ]
        assert list(executor.map(square, [])) == []


def test_map_with_chunks_keeps_order(backend, no_leaks):
    with _executor(backend, 2) as executor:
        got = list(executor.map(square, range(103), chunksize=10, buffersize=3))
    assert got == [i * i for i in range(103)]


def test_map_raises_the_failing_calls_exception_in_place(backend, no_leaks):
    with _executor(backend, 2) as executor:
        results = executor.map(raise_on, range(10), [4] * 10)
        assert [next(results) for _ in range(4)] == [0, 1, 2, 3]
        with pytest.raises(ValueError, match="bad input 4"):
            next(results)


def test_task_exception_reaches_the_caller_with_the_workers_traceback(backend, no_leaks):
    with _executor(backend) as executor:
        future = executor.submit(raise_on, 7, 7)
        error = future.exception(WAIT_S)
        assert isinstance(error, ValueError)
        with pytest.raises(ValueError, match="bad input 7"):
            future.result()
    if backend in REMOTE:
        assert isinstance(error.__cause__, RemoteTraceback)
        assert "raise_on" in str(error.__cause__)
    else:
        assert "raise_on" in "".join(traceback.format_tb(error.__traceback__))


def test_done_callbacks_run_once_with_the_future(backend, no_leaks):
    calls = []
    done = threading.Event()

    def callback(future):
        calls.append(future)
        done.set()

    with _executor(backend) as executor:
        future = executor.submit(square, 5)
        future.add_done_callback(callback)
        assert done.wait(WAIT_S)
        late = []
        future.add_done_callback(late.append)  # already done: called at once
    assert calls == [future] and late == [future]
    assert future.result() == 25


def test_future_states_pending_running_finished_cancelled(blocking_backend, gate, no_leaks):
    with _executor(blocking_backend, 1) as executor:
        running = executor.submit(wait_then, gate, "first")
        queued = executor.submit(wait_then, gate, "second")
        assert running.running()
        assert not queued.running() and not queued.done()
        assert queued.cancel()
        assert queued.cancelled() and queued.done()
        assert not running.cancel()
        gate.open()
        assert running.result(WAIT_S) == "first"
        assert running.done() and not running.cancelled()
        with pytest.raises(cf.CancelledError):
            queued.result()


def test_inline_futures_are_finished_when_submit_returns(no_leaks):
    with _executor("inline") as executor:
        future = executor.submit(square, 3)
        assert future.done() and future.result() == 9
        assert not future.cancel()


def test_wait_and_as_completed_accept_the_futures(backend, no_leaks):
    with _executor(backend, 2) as executor:
        futures = [executor.submit(square, i) for i in range(6)]
        done, not_done = cf.wait(futures, timeout=WAIT_S)
        assert len(done) == 6 and not not_done
        assert sorted(f.result() for f in cf.as_completed(futures, timeout=WAIT_S)) == [
            i * i for i in range(6)
        ]


def test_map_timeout_raises_timeout_error(blocking_backend, gate, no_leaks):
    with _executor(blocking_backend, 2) as executor:
        results = executor.map(wait_then, [gate, gate], ["a", "b"], timeout=0.2)
        with pytest.raises(cf.TimeoutError):
            next(results)
        gate.open()


def test_submit_after_shutdown_raises_runtime_error(backend, no_leaks):
    executor = _executor(backend)
    executor.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(square, 2)
    executor.shutdown()  # idempotent


def test_shutdown_waits_for_queued_tasks(blocking_backend, gate, no_leaks):
    executor = _executor(blocking_backend, 1)
    futures = [executor.submit(wait_then, gate, i) for i in range(4)]
    gate.open()
    executor.shutdown(wait=True)
    assert [f.result(0) for f in futures] == [0, 1, 2, 3]


def test_shutdown_cancel_futures_cancels_only_queued_tasks(blocking_backend, gate, no_leaks):
    executor = _executor(blocking_backend, 1)
    running = executor.submit(wait_then, gate, "ran")
    queued = [executor.submit(wait_then, gate, i) for i in range(5)]
    executor.shutdown(wait=False, cancel_futures=True)
    assert all(f.cancelled() for f in queued)
    gate.open()
    assert running.result(WAIT_S) == "ran"
    executor.shutdown(wait=True)


def test_shutdown_without_wait_still_runs_queued_tasks(blocking_backend, gate, no_leaks):
    executor = _executor(blocking_backend, 1)
    futures = [executor.submit(wait_then, gate, i) for i in range(3)]
    executor.shutdown(wait=False)
    gate.open()
    assert [f.result(WAIT_S) for f in futures] == [0, 1, 2]
    executor.shutdown(wait=True)


def test_ctrl_c_in_the_with_block_cancels_queued_and_frees_workers(
    blocking_backend, gate, no_leaks
):
    futures = []
    executor = _executor(blocking_backend, 1)
    with pytest.raises(KeyboardInterrupt), executor:
        futures.append(executor.submit(wait_then, gate, "running"))
        futures.extend(executor.submit(wait_then, gate, i) for i in range(3))
        # Released only once shutdown has cancelled the queued tasks.
        futures[-1].add_done_callback(lambda _: gate.open())
        raise KeyboardInterrupt
    # Ctrl-C interrupts what runs (a process is killed, a thread abandoned) and cancels
    # what has not started, without waiting for either.
    assert isinstance(futures[0].exception(0), TaskInterruptedError)
    assert all(f.cancelled() for f in futures[1:])


def test_closing_map_early_cancels_what_has_not_started(blocking_backend, gate, no_leaks):
    with _executor(blocking_backend, 1) as executor:
        results = executor.map(wait_then, [gate] * 6, range(6), chunksize=1, buffersize=4)
        results.close()
        gate.open()


def test_invalid_arguments_say_what_is_wrong():
    with pytest.raises(ValueError, match="max_workers"):
        gilwise.Executor("thread", 0)
    with pytest.raises(ValueError, match="unknown backend"):
        gilwise.Executor("fibers")
    with pytest.raises(ValueError, match="retries"):
        gilwise.Executor("thread", retries=-1)
    with pytest.raises(ValueError, match="buffersize"):
        gilwise.Executor("inline").map(square, [1], buffersize=0)


def test_is_a_concurrent_futures_executor():
    assert issubclass(gilwise.Executor, cf.Executor)


def test_coroutine_functions_run_on_every_backend(backend, no_leaks):
    with _executor(backend) as executor:
        assert executor.submit(async_square, 7).result(WAIT_S) == 49
        assert list(executor.map(async_square, range(4))) == [0, 1, 4, 9]


def _interrupt():
    raise KeyboardInterrupt


def test_ctrl_c_inside_an_inline_task_reaches_the_caller_and_leaves_a_usable_executor(no_leaks):
    with _executor("inline") as executor:
        with pytest.raises(KeyboardInterrupt):
            executor.submit(_interrupt)
        assert executor.submit(square, 4).result(0) == 16


def test_a_failing_call_inside_a_chunk_keeps_the_workers_traceback(backend, no_leaks):
    with _executor(backend, 2) as executor:
        results = executor.map(raise_on, range(10), [4] * 10, chunksize=3)
        assert [next(results) for _ in range(4)] == [0, 1, 2, 3]
        with pytest.raises(ValueError, match="bad input 4") as caught:
            next(results)
    error = caught.value
    if backend in REMOTE:
        assert isinstance(error.__cause__, RemoteTraceback)
        assert "raise_on" in str(error.__cause__)
    else:
        assert "raise_on" in "".join(traceback.format_tb(error.__traceback__))
