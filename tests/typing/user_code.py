"""A user's program, type-checked with ``mypy --strict`` by tests/test_typing.py.

It uses the public surface the way the README shows (Executor, map, Pipeline, monitor,
profile, classify, the errors) and pins the types a user gets back with ``assert_type``: a
hint that loosens to ``Any`` fails the test. It is never run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import Future
from typing import assert_type

import gilwise
from gilwise.pipeline import Retry, RunStats


def square(x: int) -> int:
    return x * x


def words(line: str) -> list[str]:
    return line.split()


def is_long(word: str) -> bool:
    return len(word) > 3


async def fetch(url: str) -> bytes:
    await asyncio.sleep(0)
    return url.encode()


def with_executor() -> int:
    with gilwise.Executor(max_workers=2) as executor:
        future = executor.submit(square, 3)
        assert_type(future, Future[int])
        assert_type(executor.submit(fetch, "http://127.0.0.1/"), Future[bytes])
        squares = executor.map(square, range(10))
        assert_type(squares, Iterator[int])
        return future.result() + sum(squares)


def with_fixed_backend() -> list[int]:
    with gilwise.Executor("thread", 4, retries=1, timeout=5.0) as executor:
        return list(executor.map(square, [1, 2, 3], chunksize=2))


async def from_async_code() -> bytes:
    with gilwise.Executor("asyncio") as executor:
        data = await executor.submit_async(fetch, "http://127.0.0.1/")
        assert_type(data, bytes)
        return data


def with_map() -> int:
    results = gilwise.map(square, range(100), backend="thread", workers=2)
    assert_type(results, Iterator[int])
    assert_type(gilwise.map(fetch, ["a", "b"]), Iterator[bytes])
    return sum(results)


def with_pipeline() -> RunStats:
    lines = ["a few words here", "and some more words"]
    pipeline = (
        gilwise.Pipeline(lines)
        .flat_map(words)
        .filter(is_long)
        .map(str.upper, backend="thread", on_error=Retry(times=2))
        .batch(2)
    )
    assert_type(pipeline, gilwise.Pipeline[list[str]])
    for batch in pipeline:
        assert_type(batch, list[str])
    fetched = gilwise.Pipeline(["u1", "u2"]).map(fetch, backend="asyncio")
    assert_type(fetched, gilwise.Pipeline[bytes])
    return pipeline.run()


def with_monitor() -> float:
    with gilwise.monitor(rate_hz=500, stack_rate_hz=None) as mon:
        with_map()
    profile: gilwise.Profile = mon.profile
    held = profile.held_fraction
    if profile.verdict is not None:
        print(profile.verdict.kind, profile.verdict.recommended_backend)
    return held if held is not None else 0.0


def with_profile() -> int:
    result, profile = gilwise.profile(square, 12)
    seconds: float = profile.wall_s
    assert seconds >= 0
    return result


def with_classify() -> str:
    decision = gilwise.classify(square, 1000)
    return str(decision)


def with_errors() -> None:
    try:
        with_executor()
    except gilwise.WorkerCrashedError as exc:
        print("worker died:", exc)
    except gilwise.GilwiseError:
        raise
