"""`gilwise report` and `gilwise profile -o`: the format follows --format, else -o's suffix."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from report_profiles import stacked_profile

from gilwise.cli import build_parser, main
from gilwise.report import FORMATS, choose_format, format_for_path


@pytest.mark.parametrize(
    ("file_name", "expected"),
    [
        ("report.html", "html"),
        ("REPORT.HTM", "html"),
        ("run.json", "json"),
        ("run.speedscope.json", "speedscope"),
        ("Run.Speedscope.JSON", "speedscope"),
        ("run.trace.json", "trace"),
        ("run.perfetto", "trace"),
        ("run.txt", "text"),
        ("dir.html/run.txt", "text"),
    ],
)
def test_the_suffix_picks_the_format(file_name: str, expected: str):
    assert choose_format(None, file_name) == expected


@pytest.mark.parametrize("file_name", ["run.log", "run", "run.html.bak", "speedscope"])
def test_an_unknown_suffix_gets_text_without_error(file_name: str):
    assert format_for_path(file_name) is None
    assert choose_format(None, file_name) == "text"


def test_no_output_and_no_format_is_text():
    assert choose_format(None, None) == "text"


def test_an_explicit_format_wins_over_the_suffix():
    assert choose_format("json", "run.html") == "json"


def test_the_clis_format_choices_are_the_registry():
    parser = build_parser()
    for command in ("report", "profile"):
        args = parser.parse_args([command, "x.json"] if command == "report" else [command, "x.py"])
        assert args.format is None
    sub = next(a for a in parser._actions if a.dest == "command")
    for command in ("report", "profile"):
        action = next(a for a in sub.choices[command]._actions if a.dest == "format")
        assert tuple(action.choices) == FORMATS


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    path = tmp_path / "run.json"
    path.write_text(stacked_profile().to_json(), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("file_name", "marker"),
    [
        ("r.html", "<!DOCTYPE html>"),
        ("r.speedscope.json", '"$schema":"https://www.speedscope.app/file-format-schema.json"'),
        ("r.trace.json", '"traceEvents"'),
        ("r.json", '"schema": "gilwise.profile/2"'),
        ("r.log", "gilwise profile"),
    ],
)
def test_report_writes_the_format_its_output_names(
    saved: Path, tmp_path: Path, file_name: str, marker: str
):
    out = tmp_path / file_name
    assert main(["report", str(saved), "-o", str(out)]) == 0
    assert marker in out.read_text(encoding="utf-8")


def test_report_to_stdout_is_text_unless_told(saved: Path, capsys):
    assert main(["report", str(saved)]) == 0
    assert "MainThread" in capsys.readouterr().out
    assert main(["report", str(saved), "--format", "speedscope"]) == 0
    assert json.loads(capsys.readouterr().out)["exporter"].startswith("gilwise")


def test_an_unknown_format_is_refused_naming_the_known_ones(saved: Path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["report", str(saved), "--format", "pdf"])
    assert exit_.value.code == 2
    assert "speedscope" in capsys.readouterr().err


def test_profile_writes_speedscope_when_the_output_says_so(tmp_path: Path):
    script = tmp_path / "spin.py"
    script.write_text("total = sum(i * i for i in range(200_000))\n", encoding="utf-8")
    out = tmp_path / "out.speedscope.json"
    done = subprocess.run(
        [sys.executable, "-m", "gilwise", "profile", "-o", str(out), str(script)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "speedscope report written to" in done.stderr
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["profiles"] and doc["profiles"][0]["unit"] == "seconds"
    assert any(p["name"].startswith("MainThread") for p in doc["profiles"])
    # Real call stacks: the script's own frames, each stack ending in a state frame.
    frames = doc["shared"]["frames"]
    assert any(f.get("file", "").endswith("spin.py") for f in frames)
    main = next(p for p in doc["profiles"] if p["name"].startswith("MainThread"))
    assert all(frames[s[-1]]["name"].startswith("[") for s in main["samples"])
