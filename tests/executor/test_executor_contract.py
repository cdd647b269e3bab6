"""concurrent.futures conformance (modelled on CPython's executor tests), batches that keep
per-call outcomes, bad arguments named at the call, interrupts, progress callbacks."""

from __future__ import annotations

import gc
import os
import threading
import weakref

import pytest
from executor_gates import raise_on

import gilwise
from gilwise import _runtime as runtime
from gilwise import backends
from gilwise._chooser import Chooser
from gilwise._decide import TaskMeasurement
from gilwise._measure import CallSample
from gilwise.errors import TaskInterruptedError, WorkerCrashedError
from gilwise.pipeline import Retry

WAIT_S = 30


class Dummy:
    """An object a weak reference can point at."""

    def __init__(self, value: int) -> None:
        self.value = value


def make_dummy(value: int) -> Dummy:
    return Dummy(value)


def _keywords(*, self=None, fn=None):
    return (self, fn)


def exit_on(x: int, bad: int) -> int:
    if x == bad:
        os._exit(7)
    return x


# --- concurrent.futures conformance -------------------------------------------------------


@pytest.mark.parametrize("backend", ["inline", "thread", "process", "auto"])
def test_map_keeps_no_reference_to_results_it_yielded(backend, no_leaks):
    # bpo-14406: the result iterator must not keep an internal reference to result objects.
    with gilwise.Executor(backend, 2) as executor:
        for obj in executor.map(make_dummy, range(40)):
            ref = weakref.ref(obj)
            del obj
            gc.collect()
            assert ref() is None


def test_map_chunks_keep_no_reference_to_results_they_yielded(no_leaks):
    with gilwise.Executor("thread", 2) as executor:
        for obj in executor.map(make_dummy, range(40), chunksize=8):
            ref = weakref.ref(obj)
            del obj
            gc.collect()
            assert ref() is None


@pytest.mark.parametrize("backend", ["auto", "inline", "thread", "process", "asyncio"])
def test_submit_passes_keywords_named_self_and_fn(backend, no_leaks):
    with gilwise.Executor(backend, 2) as executor:
        futures = [executor.submit(_keywords, self=i, fn="f") for i in range(6)]
        assert [f.result(WAIT_S) for f in futures] == [(i, "f") for i in range(6)]


@pytest.mark.parametrize("bad", [0, -1])
def test_max_workers_below_one_is_the_stdlib_value_error(bad):
    with pytest.raises(ValueError, match="max_workers must be greater than 0"):
        gilwise.Executor(max_workers=bad)
    with pytest.raises(ValueError, match="max_workers must be greater than 0"):
        gilwise.Executor("thread", bad)


def test_the_thread_pool_initializer_runs_in_each_worker_with_its_args(no_leaks):
    seen = []
    with gilwise.Executor("thread", 1, initializer=seen.append, initargs=("ready",)) as executor:
        assert executor.submit(lambda: list(seen)).result(WAIT_S) == ["ready"]


@pytest.mark.parametrize(
    ("backend", "options", "named"),
    [
        ("thread", {"max_tasks_per_child": 3}, "'max_tasks_per_child'"),
        ("inline", {"initializer": print}, "'initializer'"),
        ("asyncio", {"colour": 1}, "'colour'"),
        ("auto", {"colour": 1}, "'colour'"),
    ],
)
def test_an_option_the_backend_does_not_know_is_an_error_naming_it(backend, options, named):
    with pytest.raises(TypeError, match=named):
        gilwise.Executor(backend, 1, **options)


# --- bad arguments, named at the call -----------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "named"),
    [
        ({"max_workers": 2.5}, TypeError, "max_workers"),
        ({"max_workers": "x"}, TypeError, "max_workers"),
        ({"max_workers": True}, TypeError, "max_workers"),
        ({"timeout": "x"}, TypeError, "timeout"),
        ({"timeout": 0}, ValueError, "timeout"),
        ({"timeout": -1.0}, ValueError, "timeout"),
        ({"retries": "x"}, TypeError, "retries"),
        ({"retries": 1.5}, TypeError, "retries"),
        ({"retries": -1}, ValueError, "retries"),
        ({"backend": 3}, TypeError, "backend"),
        ({"backend": "gpu"}, ValueError, "unknown backend 'gpu'"),
    ],
)
def test_bad_executor_arguments_name_the_parameter(kwargs, error, named):
    with pytest.raises(error, match=named):
        gilwise.Executor(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "named"),
    [
        ({"chunksize": 0}, ValueError, "chunksize"),
        ({"chunksize": "x"}, TypeError, "chunksize"),
        ({"chunksize": 2.5}, TypeError, "chunksize"),
        ({"buffersize": 0}, ValueError, "buffersize"),
        ({"timeout": "x"}, TypeError, "timeout"),
    ],
)
def test_bad_map_arguments_raise_at_the_call_not_at_the_first_result(kwargs, error, named):
    with gilwise.Executor("thread", 1) as executor, pytest.raises(error, match=named):
        executor.map(abs, [1, 2], **kwargs)  # never iterated


@pytest.mark.parametrize(
    ("kwargs", "error", "named"),
    [
        ({"workers": 0}, ValueError, "workers"),
        ({"workers": "x"}, TypeError, "workers"),
        ({"progress": "yes"}, TypeError, "progress"),
        ({"ordered": "no"}, TypeError, "ordered"),
    ],
)
def test_bad_gilwise_map_arguments_raise_at_the_call(kwargs, error, named):
    with pytest.raises(error, match=named):
        gilwise.map(abs, [1, 2], **kwargs)  # never iterated


# --- batches keep per-call outcomes -------------------------------------------------------


@pytest.mark.parametrize("backend", ["inline", "thread", "process"])
def test_a_chunk_yields_the_results_before_a_failing_call_then_its_error(backend, no_leaks):
    got = []
    with gilwise.Executor(backend, 2) as executor:
        results = executor.map(raise_on, range(12), [5] * 12, chunksize=4)
        with pytest.raises(ValueError, match="bad input 5") as caught:
            for value in results:
                got.append(value)
    assert got == [0, 1, 2, 3, 4]
    assert caught.value.gilwise_index == 5
    if hasattr(caught.value, "add_note"):
        assert any("raise_on" in note and "#5" in note for note in caught.value.__notes__)


def test_a_crash_inside_a_process_chunk_fails_only_its_own_call(no_leaks):
    got = []
    with gilwise.Executor("process", 2) as executor:
        results = executor.map(exit_on, range(12), [5] * 12, chunksize=4)
        with pytest.raises(WorkerCrashedError) as caught:
            for value in results:
                got.append(value)
    assert got == [0, 1, 2, 3, 4]
    assert "exit_on" in str(caught.value)
    assert caught.value.gilwise_index == 5


def test_a_failed_call_in_a_chunk_is_retried_on_its_own(tmp_path, no_leaks):
    marker = tmp_path / "failed-once"

    def flaky(x):
        if x == 6 and not marker.exists():
            marker.touch()
            raise ValueError("first try fails")
        return x

    with gilwise.Executor("thread", 2, retries=Retry(times=1, backoff_s=0)) as executor:
        assert list(executor.map(flaky, range(12), chunksize=4)) == list(range(12))
    assert marker.exists()


# --- interrupts ---------------------------------------------------------------------------


def test_shutdown_interrupt_returns_without_waiting_for_a_running_thread_task(no_leaks):
    release, started = threading.Event(), threading.Event()

    def busy():
        started.set()
        release.wait(WAIT_S)
        return "late"

    executor = gilwise.Executor("thread", 1)
    running = executor.submit(busy)
    queued = executor.submit(pow, 2, 2)
    assert started.wait(WAIT_S)
    executor.shutdown(interrupt=True)
    assert not release.is_set()  # returned while the task still runs: nothing waited for it
    assert isinstance(running.exception(0), TaskInterruptedError)
    assert queued.cancelled()
    release.set()


def test_ctrl_c_in_a_with_block_interrupts_running_tasks_without_waiting(no_leaks):
    # What a KeyboardInterrupt raised inside ``with`` does on its way out (the real SIGINT,
    # from outside, is tests/interrupt's): the running task is not waited for.
    release, started = threading.Event(), threading.Event()

    def busy():
        started.set()
        release.wait(WAIT_S)

    executor = gilwise.Executor("thread", 2)
    future = executor.submit(busy)
    queued = [executor.submit(busy) for _ in range(3)]
    try:
        assert started.wait(WAIT_S)
        assert executor.__exit__(KeyboardInterrupt, KeyboardInterrupt(), None) is False
        assert not release.is_set()
        assert isinstance(future.exception(0), TaskInterruptedError)
        assert all(isinstance(f.exception(0), TaskInterruptedError) for f in queued[:1])
        assert all(f.cancelled() for f in queued[1:])
        with pytest.raises(RuntimeError, match="after shutdown"):
            executor.submit(busy)
    finally:
        release.set()


# --- progress -----------------------------------------------------------------------------


def test_executor_map_reports_progress_to_a_callback(no_leaks):
    seen = []
    with gilwise.Executor("thread", 2) as executor:
        results = list(executor.map(abs, range(5), progress=lambda *a: seen.append(a)))
    assert results == [0, 1, 2, 3, 4]
    assert seen == [(0, 5), (1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]


def test_gilwise_map_reports_progress_with_an_unknown_total(no_leaks):
    seen = []
    items = (x for x in range(3))
    assert list(gilwise.map(abs, items, progress=lambda *a: seen.append(a))) == [0, 1, 2]
    assert seen == [(0, None), (1, None), (2, None), (3, None)]


# --- the chooser's crash memory -----------------------------------------------------------


def test_after_a_crash_a_function_is_decided_onto_processes_and_never_re_measured():
    chooser = Chooser("f", max_workers=2)
    measure = chooser.measured([abs])[0]
    chooser.measuring += 1
    measure.call(1)
    measure.call.sample = CallSample(0.0001, 0.0001, 0.0, 0.0001)  # tiny: would run inline
    assert chooser.record(measure, ok=True) or chooser.next_step() is None
    chooser.note_crash(WorkerCrashedError("worker died"))
    decision, opened = chooser.decide(lambda name, workers: name)
    assert decision.backend == opened == "process"
    assert "crashed" in decision.reason
    for _ in range(50):  # a 100x drift would re-measure any other function
        assert not chooser.observe(0.01)
    assert chooser.decision is decision


@pytest.mark.skipif(
    runtime.current().cores < 2 or not runtime.current().gil_enabled,
    reason="GIL-bound work goes to processes only with 2+ cores and the GIL on",
)
def test_a_function_on_processes_is_never_re_measured_in_this_process():
    chooser = Chooser("f", max_workers=2)
    gil_bound = TaskMeasurement(wall_s=0.05, cpu_s=0.05, pair_wall_s=0.1, pair_cpu_s=0.1)
    decision, _ = chooser.decide(lambda name, workers: name, gil_bound)
    assert decision.backend == "process"
    for _ in range(50):  # calls 100x slower than measured: any other function is re-measured
        assert not chooser.observe(5.0)
    assert chooser.decision is decision


def test_backends_registry_still_names_every_backend():
    assert set(backends.names()) >= {"inline", "thread", "process", "asyncio"}
