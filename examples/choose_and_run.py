"""Let gilwise choose: three kinds of work through one Executor(backend="auto").

    python examples/choose_and_run.py

Each function's first calls are measured (their results are kept), then the rest run on
the model that suits them. The explanations say what was measured and why.
"""

from __future__ import annotations

import hashlib
import time

import gilwise

BUFFER = b"gilwise" * (1 << 20)


def count(n: int) -> int:
    """Pure Python: holds the GIL."""
    total = 0
    for i in range(n):
        total += i
    return total


def digest(rounds: int) -> str:
    """sha256 of a large buffer: native code that releases the GIL."""
    value = b""
    for _ in range(rounds):
        value = hashlib.sha256(BUFFER).digest()
    return value.hex()[:12]


def wait(seconds: float) -> float:
    """Stands in for a network call."""
    time.sleep(seconds)
    return seconds


def main() -> None:
    with gilwise.Executor() as executor:
        for fn, args in ((count, [2_000_000] * 12), (digest, [3] * 12), (wait, [0.05] * 60)):
            start = time.perf_counter()
            results = list(executor.map(fn, args))
            print(f"{fn.__name__}: {len(results)} results in {time.perf_counter() - start:.2f} s")
            print(executor.explain(fn), end="\n\n")
    print(gilwise.classify(count, 500_000).reason)


if __name__ == "__main__":
    main()
