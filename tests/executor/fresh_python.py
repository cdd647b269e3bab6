"""Running a test's script in a fresh interpreter: a program with one thread, as a script
is when it creates its pool (auto forks the worker service's zygote only from such a one)."""

from __future__ import annotations

import subprocess
import sys

# A hang guard only: these scripts take a second or two.
GUARD_S = 120


def run(code: str, *argv: str) -> list[str]:
    """Run ``code`` with ``argv``; its stdout's lines (its stderr in the failure if not 0)."""
    done = subprocess.run(
        [sys.executable, "-c", code, *argv],
        capture_output=True,
        text=True,
        timeout=GUARD_S,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()
