"""gilwise: see what the CPython GIL costs your program, then stop paying for it.

Measure (``monitor``, ``profile``), choose (``classify``), run (``Executor``, ``map``,
``Pipeline``). Everything not listed in ``__all__`` is internal and may change.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"

# Everything loads on first use, so `import gilwise` stays cheap for a profiled program and
# for the profiler's own sampler child (which imports only gilwise.probe._sampler).
_LAZY: dict[str, str] = {
    "errors": "gilwise.errors:",
    "GilwiseError": "gilwise.errors:GilwiseError",
    "NotPicklableError": "gilwise.errors:NotPicklableError",
    "StageError": "gilwise.errors:StageError",
    "TaskTimeoutError": "gilwise.errors:TaskTimeoutError",
    "UnsupportedError": "gilwise.errors:UnsupportedError",
    "WorkerCrashedError": "gilwise.errors:WorkerCrashedError",
    "Profile": "gilwise.model:Profile",
    "monitor": "gilwise.probe:monitor",
    "profile": "gilwise.probe:profile",
    "classify": "gilwise._executor:classify",
    "Executor": "gilwise._executor:Executor",
    "map": "gilwise._executor:map",
    "Pipeline": "gilwise.pipeline:Pipeline",
    # A public subpackage (nothing after the colon: the module itself), so that
    # `gilwise.pipeline.Retry(...)` works after a plain `import gilwise`.
    "pipeline": "gilwise.pipeline:",
}

if TYPE_CHECKING:
    from . import errors
    from ._executor import Executor, classify, map
    from .errors import (
        GilwiseError,
        NotPicklableError,
        StageError,
        TaskTimeoutError,
        UnsupportedError,
        WorkerCrashedError,
    )
    from .model import Profile
    from .pipeline import Pipeline
    from .probe import monitor, profile


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'gilwise' has no attribute {name!r}")
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    value = getattr(module, attr) if attr else module
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "Executor",
    "GilwiseError",
    "NotPicklableError",
    "Pipeline",
    "Profile",
    "StageError",
    "TaskTimeoutError",
    "UnsupportedError",
    "WorkerCrashedError",
    "__version__",
    "classify",
    "errors",
    "map",
    "monitor",
    "profile",
]
