"""The work itself, kept import-light: processes and sub-interpreters import this module.

Only the standard library, so a spawned worker or a fresh sub-interpreter starts quickly.
"""

from __future__ import annotations

import hashlib
import time


def spin(iterations: int) -> float:
    """The classic GIL-bound loop; returns the CPU seconds of the calling process.

    The return value is meaningful in a worker process (its own CPU); in a thread it counts
    the whole process.
    """
    start_s = time.process_time()
    for _ in range(iterations):
        pass
    return time.process_time() - start_s


def sha256_many(buffer: bytes, count: int) -> str:
    """Hash ``buffer`` ``count`` times; hashlib releases the GIL for buffers over 2 KiB."""
    digest = ""
    for _ in range(count):
        digest = hashlib.sha256(buffer).hexdigest()
    return digest


def worker_ready(barrier: object, timeout_s: float) -> None:
    """Pool initializer: report that this worker process has started and imported us."""
    barrier.wait(timeout_s)  # type: ignore[attr-defined]
