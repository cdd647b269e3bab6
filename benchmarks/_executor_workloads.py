"""Workloads of bench_executor.py, in their own module so worker processes import them
(instead of receiving a pickled copy of a big buffer with every task)."""

from __future__ import annotations

import hashlib
import time
import urllib.request

_BUFFER = b"gilwise" * (1 << 20)  # 7 MiB: sha256 of it releases the GIL for ~15 ms


def count(n: int) -> int:
    """Pure-Python loop: holds the GIL the whole time."""
    total = 0
    for i in range(n):
        total += i
    return total


def digest(rounds: int) -> int:
    """sha256 of a large buffer, ``rounds`` times: native code with the GIL released."""
    for _ in range(rounds):
        hashlib.sha256(_BUFFER).digest()
    return rounds


def nap(seconds: float) -> float:
    """Blocking sleep: I/O-like waiting."""
    time.sleep(seconds)
    return seconds


def fetch(url: str) -> int:
    """One GET to a local HTTP server; returns the body length."""
    with urllib.request.urlopen(url, timeout=30) as response:
        return len(response.read())


def tiny(x: int) -> int:
    """A call so short that any hand-over costs more than the call."""
    return x * 2 + 1
