"""Each error policy, worker crashes, and clean shutdown on error, break and Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import traceback

import psutil
import pytest

from gilwise.errors import NotPicklableError, StageError, WorkerCrashedError
from gilwise.pipeline import DeadLetter, Pipeline, Retry

pytestmark = pytest.mark.multiversion  # core behaviour on every supported Python


class Boom(ValueError):
    pass


def fail_on_odd(x: int) -> int:
    if x % 2:
        raise Boom(f"odd {x}")
    return x


def crash_on_three(x: int) -> int:
    if x == 3:
        os._exit(7)
    return x * 10


def test_raise_stops_the_run_with_stage_item_and_original_cause():
    pipe = Pipeline(range(10)).map(fail_on_odd, backend="thread", workers=2, name="check")
    with pytest.raises(StageError) as caught:
        list(pipe)
    error = caught.value
    assert (error.stage, error.item) == ("check", 1)
    assert isinstance(error.__cause__, Boom)
    assert "fail_on_odd" in "".join(traceback.format_tb(error.__cause__.__traceback__))
    assert "on_error='skip'" in str(error)
    assert pipe.stats.error is not None and not pipe.stats.finished


def test_items_before_the_failure_are_delivered_in_order():
    seen = []
    with pytest.raises(StageError):
        for value in Pipeline(range(10)).map(lambda x: 1 // (x - 5), backend="inline"):
            seen.append(value)
    assert seen == [1 // (x - 5) for x in range(5)]


def test_skip_drops_failing_items():
    pipe = Pipeline(range(10)).map(fail_on_odd, backend="thread", on_error="skip")
    assert list(pipe) == [0, 2, 4, 6, 8]
    assert pipe.stats.stages[0].failed == 5
    assert pipe.dead_letters == ()


def test_collect_keeps_failed_items_and_their_errors():
    pipe = Pipeline(range(6)).map(fail_on_odd, backend="inline", on_error="collect", name="f")
    assert list(pipe) == [0, 2, 4]
    letters = pipe.dead_letters
    assert [letter.item for letter in letters] == [1, 3, 5]
    assert all(isinstance(letter, DeadLetter) and letter.stage == "f" for letter in letters)
    assert all(isinstance(letter.error, Boom) for letter in letters)
    assert pipe.stats.dead_letters == 3


def test_dead_letters_are_visible_while_running():
    pipe = Pipeline(range(6)).map(fail_on_odd, backend="inline", on_error="collect")
    for value in pipe:
        if value == 2:
            # The stage may have run ahead of the consumer, never behind it.
            assert [letter.item for letter in pipe.dead_letters][:1] == [1]
            break


class _Flaky:
    """Fails the first ``failures`` calls for each item (thread safe)."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: dict[int, int] = {}
        self.lock = threading.Lock()

    def __call__(self, x: int) -> int:
        with self.lock:
            self.calls[x] = self.calls.get(x, 0) + 1
            attempt = self.calls[x]
        if attempt <= self.failures:
            raise ConnectionError(f"attempt {attempt} at {x}")
        return x


@pytest.mark.parametrize("backend", ["inline", "thread"])
def test_retry_until_it_works(backend):
    flaky = _Flaky(failures=2)
    pipe = Pipeline(range(8)).map(flaky, backend=backend, on_error=Retry(times=2, backoff_s=0.001))
    assert list(pipe) == list(range(8))
    assert all(calls == 3 for calls in flaky.calls.values())
    assert pipe.stats.stages[0].retried == 16


def test_retry_gives_up_then_applies_its_final_action():
    flaky = _Flaky(failures=10)
    policy = Retry(times=2, backoff_s=0.001, then="collect")
    pipe = Pipeline(range(3)).map(flaky, backend="thread", on_error=policy)
    assert list(pipe) == []
    assert [letter.attempts for letter in pipe.dead_letters] == [3, 3, 3]


def test_retry_gives_up_and_raises_with_the_number_of_tries():
    pipe = Pipeline([1]).map(_Flaky(10), backend="inline", on_error=Retry(1, backoff_s=0.001))
    with pytest.raises(StageError, match="after 2 tries"):
        list(pipe)


def test_retry_only_retries_the_named_exceptions():
    flaky = _Flaky(failures=1)
    policy = Retry(times=3, backoff_s=0.001, on=(TimeoutError,), then="skip")
    assert list(Pipeline(range(3)).map(flaky, backend="thread", on_error=policy)) == []
    assert all(calls == 1 for calls in flaky.calls.values())


def test_retry_rejects_nonsense():
    with pytest.raises(ValueError, match="then"):
        Retry(then="ignore")
    with pytest.raises(ValueError, match="times"):
        Retry(times=-1)


def test_a_failing_source_raises_a_stage_error_named_source():
    def source():
        yield 1
        raise OSError("disk gone")

    with pytest.raises(StageError, match="source raised OSError") as caught:
        list(Pipeline(source()).map(abs, backend="thread"))
    assert caught.value.stage == "source"
    assert isinstance(caught.value.__cause__, OSError)


def test_an_error_in_the_consumer_closes_the_run():
    with pytest.raises(KeyboardInterrupt):
        for value in Pipeline(range(1000)).map(abs, backend="thread", workers=3):
            if value == 10:
                raise KeyboardInterrupt


def test_a_later_stage_failing_stops_the_stages_before_it():
    pipe = (
        Pipeline(iter(int, 1))  # an endless stream of zeros
        .map(lambda x: x, backend="thread", workers=2, name="first")
        .map(lambda x: 1 // x, backend="thread", name="second")
    )
    with pytest.raises(StageError, match="'second'"):
        list(pipe)


# -- worker crashes (process backend) ------------------------------------------------------


def test_a_crashed_worker_is_collected_like_any_failure():
    pipe = Pipeline(range(6)).map(crash_on_three, backend="process", workers=2, on_error="collect")
    assert list(pipe) == [0, 10, 20, 40, 50]
    (letter,) = pipe.dead_letters
    assert letter.item == 3 and isinstance(letter.error, WorkerCrashedError)


def test_a_crashed_worker_raises_a_stage_error_by_default():
    pipe = Pipeline(range(6)).map(crash_on_three, backend="process", workers=2, name="crashy")
    with pytest.raises(StageError, match="crashy") as caught:
        list(pipe)
    assert isinstance(caught.value.__cause__, WorkerCrashedError)


def _crash_once(path_and_item: tuple[str, int]) -> int:
    path, item = path_and_item
    marker = os.path.join(path, f"crashed-{item}")
    if item % 3 == 0 and not os.path.exists(marker):
        with open(marker, "w"):
            pass
        os._exit(3)
    return item


def test_a_crash_is_retried(tmp_path):
    items = [(str(tmp_path), i) for i in range(7)]
    pipe = Pipeline(items).map(
        _crash_once, backend="process", workers=2, on_error=Retry(2, backoff_s=0.001)
    )
    assert list(pipe) == list(range(7))
    assert pipe.stats.stages[0].retried == 3


def test_an_unpicklable_function_for_processes_fails_at_once():
    lock = threading.Lock()

    def uses_lock(x):
        with lock:
            return x

    with pytest.raises(NotPicklableError):
        list(Pipeline([1, 2]).map(uses_lock, backend="process", workers=1, on_error="skip"))


CTRL_C_SCRIPT = textwrap.dedent(
    """
    import itertools, sys
    from gilwise.pipeline import Pipeline

    def square(x):
        return x * x

    if __name__ == "__main__":
        pipe = Pipeline(itertools.count()).map(square, backend="process", workers=2)
        for n, value in enumerate(pipe):
            if n == 5:
                print("running", flush=True)
                sys.stdin.readline()  # the test sends SIGINT while we wait here
    """
)


@pytest.mark.timeout(60)
def test_ctrl_c_leaves_no_worker_process_behind(tmp_path):
    script = tmp_path / "endless.py"
    script.write_text(CTRL_C_SCRIPT)
    child = subprocess.Popen(
        [sys.executable, str(script)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "running"
        workers = psutil.Process(child.pid).children(recursive=True)
        assert workers, "the process stage started no worker"
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert "KeyboardInterrupt" in stderr
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, f"workers left running: {[p.pid for p in alive]}"


def square(x: int) -> int:
    return x * x


def test_break_out_of_a_process_stage_leaves_nothing_running():
    # no_leaks (autouse) checks that the workers and every stage thread are gone.
    pipe = Pipeline(iter(int, 1)).map(square, backend="process", workers=2, chunksize=4)
    for count, value in enumerate(pipe, start=1):
        assert value == 0
        if count == 10:
            break
    assert not pipe.stats.finished


def test_a_failure_travels_through_later_stages_after_the_items_before_it():
    def fail_at_seven(x: int) -> int:
        if x == 7:
            raise Boom("seven")
        return x

    pipe = (
        Pipeline(range(100))
        .map(fail_at_seven, backend="thread", workers=3, name="check")
        .batch(2)
        .map(sum, backend="thread", workers=2)
        .map(lambda total: total, backend="inline")
    )
    received = []
    with pytest.raises(StageError, match="'check'") as caught:
        for value in pipe:
            received.append(value)
    assert caught.value.item == 7
    assert received == [0 + 1, 2 + 3, 4 + 5, 6]  # everything before item 7, then the error
