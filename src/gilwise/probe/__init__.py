"""Measuring the GIL: thread states sampled from outside the process, stacks from inside.

Public entry points (re-exported as ``gilwise.monitor`` / ``gilwise.profile``) are
``monitor`` and ``profile``; every other module here is internal. Linux only: other
platforms raise ProbeUnavailableError saying what is missing.
"""

from __future__ import annotations

from gilwise.probe._monitor import DEFAULT_RATE_HZ, Monitor, monitor, profile

__all__ = ["DEFAULT_RATE_HZ", "Monitor", "monitor", "profile"]
