"""The threading names of the profiled threads, collected without ever taking the GIL.

A thread polling ``threading.enumerate()`` would take the GIL on every poll, and on a GIL-bound
program each such grab costs far more than its own microseconds (measured on 2 cores: a 10 Hz
poll made two pure-Python threads ~2.5% slower, all of it forced GIL hand-offs). Instead:
threads alive when the monitor stops are read then, and every thread that starts or ends
during the run is noted as threading adds it to or removes it from ``threading._active``
(3.9 through 3.13 all do so with ``_active[ident] = thread`` / ``del _active[ident]`` under
``_active_limbo_lock``). While any recorder runs, that dict is a recording subclass; the
plain dict comes back after the last recorder stops.
"""

from __future__ import annotations

import os
import threading
from typing import Any

_recorders: list[ThreadNames] = []


class _RecordingActive(dict):
    """``threading._active`` while a recorder runs: notes a thread's name as it is added
    (starting) and removed (ending). Reads stay the plain dict's C fast path."""

    def __setitem__(self, ident: Any, thread: Any) -> None:
        super().__setitem__(ident, thread)
        _note(thread)

    def __delitem__(self, ident: Any) -> None:
        thread = self.get(ident)
        super().__delitem__(ident)
        if thread is not None:
            _note(thread)


def _note(thread: Any) -> None:
    native_id = getattr(thread, "native_id", None)
    if native_id is not None:
        for recorder in list(_recorders):
            recorder.names[native_id] = thread.name


def _after_fork_in_child() -> None:
    # A forked child inherits the recording dict and the parent's recorders, which nobody
    # in the child will stop: give it back threading's plain dict.
    _recorders.clear()
    active = threading._active  # type: ignore[attr-defined]
    if type(active) is _RecordingActive:
        threading._active = dict(active)  # type: ignore[attr-defined]


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class ThreadNames:
    """native thread id -> threading name for every thread seen between start and stop."""

    def __init__(self) -> None:
        self.names: dict[int, str] = {}

    def start(self) -> None:
        with threading._active_limbo_lock:  # type: ignore[attr-defined]
            if not _recorders and type(threading._active) is dict:  # type: ignore[attr-defined]
                threading._active = _RecordingActive(threading._active)  # type: ignore[attr-defined]
            _recorders.append(self)

    def stop(self) -> dict[int, str]:
        """Add the names of the threads alive now; restore the plain dict after the last."""
        for thread in threading.enumerate():
            if thread.native_id is not None:
                self.names[thread.native_id] = thread.name
        with threading._active_limbo_lock:  # type: ignore[attr-defined]
            if self in _recorders:
                _recorders.remove(self)
            active = threading._active  # type: ignore[attr-defined]
            if not _recorders and type(active) is _RecordingActive:
                threading._active = dict(active)  # type: ignore[attr-defined]
        return self.names
