"""Helpers for executor tests that must work on every backend, including worker processes.

A ``FileGate`` is a picklable latch: tasks wait until the test opens it (a file appears), so
a test can hold workers busy on purpose and release them when it chooses, even in another
process. Waiting polls every few milliseconds and gives up loudly after ``timeout_s``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

GATE_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class FileGate:
    path: str

    def open(self) -> None:
        with open(self.path, "w"):
            pass

    def wait(self, timeout_s: float = GATE_TIMEOUT_S) -> bool:
        deadline = time.monotonic() + timeout_s
        while not os.path.exists(self.path):
            if time.monotonic() > deadline:
                raise TimeoutError(f"gate {self.path} was never opened")
            time.sleep(0.002)
        return True


def wait_then(gate: FileGate, value: object) -> object:
    gate.wait()
    return value


def mul(x: int, y: int) -> int:
    return x * y


def square(x: int) -> int:
    return x * x


def raise_on(x: int, bad: int) -> int:
    if x == bad:
        raise ValueError(f"bad input {x}")
    return x


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


async def async_square(x: int) -> int:
    return x * x


def crash_once(marker: str) -> str:
    """Kill the worker process the first time (leaving ``marker``); succeed the second time."""
    if not os.path.exists(marker):
        with open(marker, "w"):
            pass
        os._exit(3)
    return "survived"


def exit_on_three(x: object) -> object:
    """Kill the worker process on input 3; return any other input."""
    if x == 3:
        os._exit(3)
    return x
