"""What a stage does when its function fails on an item: raise, skip, retry or collect."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

ERROR_ACTIONS = ("raise", "skip", "collect")


@dataclass(frozen=True)
class Retry:
    """Try a failed item again, ``times`` more times, waiting ``backoff_s``, then twice as long...

    ``then`` is what happens when the last try fails too: "raise" (default), "skip" or
    "collect". Only exceptions that are instances of ``on`` are retried; others go straight
    to ``then``. A worker crash (errors.WorkerCrashedError) is an exception like any other.
    """

    times: int = 3
    backoff_s: float = 0.1
    multiplier: float = 2.0
    then: str = "raise"
    on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        if self.times < 0:
            raise ValueError(f"Retry(times=...) must be 0 or more, got {self.times!r}")
        if self.backoff_s < 0 or self.multiplier < 1:
            raise ValueError(
                f"Retry needs backoff_s >= 0 and multiplier >= 1, got "
                f"backoff_s={self.backoff_s!r}, multiplier={self.multiplier!r}"
            )
        if self.then not in ERROR_ACTIONS:
            raise ValueError(
                f"Retry(then={self.then!r}) is not an action; choose one of {ERROR_ACTIONS}"
            )

    def delay_s(self, attempt: int) -> float:
        """Seconds to wait before try number ``attempt + 1`` (``attempt`` counts from 1)."""
        return self.backoff_s * self.multiplier ** (attempt - 1)

    def retries(self, error: BaseException, attempt: int) -> bool:
        return attempt <= self.times and isinstance(error, self.on)


ErrorPolicy = Union[str, Retry]


def check_policy(on_error: Any) -> ErrorPolicy:
    """The policy itself, or ValueError saying which values are accepted."""
    if isinstance(on_error, Retry) or on_error in ERROR_ACTIONS:
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
