"""gilwise.map: the streaming one-liner over an Executor that lives as long as the generator."""

from __future__ import annotations

import itertools
import time

import pytest
from executor_gates import square

import gilwise


def _slow_on_first(x):
    if x == 0:
        time.sleep(0.05)
    return x


def test_map_streams_results_in_order(no_leaks):
    assert list(gilwise.map(square, range(100))) == [i * i for i in range(100)]


@pytest.mark.parametrize("backend", ["inline", "thread", "asyncio"])
def test_map_on_a_fixed_backend(backend, no_leaks):
    assert list(gilwise.map(square, range(30), backend=backend, workers=2)) == [
        i * i for i in range(30)
    ]


def test_unordered_map_yields_every_result_once(no_leaks):
    got = list(gilwise.map(_slow_on_first, range(20), backend="thread", workers=4, ordered=False))
    assert sorted(got) == list(range(20))
    assert got[0] != 0  # the slow first call does not hold back the others


def test_endless_input_and_early_stop_leave_nothing_running(no_leaks):
    results = gilwise.map(square, itertools.count(), backend="thread", workers=2)
    assert list(itertools.islice(results, 50)) == [i * i for i in range(50)]
    results.close()


def test_errors_propagate_and_free_the_workers(no_leaks):
    def fail_at_5(x):
        if x == 5:
            raise ArithmeticError("five")
        return x

    results = gilwise.map(fail_at_5, range(10), backend="thread")
    assert [next(results) for _ in range(5)] == list(range(5))
    with pytest.raises(ArithmeticError, match="five"):
        next(results)


def test_progress_bar_can_be_forced_on(no_leaks, capsys):
    assert list(gilwise.map(square, range(5), backend="inline", progress=True)) == [0, 1, 4, 9, 16]


def test_many_tiny_calls_are_batched(no_leaks):
    total = sum(gilwise.map(int.__neg__, range(200_000)))
    assert total == -sum(range(200_000))
