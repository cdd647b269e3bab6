"""Facts about the running interpreter that decide what gilwise can measure and run.

Everything that asks "which Python is this?" asks here, so tests can inject other facts
(a free-threaded build, a 3.12 interpreter, more cores) by building a RuntimeFacts by hand.
"""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class RuntimeFacts:
    """What the interpreter and machine can do; a plain value, safe to build in tests."""

    python_version: tuple[int, int, int]
    implementation: str
    cores: int
    gil_enabled: bool
    free_threaded_build: bool
    platform: str

    @property
    def version_text(self) -> str:
        return ".".join(str(part) for part in self.python_version)

    @property
    def own_gil_subinterpreters(self) -> bool:
        """True where sub-interpreters with their own GIL exist (CPython 3.12+)."""
        return self.implementation == "CPython" and self.python_version[:2] >= (3, 12)

    @property
    def threads_run_python_in_parallel(self) -> bool:
        """True on a free-threaded build with the GIL off: threads then scale on CPU work."""
        return not self.gil_enabled


def usable_cores() -> int:
    """Cores this process may run on (affinity-aware), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def is_free_threaded_build() -> bool:
    """True for a CPython built with --disable-gil (3.13t+), whether or not the GIL is on now."""
    if sys.version_info < (3, 13):
        return False  # no free-threaded build before 3.13 (and no sysconfig import to ask)
    import sysconfig  # only here: its import costs milliseconds

    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def _implementation_name() -> str:
    """What platform.python_implementation() says ("CPython", "PyPy"), without importing
    platform (several milliseconds on every import of gilwise)."""
    name = sys.implementation.name
    return {"cpython": "CPython", "pypy": "PyPy", "ironpython": "IronPython"}.get(
        name, name.capitalize()
    )


def is_gil_enabled() -> bool:
    """True when the GIL is active right now (a free-threaded build can re-enable it)."""
    probe = getattr(sys, "_is_gil_enabled", None)
    return True if probe is None else bool(probe())


@functools.lru_cache(maxsize=1)
def current() -> RuntimeFacts:
    """The facts of this process, computed once."""
    return RuntimeFacts(
        python_version=tuple(sys.version_info[:3]),  # type: ignore[arg-type]
        implementation=_implementation_name(),
        cores=usable_cores(),
        gil_enabled=is_gil_enabled(),
        free_threaded_build=is_free_threaded_build(),
        platform=sys.platform,
    )
