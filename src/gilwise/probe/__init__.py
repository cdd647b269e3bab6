"""Measuring the GIL: thread states sampled from outside the process, stacks from inside.

Public entry points (re-exported as ``gilwise.monitor`` / ``gilwise.profile``) are
``monitor`` and ``profile``; every other module here is internal. Linux only: other
platforms raise ProbeUnavailableError saying what is missing.

The names load lazily so the sampler child (``python -m gilwise.probe._sampler``) imports
only what it needs and starts fast.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

if TYPE_CHECKING:
    from gilwise.probe._monitor import DEFAULT_RATE_HZ, Monitor, monitor, profile

__all__ = ["DEFAULT_RATE_HZ", "Monitor", "monitor", "profile"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'gilwise.probe' has no attribute {name!r}")
    value = getattr(importlib.import_module("gilwise.probe._monitor"), name)
    globals()[name] = value
    return value
