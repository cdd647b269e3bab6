"""Ctrl-C while a pipeline is consumed, bad arguments named at the call, progress callbacks."""

from __future__ import annotations

import threading

import pytest

from gilwise.pipeline import Pipeline

WAIT_S = 30


def test_ctrl_c_while_iterating_does_not_wait_for_a_busy_stage():
    release, started = threading.Event(), threading.Event()

    def busy(x):
        if x == 1:
            started.set()
            release.wait(WAIT_S)
        return x

    outputs = iter(Pipeline(range(4)).map(busy, backend="thread", workers=2, ordered=False))
    try:
        assert next(outputs) in (0, 2, 3)
        assert started.wait(WAIT_S)
        with pytest.raises(KeyboardInterrupt):
            outputs.throw(KeyboardInterrupt)  # what Ctrl-C raises inside the consumer's wait
        assert not release.is_set()  # left without waiting for the busy call
    finally:
        release.set()


def test_ctrl_c_during_run_does_not_wait_for_a_busy_inline_stage():
    release, started = threading.Event(), threading.Event()

    def busy(x):
        if x == 3:
            started.set()
            release.wait(WAIT_S)
        return x

    def press_ctrl_c(done, total):
        if done == 2:
            assert started.wait(WAIT_S)
            raise KeyboardInterrupt

    pipe = Pipeline(range(10), queue_size=1).map(busy, backend="inline")
    try:
        with pytest.raises(KeyboardInterrupt):
            pipe.run(progress=press_ctrl_c)
        assert not release.is_set()
    finally:
        release.set()


def test_run_reports_progress_to_a_callback():
    seen = []
    stats = Pipeline(range(4)).map(abs, backend="thread").run(progress=lambda *a: seen.append(a))
    assert seen == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]
    assert stats.delivered_items == 4


@pytest.mark.parametrize(
    ("build", "error", "named"),
    [
        (lambda: Pipeline([1], queue_size=0), ValueError, "queue_size"),
        (lambda: Pipeline([1], queue_size="x"), TypeError, "queue_size"),
        (lambda: Pipeline([1]).map(abs, workers=0), ValueError, "workers"),
        (lambda: Pipeline([1]).map(abs, workers=2.5), TypeError, "workers"),
        (lambda: Pipeline([1]).map(abs, workers="x"), TypeError, "workers"),
        (lambda: Pipeline([1]).map(abs, chunksize=0), ValueError, "chunksize"),
        (lambda: Pipeline([1]).map(abs, chunksize="x"), TypeError, "chunksize"),
        (lambda: Pipeline([1]).map(abs, on_error="bogus"), ValueError, "on_error"),
        (lambda: Pipeline([1]).map(abs, ordered="yes"), TypeError, "ordered"),
        (lambda: Pipeline([1]).map(abs, backend="thread", bogus=1), TypeError, "'bogus'"),
        (lambda: Pipeline([1]).map(abs, bogus=1), TypeError, "'bogus'"),
        (lambda: Pipeline([1]).batch(0), ValueError, "batch size"),
        (lambda: Pipeline([1]).batch(2, timeout_s="x"), TypeError, "timeout_s"),
        (lambda: Pipeline([1]).run(progress="yes"), TypeError, "progress"),
    ],
)
def test_bad_pipeline_arguments_name_the_parameter(build, error, named):
    with pytest.raises(error, match=named):
        build()


def test_an_unpicklable_stage_function_is_named_in_the_error():
    lock = threading.Lock()

    def holds_a_lock(x):
        with lock:
            return x

    pipe = Pipeline(range(3)).map(holds_a_lock, backend="process", workers=1)
    with pytest.raises(Exception, match=r"the function\)") as caught:
        list(pipe)
    assert "StageCall" not in str(caught.value)  # the user's function, not the stage's wrapper
