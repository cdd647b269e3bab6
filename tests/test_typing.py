"""``mypy --strict`` on a user's program: the package is typed (py.typed) and its hints let a
user's strictly checked code pass, while the user's own mistakes are still reported.

tests/typing/user_code.py must check clean; every line of tests/typing/user_mistakes.py
marked ``# E: message`` must get exactly that error, and no other line any.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy", reason="mypy is in the dev extra: pip install -e '.[dev]'")

TYPING_DIR = Path(__file__).parent / "typing"
EXPECTED = re.compile(r"#\s*E:\s*(?P<message>.+?)\s*$")


def _expected_errors(path: Path) -> dict[int, str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return {
        number: match["message"]
        for number, line in enumerate(lines, start=1)
        if (match := EXPECTED.search(line))
    }


@pytest.mark.slow
def test_mypy_strict_passes_on_user_code_and_reports_user_mistakes(tmp_path: Path) -> None:
    # From an empty directory with an empty config, as a user's project would run it: the
    # package is found installed (py.typed), not through this repository's mypy settings.
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\n", encoding="utf-8")
    user_code = TYPING_DIR / "user_code.py"
    mistakes = TYPING_DIR / "user_mistakes.py"
    done = subprocess.run(
        [
            sys.executable, "-m", "mypy", "--strict", "--config-file", str(config),
            "--cache-dir", str(tmp_path / "cache"), "--hide-error-context",
            "--no-error-summary", "--no-pretty", "--show-error-codes",
            str(user_code), str(mistakes),
        ],
        capture_output=True, text=True, cwd=tmp_path, timeout=240, check=False,
    )  # fmt: skip
    errors: dict[tuple[str, int], list[str]] = {}
    for line in done.stdout.splitlines():
        match = re.match(r"(?P<file>[^:]+):(?P<line>\d+): error: (?P<message>.*)", line)
        if match:
            key = (Path(match["file"]).name, int(match["line"]))
            errors.setdefault(key, []).append(match["message"])
    assert done.returncode in (0, 1), done.stdout + done.stderr
    user_errors = {key: value for key, value in errors.items() if key[0] == user_code.name}
    assert not user_errors, f"mypy --strict rejects the user's code:\n{done.stdout}"
    expected = _expected_errors(mistakes)
    got = {line: messages for (name, line), messages in errors.items() if name == mistakes.name}
    assert set(got) == set(expected), done.stdout
    for line, message in expected.items():
        assert any(message in text for text in got[line]), (line, got[line], message)
