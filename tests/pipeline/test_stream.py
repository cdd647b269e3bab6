"""Items flow through map/filter/flat_map/batch in order (or not, when asked), from any source."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading

import pytest

import gilwise
from gilwise.pipeline import Pipeline, RunStats

pytestmark = pytest.mark.multiversion  # core behaviour on every supported Python

WAIT_S = 10


def _reverse_completion(n: int):
    """A stage function under which item i finishes only after item i+1 has finished."""
    finished = [threading.Event() for _ in range(n + 1)]
    finished[n].set()

    def step(item: int) -> int:
        assert finished[item + 1].wait(WAIT_S), "the next item never finished"
        finished[item].set()
        return item * 10

    return step


def test_pipeline_is_the_public_name():
    assert gilwise.Pipeline is Pipeline


def test_ordered_output_follows_input_order_even_when_items_finish_in_reverse():
    n = 8
    pipe = Pipeline(range(n)).map(_reverse_completion(n), backend="thread", workers=n)
    assert list(pipe) == [item * 10 for item in range(n)]


def test_unordered_output_does_not_wait_for_a_slow_first_item():
    n = 6
    others_received = threading.Event()

    def step(item: int) -> int:
        if item == 0:  # finishes only once the consumer has every other item
            assert others_received.wait(WAIT_S), "unordered output waited for item 0"
        return item

    received = []
    pipe = Pipeline(range(n)).map(step, backend="thread", workers=n, ordered=False)
    for value in pipe:
        received.append(value)
        if len(received) == n - 1:
            others_received.set()
    assert sorted(received[:-1]) == list(range(1, n)) and received[-1] == 0


def test_map_filter_flat_map_chain():
    pipe = (
        Pipeline(range(10))
        .map(lambda x: x + 1, backend="inline")
        .filter(lambda x: x % 2 == 0, backend="thread", workers=3)
        .flat_map(lambda x: [x] * (x // 2), backend="thread", workers=2)
    )
    expected = [x for x in range(1, 11) if x % 2 == 0 for _ in range(x // 2)]
    assert list(pipe) == expected


def test_building_returns_a_new_pipeline_and_a_pipeline_can_run_twice():
    base = Pipeline([1, 2, 3])
    doubled = base.map(lambda x: 2 * x, backend="inline")
    assert list(base) == [1, 2, 3]
    assert list(doubled) == [2, 4, 6]
    assert list(doubled) == [2, 4, 6]


def test_batch_groups_items_and_flushes_the_rest_at_the_end():
    assert list(Pipeline(range(7)).batch(3)) == [[0, 1, 2], [3, 4, 5], [6]]


def test_batch_timeout_flushes_a_partial_batch():
    release = threading.Event()

    def source():
        yield 1
        yield 2
        assert release.wait(WAIT_S), "the partial batch never came out"
        yield 3

    batches = []
    for batch in Pipeline(source()).batch(5, timeout_s=0.05):
        batches.append(batch)
        release.set()
    assert batches == [[1, 2], [3]]


def test_infinite_generator_source_and_break_stop_everything():
    produced = itertools.count()
    pipe = Pipeline(next(produced) for _ in itertools.count()).map(
        lambda x: x * 2, backend="thread", workers=2
    )
    seen = []
    for value in pipe:
        seen.append(value)
        if len(seen) == 20:
            break
    assert seen == [2 * i for i in range(20)]
    assert pipe.stats is not None and not pipe.stats.finished


def test_empty_source():
    pipe = Pipeline([]).map(lambda x: x, backend="thread")
    assert list(pipe) == []
    assert pipe.stats.finished


def test_async_iterable_source():
    async def numbers():
        for i in range(5):
            await asyncio.sleep(0)
            yield i

    assert list(Pipeline(numbers()).map(lambda x: -x, backend="inline")) == [0, -1, -2, -3, -4]


def test_async_for_consumption():
    async def consume():
        return [x async for x in Pipeline(range(6)).map(lambda x: x * x, backend="thread")]

    assert asyncio.run(consume()) == [0, 1, 4, 9, 16, 25]


def test_async_for_break_closes_the_run():
    async def consume():
        pipe = Pipeline(itertools.count()).map(lambda x: x, backend="thread", workers=2)
        async for value in pipe:
            if value == 5:
                break
        return pipe

    pipe = asyncio.run(consume())
    assert pipe.stats.delivered_items == 6


def test_auto_runs_tiny_functions_inline_and_waiting_ones_on_threads():
    released = threading.Event()

    def waits(x: int) -> int:
        released.wait(0.02)  # never set: a 20 ms wait that burns no CPU
        return x

    pipe = Pipeline(range(12)).map(waits, name="wait").map(abs, name="tiny")
    assert list(pipe) == list(range(12))
    stats = pipe.stats
    assert stats.stage("wait").backend == "thread"
    assert stats.stage("tiny").backend == "inline"
    assert "I/O-bound" in stats.stage("wait").reason


def test_run_returns_stats_with_counts_and_json():
    stats = Pipeline(range(30)).map(lambda x: x, backend="thread", name="same").run()
    assert isinstance(stats, RunStats)
    assert stats.finished and stats.source_items == 30 and stats.delivered_items == 30
    same = stats.stage("same")
    assert (same.items_in, same.items_out, same.workers) == (30, 30, same.workers)
    data = json.loads(stats.to_json())
    assert data["schema"] == "gilwise.pipeline-stats/1"
    assert data["stages"][0]["name"] == "same"
    assert 0.0 <= data["stages"][0]["utilisation"] <= 1.0


def test_stage_names_default_to_the_function_and_stay_unique():
    def parse(x):
        return x

    stats = Pipeline([1]).map(parse).map(parse).map(lambda x: x).run()
    assert [s.name for s in stats.stages] == ["parse", "parse#2", "map"]
    with pytest.raises(KeyError, match="parse, parse#2, map"):
        stats.stage("nope")


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda p: p.map(3), TypeError, "needs a callable"),
        (lambda p: p.map(abs, backend="gpu"), ValueError, "unknown backend 'gpu'"),
        (lambda p: p.map(abs, workers=0), ValueError, "workers must be"),
        (lambda p: p.map(abs, on_error="ignore"), ValueError, "is not a policy"),
        (lambda p: p.batch(0), ValueError, "batch size"),
        (lambda p: p.map(_coroutine), TypeError, "coroutine function"),
    ],
)
def test_bad_arguments_say_what_to_do(build, error, match):
    with pytest.raises(error, match=match):
        build(Pipeline([1]))


async def _coroutine(x):
    return x


def test_a_source_that_is_not_iterable_is_refused():
    with pytest.raises(TypeError, match="iterable"):
        Pipeline(42)


def test_auto_does_not_hold_an_item_back_waiting_for_a_partner_to_measure():
    second_item_seen = threading.Event()

    def spin(x: int) -> int:
        total = 0
        for i in range(100_000):  # several ms of pure Python: auto wants a pair of calls
            total += i
        return x

    def source():
        yield 1
        yield 2
        # The third item only comes once item 2 is out: auto must not wait for it.
        assert second_item_seen.wait(WAIT_S), "item 2 was held back"
        yield 3

    out = []
    for value in Pipeline(source()).map(spin):
        out.append(value)
        if value == 2:
            second_item_seen.set()
    assert out == [1, 2, 3]


def test_retry_is_reachable_as_gilwise_pipeline_retry():
    import subprocess
    import sys

    code = "import gilwise; print(gilwise.pipeline.Retry(times=3, backoff_s=0.1).times)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "3", done.stderr
