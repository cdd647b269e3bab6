"""Bounded queues: the source never runs further ahead than the pipeline can hold."""

from __future__ import annotations

import itertools
import threading

import psutil
import pytest

from gilwise.pipeline import Pipeline
from gilwise.pipeline._stage import max_in_flight

WAIT_S = 10


def _counting_source(reached: threading.Event, bound: int, produced: list[int]):
    for item in itertools.count():
        produced[0] += 1
        if produced[0] >= bound:
            reached.set()
        yield item


@pytest.mark.parametrize(("queue_size", "workers", "stages"), [(4, 2, 1), (2, 3, 3), (1, 1, 2)])
def test_a_slow_consumer_holds_the_source_back(queue_size, workers, stages):
    # Per stage: its inbox queue plus what it holds in flight; plus the last queue and the one
    # item the source thread holds while it waits to put it.
    bound = stages * (queue_size + max_in_flight(workers)) + queue_size + 1
    produced = [0]
    reached = threading.Event()
    pipe = Pipeline(_counting_source(reached, bound, produced), queue_size=queue_size)
    for _ in range(stages):
        pipe = pipe.map(lambda x: x, backend="thread", workers=workers)
    for consumed, value in enumerate(pipe, start=1):
        assert value == consumed - 1
        assert produced[0] - consumed <= bound
        if consumed == 1:
            # The source fills the pipeline while we hold still, but only up to the bound.
            assert reached.wait(WAIT_S), f"the source stopped at {produced[0]} < {bound}"
            assert produced[0] - consumed <= bound
        if consumed == 200:
            break


def test_memory_stays_flat_over_a_long_stream():
    def inc(x: int) -> int:
        return x + 1

    process = psutil.Process()
    rss_bytes: list[int] = []
    pipe = (
        Pipeline(range(40_000), queue_size=16)
        .map(inc, backend="inline")
        .map(inc, backend="thread", workers=2)
        .map(inc, backend="inline")
    )
    for value in pipe:
        if value in (10_003, 39_999 + 3):
            rss_bytes.append(process.memory_info().rss)
    growth_mb = (rss_bytes[1] - rss_bytes[0]) / 1e6
    assert growth_mb < 10, f"RSS grew by {growth_mb:.1f} MB over 30,000 items"
