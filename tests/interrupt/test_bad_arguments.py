"""Bad arguments at the public API fail at the call, with an error that names the parameter.

The other half of "a bad argument never hangs or leaves a process" (issue 12): nothing is
started, so nothing can be left; each case checks the exception type (TypeError for a wrong
type, ValueError for a wrong value) and that the message names the parameter.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest

import gilwise


def inc(x: int) -> int:
    return x + 1


def _executor(**kwargs: Any) -> Callable[[], Any]:
    def make() -> Any:
        executor = gilwise.Executor(**kwargs)
        executor.shutdown()  # reached only if the argument was (wrongly) accepted

    return make


CASES = [
    # (what is called, expected exception, word the message must contain)
    ("max_workers=2.5", _executor(max_workers=2.5), TypeError, "max_workers"),
    ("max_workers='x'", _executor(max_workers="x"), TypeError, "max_workers"),
    ("max_workers=True", _executor(max_workers=True), TypeError, "max_workers"),
    ("max_workers=0", _executor(max_workers=0), ValueError, "max_workers must be greater than 0"),
    ("max_workers=-1", _executor(max_workers=-1), ValueError, "max_workers"),
    (
        "process max_workers=0",
        _executor(backend="process", max_workers=0),
        ValueError,
        "max_workers",
    ),
    (
        "thread max_workers='x'",
        _executor(backend="thread", max_workers="x"),
        TypeError,
        "max_workers",
    ),
    ("timeout='x'", _executor(timeout="x"), TypeError, "timeout"),
    ("timeout=0", _executor(timeout=0), ValueError, "timeout"),
    ("timeout=-1", _executor(timeout=-1), ValueError, "timeout"),
    ("retries='x'", _executor(retries="x"), TypeError, "retries"),
    ("retries=1.5", _executor(retries=1.5), TypeError, "retries"),
    ("retries=-1", _executor(retries=-1), ValueError, "retries"),
    ("backend='bogus'", _executor(backend="bogus"), ValueError, "bogus"),
    (
        "unknown process option",
        _executor(backend="process", bogus_option=1),
        TypeError,
        "bogus_option",
    ),
    (
        "unknown thread option",
        _executor(backend="thread", bogus_option=1),
        TypeError,
        "bogus_option",
    ),
]


@pytest.mark.parametrize(
    ("call", "error", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_executor_rejects_a_bad_argument_naming_it(
    call: Callable[[], Any], error: type, words: str
) -> None:
    with pytest.raises(error, match=words):
        call()


@pytest.mark.parametrize(
    ("chunksize", "error"), [(0, ValueError), (-1, ValueError), ("x", TypeError), (2.5, TypeError)]
)
def test_map_rejects_a_bad_chunksize_at_the_call(chunksize: Any, error: type) -> None:
    with (
        gilwise.Executor(backend="thread", max_workers=1) as executor,
        pytest.raises(error, match="chunksize"),
    ):
        executor.map(inc, [1, 2], chunksize=chunksize)


@pytest.mark.parametrize(("workers", "error"), [(0, ValueError), ("x", TypeError)])
def test_streaming_map_rejects_bad_workers_at_the_call(workers: Any, error: type) -> None:
    with pytest.raises(error, match="workers"):
        gilwise.map(inc, [1, 2], workers=workers)


@pytest.mark.parametrize(("queue_size", "error"), [(0, ValueError), ("x", TypeError)])
def test_pipeline_rejects_a_bad_queue_size(queue_size: Any, error: type) -> None:
    with pytest.raises(error, match="queue_size"):
        gilwise.Pipeline([1, 2], queue_size=queue_size)


STAGE_CASES = [
    ("workers=0", {"workers": 0}, ValueError, "workers"),
    ("workers=2.5", {"workers": 2.5}, TypeError, "workers"),
    ("workers='x'", {"workers": "x"}, TypeError, "workers"),
    ("chunksize=0", {"chunksize": 0}, ValueError, "chunksize"),
    ("chunksize='x'", {"chunksize": "x"}, TypeError, "chunksize"),
    ("on_error='bogus'", {"on_error": "bogus"}, ValueError, "on_error"),
    ("backend='bogus'", {"backend": "bogus"}, ValueError, "bogus"),
]


@pytest.mark.parametrize(
    ("options", "error", "words"), [c[1:] for c in STAGE_CASES], ids=[c[0] for c in STAGE_CASES]
)
def test_pipeline_stage_rejects_a_bad_argument_when_it_is_added(
    options: dict, error: type, words: str
) -> None:
    with pytest.raises(error, match=words):
        gilwise.Pipeline([1, 2]).map(inc, **options)


def test_pipeline_batch_rejects_a_bad_size() -> None:
    with pytest.raises(ValueError, match="size"):
        gilwise.Pipeline([1, 2]).batch(0)
