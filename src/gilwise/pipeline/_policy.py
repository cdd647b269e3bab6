"""What a stage does when its function fails on an item: raise, skip, retry or collect.

The retry policy itself is gilwise._retry.Retry, shared with the Executor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

from .._retry import ERROR_ACTIONS, Retry

ErrorPolicy = Union[str, Retry]


def check_policy(on_error: Any) -> ErrorPolicy:
    """The policy itself, or ValueError saying which values are accepted."""
    if isinstance(on_error, Retry) or (isinstance(on_error, str) and on_error in ERROR_ACTIONS):
        return on_error  # type: ignore[no-any-return]
    raise ValueError(
        f"on_error={on_error!r} is not a policy; use 'raise', 'skip', 'collect' or "
        f"gilwise.pipeline.Retry(times=3, backoff_s=0.1)"
    )


def final_action(policy: ErrorPolicy) -> str:
    """What happens to an item once it will not be retried any more."""
    return policy.then if isinstance(policy, Retry) else policy


@dataclass(frozen=True)
class DeadLetter:
    """An item a stage gave up on (``on_error="collect"``) and the exception of its last try."""

    stage: str
    item: Any
    error: BaseException
    attempts: int = 1
