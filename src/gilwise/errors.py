"""Every exception gilwise raises on purpose. Each message says what happened and what to do."""

from __future__ import annotations

from concurrent.futures import TimeoutError as _FuturesTimeoutError


class GilwiseError(Exception):
    """Base class of gilwise's own errors."""


class UnsupportedError(GilwiseError, RuntimeError):
    """A feature this interpreter or platform cannot provide; the message names what would."""


class NotPicklableError(GilwiseError, TypeError):
    """A function or argument cannot be sent to another process."""


class WorkerCrashedError(GilwiseError, RuntimeError):
    """A worker process died while running a task; only that task fails.

    Attributes: ``task`` (a short description of the task), ``exitcode`` (negative: signal),
    ``index`` (the call's position in its batch, or None for a task submitted alone).
    """

    def __init__(
        self,
        message: str,
        *,
        task: str = "",
        exitcode: int | None = None,
        index: int | None = None,
    ) -> None:
        super().__init__(message)
        self.task = task
        self.exitcode = exitcode
        self.index = index


class TaskTimeoutError(GilwiseError, _FuturesTimeoutError):
    """A task ran longer than its per-task timeout."""


class RemoteTraceback(GilwiseError):
    """Carries a worker's formatted traceback; attached as ``__cause__`` of a re-raised error."""

    def __init__(self, traceback_text: str) -> None:
        super().__init__(traceback_text)
        self.traceback_text = traceback_text

    def __str__(self) -> str:
        return f'\n"""\n{self.traceback_text}"""'


class ProbeUnavailableError(GilwiseError, RuntimeError):
    """The GIL probe cannot measure here; the message says what is missing."""


class StageError(GilwiseError):
    """A pipeline stage failed on an item; ``stage`` and ``item`` say which."""

    def __init__(self, message: str, *, stage: str = "", item: object = None) -> None:
        super().__init__(message)
        self.stage = stage
        self.item = item


class NoClusterError(GilwiseError, ValueError):
    """The dask backend was asked for without a scheduler address or client."""


class TaskInterruptedError(GilwiseError, RuntimeError):
    """A task was stopped before it finished by Ctrl-C or ``shutdown(interrupt=True)``.

    Its worker process was killed, or (threads cannot be stopped) its thread was abandoned
    and whatever it returns later is discarded.
    """
