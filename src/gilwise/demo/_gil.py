"""The GIL share of a region, when gilwise's probe can measure it here.

The probe is optional for the demo: without it (or where it cannot run, e.g. not Linux)
every row's ``gil_held_fraction`` stays None and the renderers drop the column.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

from ..errors import ProbeUnavailableError


class GilShare:
    """Filled in when its region ends: ``held_fraction`` (0..1) or None if not measured."""

    def __init__(self) -> None:
        self.held_fraction: Optional[float] = None


def probe_available() -> bool:
    """True when ``gilwise.monitor`` can be imported here (it may still refuse to start)."""
    try:
        from ..probe import monitor  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def gil_share(enabled: bool) -> Iterator[GilShare]:
    """Measure the share of wall time some thread of this process held the GIL.

    With ``enabled`` False, or when the probe is missing or cannot run here, the region runs
    unmeasured and the share stays None. The probe costs CPU (a sampler process), so callers
    keep measured regions out of their timings.
    """
    share = GilShare()
    if not enabled:
        yield share
        return
    try:
        from ..probe import monitor

        # No stack snapshots: the demo needs the share only, and each snapshot takes the GIL.
        session = monitor(stack_rate_hz=None)
        session.start()
    except (ImportError, ProbeUnavailableError):
        yield share
        return
    try:
        yield share
    finally:
        try:
            share.held_fraction = session.stop().held_fraction
        except ProbeUnavailableError:
            share.held_fraction = None
