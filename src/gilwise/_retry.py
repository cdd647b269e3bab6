"""The one retry policy: when a failed call is tried again, and after how long.

``Retry`` is public as ``gilwise.pipeline.Retry`` (a stage's ``on_error``) and
``gilwise.Retry``-style ``Executor(retries=...)`` (an int ``n`` means ``Retry(times=n,
backoff_s=0)``). The drivers (Executor, pipeline stages) ask ``delay_before_retry`` and
re-submit the call themselves; a chunk's failed call is retried on its own.

Never retried, whatever the policy: a per-task timeout, an interrupt (Ctrl-C), a
cancellation, and BaseExceptions that are not Exceptions.
"""

from __future__ import annotations

from concurrent.futures import CancelledError
from dataclasses import dataclass
from typing import Any, Optional, Union

from . import _params
from .errors import TaskInterruptedError, TaskTimeoutError

ERROR_ACTIONS = ("raise", "skip", "collect")
NEVER_RETRIED = (TaskTimeoutError, TaskInterruptedError, CancelledError)


@dataclass(frozen=True)
class Retry:
    """Try a failed item again, ``times`` more times, waiting ``backoff_s``, then twice as long...

    ``then`` is what happens when the last try fails too: "raise" (default), "skip" or
    "collect" (pipeline stages). Only exceptions that are instances of ``on`` are retried;
    others go straight to ``then``. A worker crash (errors.WorkerCrashedError) is an
    exception like any other. Timeouts and interrupts are never retried.
    """

    times: int = 3
    backoff_s: float = 0.1
    multiplier: float = 2.0
    then: str = "raise"
    on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        _params.count(self.times, "Retry(times=...)")
        for name in ("backoff_s", "multiplier"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise TypeError(f"Retry({name}=...) must be a number, got {value!r}")
        if self.backoff_s < 0 or self.multiplier < 1:
            raise ValueError(
                f"Retry needs backoff_s >= 0 and multiplier >= 1, got "
                f"backoff_s={self.backoff_s!r}, multiplier={self.multiplier!r}"
            )
        if self.then not in ERROR_ACTIONS:
            raise ValueError(
                f"Retry(then={self.then!r}) is not an action; choose one of {ERROR_ACTIONS}"
            )
        on = self.on if isinstance(self.on, tuple) else (self.on,)
        if not all(isinstance(cls, type) and issubclass(cls, BaseException) for cls in on):
            raise TypeError(f"Retry(on=...) must be exception classes, got {self.on!r}")
        object.__setattr__(self, "on", on)

    def delay_s(self, attempt: int) -> float:
        """Seconds to wait before try number ``attempt + 1`` (``attempt`` counts from 1)."""
        return float(self.backoff_s * self.multiplier ** (attempt - 1))

    def retries(self, error: BaseException, attempt: int) -> bool:
        """True if a call that failed with ``error`` on try ``attempt`` is tried again."""
        return (
            attempt <= self.times
            and isinstance(error, self.on)
            and isinstance(error, Exception)
            and not isinstance(error, NEVER_RETRIED)
        )

    def delay_before_retry(self, error: BaseException, attempt: int) -> Optional[float]:
        """Seconds to wait before retrying, or None: do not retry."""
        return self.delay_s(attempt) if self.retries(error, attempt) else None


def as_retry(retries: Union[int, Retry, Any], name: str = "retries") -> Retry:
    """An Executor's ``retries=``: an int n (n immediate retries) or a Retry."""
    if isinstance(retries, Retry):
        return retries
    try:
        times = _params.count(retries, name)
    except TypeError:
        raise TypeError(
            f"{name} must be an int >= 0 or a gilwise.pipeline.Retry, got {retries!r}"
        ) from None
    return Retry(times=times, backoff_s=0.0)
