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


def test_under_auto_the_first_call_runs_in_the_consumer_and_is_yielded_first(no_leaks):
    import threading

    threads = []

    def where(x):
        threads.append((x, threading.get_ident()))
        return x + 1

    results = gilwise.map(where, range(20))
    assert next(results) == 1
    assert threads == [(0, threading.get_ident())]  # nothing else ran before the pool exists
    assert list(results) == list(range(2, 21))
    assert sorted(x for x, _ in threads) == list(range(20))  # every call ran exactly once


def test_under_auto_a_failing_first_call_is_named_as_input_0(no_leaks):
    def fail(x):
        raise KeyError(x)

    with pytest.raises(KeyError) as raised:
        next(gilwise.map(fail, [7, 8]))
    assert raised.value.gilwise_index == 0  # type: ignore[attr-defined]
    assert list(gilwise.map(fail, [])) == []


def test_closing_a_map_of_tiny_calls_early_cancels_cleanly(no_leaks):
    # Tiny calls run lazily (no future per chunk): closing must not trip over that.
    results = gilwise.map(abs, range(100_000))
    assert sum(itertools.islice(results, 10_001)) == sum(range(10_001))
    results.close()
    with gilwise.Executor() as executor:
        more = executor.map(abs, range(100_000))
        assert next(more) == 0
        more.close()
