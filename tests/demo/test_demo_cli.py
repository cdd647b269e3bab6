"""``gilwise demo`` end to end, through ``python -m gilwise`` in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

import pytest

from gilwise.cli import main

ROW_FIELDS = {
    "workload",
    "way",
    "workers",
    "wall_s",
    "cpu_s",
    "speedup_vs_sequential",
    "gil_held_fraction",
    "gil_note",
    "note",
}


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gilwise", "demo", *args],
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_cpu_json_has_every_field(tmp_path):
    done = _demo("cpu", "--scale", "0.05", "--format", "json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["schema"] == "gilwise.demo/1"
    assert data["scale"] == 0.05
    assert isinstance(data["gil_measured"], bool)
    (cpu,) = data["experiments"]
    assert cpu["name"] == "cpu"
    assert cpu["sentence"].endswith(".")
    assert [row["way"] for row in cpu["rows"]] == [
        "sequential",
        "threads",
        "processes",
        "sub-interpreters",
    ]
    for row in cpu["rows"]:
        assert set(row) == ROW_FIELDS
    sequential, threads, processes, _ = cpu["rows"]
    assert sequential["speedup_vs_sequential"] == 1.0
    assert threads["workers"] == processes["workers"] == 2
    assert processes["cpu_s"] > 0
    assert processes["gil_held_fraction"] is None


def test_all_as_text_shows_a_table_and_a_sentence_per_experiment(tmp_path):
    svg = tmp_path / "speedups.svg"
    done = _demo(
        "all", "--scale", "0.05", "--requests", "8", "--latency-ms", "20", "--plot", str(svg)
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for title in ("cpu: CPU-bound pure Python", "io: I/O-bound downloads", "native: "):
        assert title in out
    for header in ("way", "workers", "wall s", "CPU s", "speedup"):
        assert header in out
    assert "sequential" in out and "asyncio" in out and "sha256" in out
    assert "take turns" in out or "more than a GIL should allow" in out or "without a GIL" in out
    assert "the GIL" in out.split("io: I/O-bound downloads")[1]
    assert ElementTree.parse(svg).getroot().tag.endswith("svg")


def test_unknown_experiment_exits_2_with_the_valid_names(capsys):
    assert main(["demo", "gpu"]) == 2
    assert "unknown experiment 'gpu'; choose from cpu, io, native, all" in capsys.readouterr().err


def test_unknown_experiment_via_the_command_line():
    done = _demo("gpu")
    assert done.returncode == 2
    assert "unknown experiment 'gpu'; choose from cpu, io, native, all" in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scale", "0"], "--scale must be greater than 0"),
        (["--requests", "0"], "--requests must be at least 1"),
        (["--plot", "out.gif"], ".svg or .png"),
    ],
)
def test_bad_options_exit_2_before_any_work(capsys, args, message):
    assert main(["demo", "io", *args]) == 2
    assert message in capsys.readouterr().err


def test_png_without_matplotlib_fails_fast_naming_the_extra(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["demo", "cpu", "--plot", str(tmp_path / "x.png")]) == 2
    assert "pip install 'gilwise[plot]'" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
