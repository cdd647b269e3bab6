"""Checks for public parameters, shared so every entry point words its errors the same way.

Each check names the parameter and the values it allows, and raises at the call that got
the bad value (not later, inside a worker, as a bare ``'<' not supported`` TypeError).
"""

from __future__ import annotations

import numbers
from typing import Any, Optional


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def workers(value: Any, name: str = "max_workers") -> Optional[int]:
    """None (the default) or an int > 0; ValueError for <= 0 as concurrent.futures words it."""
    if value is None:
        return None
    if not _is_int(value):
        raise TypeError(
            f"{name} must be an int greater than 0, or None for the default; got {value!r}"
        )
    if value <= 0:
        raise ValueError(f"{name} must be greater than 0, got {value!r}")
    return int(value)


def seconds(value: Any, name: str, *, allow_none: bool = True) -> Optional[float]:
    """None (when allowed) or a number of seconds > 0."""
    if value is None and allow_none:
        return None
    if not _is_number(value):
        none = ", or None for no limit" if allow_none else ""
        raise TypeError(f"{name} must be a number of seconds greater than 0{none}; got {value!r}")
    if not value > 0:  # also catches NaN
        raise ValueError(f"{name} must be a number of seconds greater than 0, got {value!r}")
    return float(value)


def count(value: Any, name: str, *, minimum: int = 0) -> int:
    """An int >= ``minimum``."""
    if not _is_int(value):
        raise TypeError(f"{name} must be an int >= {minimum}; got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def choice(value: Any, name: str, allowed: tuple) -> Any:
    """One of ``allowed``."""
    if value not in allowed:
        listed = ", ".join(repr(option) for option in allowed)
        raise ValueError(f"{name} must be one of {listed}; got {value!r}")
    return value


def sized(value: Any, name: str, words: tuple = ("auto",)) -> Any:
    """An int >= 1, or one of ``words`` (e.g. "auto", None)."""
    if any(value is word or (isinstance(word, str) and value == word) for word in words):
        return value
    if not _is_int(value) or value < 1:
        listed = " or ".join(repr(word) for word in words)
        raise (TypeError if not _is_int(value) else ValueError)(
            f"{name} must be {listed} or an int >= 1, got {value!r}"
        )
    return int(value)
