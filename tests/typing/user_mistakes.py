"""Mistakes a user makes; ``mypy --strict`` must report each on its line (see the E: notes).

Checked by tests/test_typing.py together with user_code.py. It is never run.
"""

from __future__ import annotations

import gilwise


def square(x: int) -> int:
    return x * x


def typo() -> None:
    gilwise.Exectuor()  # E: Module has no attribute "Exectuor"


def wrong_option() -> None:
    gilwise.Executor(retries="3")  # E: Argument "retries" to "Executor" has incompatible type "str"


def held_may_be_none() -> float:
    with gilwise.monitor() as mon:
        square(3)
    return mon.profile.held_fraction  # E: Incompatible return value type (got "float | None"


def wrong_arguments() -> None:
    with gilwise.Executor() as executor:
        executor.submit(square, "3")  # E: No overload variant of "submit"
