"""The gilwise command's own behaviour: help, version, python -m entry point."""

from __future__ import annotations

import subprocess
import sys

import gilwise
from gilwise.cli import main


def test_version_flag(capsys):
    try:
        main(["--version"])
    except SystemExit as exit_:
        assert exit_.code == 0
    assert gilwise.__version__ in capsys.readouterr().out


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out


def test_python_dash_m_runs_the_cli():
    done = subprocess.run(
        [sys.executable, "-m", "gilwise", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    assert "profile" in done.stdout and "demo" in done.stdout


def test_unknown_public_attribute_is_a_clear_attribute_error():
    try:
        gilwise.no_such_thing  # noqa: B018
    except AttributeError as error:
        assert "no_such_thing" in str(error)
    else:
        raise AssertionError("expected AttributeError")
