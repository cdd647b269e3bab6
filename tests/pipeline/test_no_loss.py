"""Under random failures every item comes out exactly once: as a result or a dead letter."""

from __future__ import annotations

import random
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gilwise.pipeline import Pipeline, Retry

pytestmark = pytest.mark.multiversion  # core behaviour on every supported Python


class _Flaky:
    """Fails items in ``always`` on every try and items in ``once`` on their first try."""

    def __init__(self, always: set[int], once: set[int]) -> None:
        self.always, self.once = always, once
        self.tries: dict[int, int] = {}
        self.lock = threading.Lock()

    def __call__(self, item: int) -> int:
        with self.lock:
            self.tries[item] = self.tries.get(item, 0) + 1
            first = self.tries[item] == 1
        if item in self.always or (first and item in self.once):
            raise RuntimeError(f"failing {item}")
        return item


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(0, 60),
    seed=st.integers(0, 2**16),
    backend=st.sampled_from(["inline", "thread"]),
    workers=st.integers(1, 4),
    ordered=st.booleans(),
    queue_size=st.integers(1, 8),
    chunksize=st.integers(1, 4),
)
def test_no_item_lost_or_duplicated(n, seed, backend, workers, ordered, queue_size, chunksize):
    rng = random.Random(seed)
    always = {i for i in range(n) if rng.random() < 0.2}
    once = {i for i in range(n) if rng.random() < 0.3}
    flaky = _Flaky(always, once)
    policy = Retry(times=1, backoff_s=0.0, then="collect")
    pipe = (
        Pipeline(range(n), queue_size=queue_size)
        .map(
            flaky,
            backend=backend,
            workers=workers,
            ordered=ordered,
            on_error=policy,
            chunksize=chunksize,
        )
        .filter(lambda x: True, backend="thread", workers=2, ordered=ordered)
    )
    out = list(pipe)
    dead = [letter.item for letter in pipe.dead_letters]
    assert sorted(out + dead) == list(range(n))
    assert sorted(dead) == sorted(always)
    if ordered:
        assert out == sorted(out)


def _fails_on_multiples_of(item: tuple[int, int]) -> int:
    value, divisor = item
    if value % divisor == 0:
        raise ValueError(value)
    return value


@pytest.mark.parametrize(("seed", "chunksize"), [(1, 1), (2, 4)])
def test_no_item_lost_or_duplicated_on_processes(seed, chunksize):
    rng = random.Random(seed)
    divisor = rng.randint(2, 5)
    n = rng.randint(10, 30)
    pipe = Pipeline([(i, divisor) for i in range(n)]).map(
        _fails_on_multiples_of,
        backend="process",
        workers=2,
        on_error="collect",
        ordered=False,
        chunksize=chunksize,
    )
    out = list(pipe)
    dead = [letter.item[0] for letter in pipe.dead_letters]
    assert sorted(out + dead) == list(range(n))
    assert sorted(dead) == [i for i in range(n) if i % divisor == 0]
