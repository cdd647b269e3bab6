"""Stages may send several items per task (chunksize); each item keeps its own outcome."""

from __future__ import annotations

import os

import pytest

from gilwise.errors import RemoteTraceback, WorkerCrashedError
from gilwise.pipeline import Pipeline, Retry
from gilwise.pipeline._stage import max_in_flight

pytestmark = pytest.mark.multiversion  # core behaviour on every supported Python


def double_or_fail(x: int) -> int:
    if x % 5 == 4:
        raise ValueError(f"bad {x}")
    return 2 * x


def crash_on_seven(x: int) -> int:
    if x == 7:
        os._exit(9)
    return x


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_chunks_keep_order_and_per_item_failures(backend):
    pipe = Pipeline(range(40)).map(
        double_or_fail, backend=backend, workers=2, chunksize=8, on_error="collect"
    )
    assert list(pipe) == [2 * x for x in range(40) if x % 5 != 4]
    assert sorted(letter.item for letter in pipe.dead_letters) == [
        x for x in range(40) if x % 5 == 4
    ]


def test_a_remote_item_error_carries_the_worker_traceback():
    pipe = Pipeline(range(6)).map(double_or_fail, backend="process", workers=1, chunksize=6)
    with pytest.raises(Exception) as caught:
        list(pipe)
    original = caught.value.__cause__
    assert isinstance(original, ValueError)
    assert isinstance(original.__cause__, RemoteTraceback)
    assert "double_or_fail" in original.__cause__.traceback_text


@pytest.mark.parametrize("on_error", ["collect", "skip"])
def test_a_crash_fails_only_the_item_that_crashed_not_its_chunk_mates(on_error):
    pipe = Pipeline(range(16)).map(
        crash_on_seven, backend="process", workers=2, chunksize=4, on_error=on_error
    )
    assert list(pipe) == [x for x in range(16) if x != 7]
    if on_error == "collect":
        (letter,) = pipe.dead_letters
        assert letter.item == 7 and isinstance(letter.error, WorkerCrashedError)
        assert "crash_on_seven" in str(letter.error)
    assert pipe.stats.stages[0].failed == 1


def test_retry_runs_a_crashed_item_again_once_per_try():
    pipe = Pipeline(range(16)).map(
        crash_on_seven,
        backend="process",
        workers=2,
        chunksize=4,
        on_error=Retry(times=1, backoff_s=0.0, then="collect"),
    )
    assert list(pipe) == [x for x in range(16) if x != 7]
    (letter,) = pipe.dead_letters
    assert letter.item == 7 and letter.attempts == 2


def test_chunks_never_wait_for_more_input():
    # Two items and a chunk of 50: the stage sends what it has rather than waiting.
    pipe = Pipeline(iter([1, 2])).map(abs, backend="thread", workers=1, chunksize=50)
    assert list(pipe) == [1, 2]


def test_in_flight_bound_grows_with_the_chunk():
    assert max_in_flight(2, 8) == 32
    assert max_in_flight(1) == 3
