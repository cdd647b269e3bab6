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


def test_report_rerenders_a_saved_profile(tmp_path, capsys):
    from gilwise._model import Profile, PythonInfo, ThreadStats

    thread = ThreadStats("worker-<1>", 7, 1.0, 0.5, 0.5, 0.5, 0.0, 0.0, 0.0)
    saved = tmp_path / "run.json"
    saved.write_text(
        Profile(PythonInfo("3.11.7", "CPython", True), 2, 1.0, 0.97, (thread,)).to_json()
    )
    assert main(["report", str(saved), "--format", "html", "-o", str(tmp_path / "r.html")]) == 0
    assert "worker-&lt;1&gt;" in (tmp_path / "r.html").read_text()
    assert main(["report", str(saved)]) == 0
    assert "97" in capsys.readouterr().out


def test_report_of_a_non_profile_file_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "something/9"}')
    assert main(["report", str(bad)]) == 2
    assert "something/9" in capsys.readouterr().err
