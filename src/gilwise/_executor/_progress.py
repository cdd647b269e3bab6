"""Progress for Executor.map and gilwise.map: a rich bar on stderr, or a callback.

``progress=True``: a bar at once; None (gilwise.map's default): a bar only when stderr is a
terminal and the run lasts more than a couple of seconds; a callable: called as
``progress(done, total)`` after every result (``total`` None when the input has no
length), in the consuming thread, tqdm-style.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Iterator, Optional

# How often the rich bar is redrawn, in results (the callback sees every one).
_BAR_EVERY = 64


def check(progress: Any) -> Any:
    """True, False, None or a callable; TypeError otherwise."""
    if progress is None or isinstance(progress, bool) or callable(progress):
        return progress
    raise TypeError(
        f"progress must be True, False, None or a callable taking (done, total); got {progress!r}"
    )


def with_progress(
    results: Iterator[Any], total: Optional[int], progress: Any, label: str
) -> Iterator[Any]:
    """``results``, reporting progress as they are consumed."""
    if callable(progress) and not isinstance(progress, bool):
        return _with_callback(results, total, progress)
    if progress is None and not _stderr_is_terminal():
        return results
    return _with_bar(results, total, progress, label)


def _with_callback(results: Iterator[Any], total: Optional[int], report: Any) -> Iterator[Any]:
    report(0, total)
    for done, value in enumerate(results, 1):
        report(done, total)
        yield value
        del value


def _with_bar(
    results: Iterator[Any], total: Optional[int], progress: Optional[bool], label: str
) -> Iterator[Any]:
    show_after_s = 0.0 if progress else 2.0
    started_s = time.monotonic()
    bar = None
    task_id = None
    done = 0
    try:
        for value in results:
            done += 1
            if bar is None and time.monotonic() - started_s >= show_after_s:
                from rich.progress import Progress

                bar = Progress(transient=False)
                bar.start()
                task_id = bar.add_task(label, total=total, completed=done)
            elif bar is not None and done % _BAR_EVERY == 0:
                bar.update(task_id, completed=done)  # type: ignore[arg-type]
            yield value
            del value
    finally:
        if bar is not None:
            bar.update(task_id, completed=done)  # type: ignore[arg-type]
            bar.stop()


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
