"""`gilwise diff`: two profiles with known figures compared in text, JSON and HTML, every
number checked; the CLI picks the format like `report` does, among text, json and html."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
from report_profiles import gil_bound_profile, stacked_profile
from test_report_html import _parse

from gilwise._model import FunctionStats, Profile, PythonInfo, ThreadStats, Verdict
from gilwise.cli import main
from gilwise.report import compare, render_diff

SOURCE = "/home/user/project/app/compute.py"


def after_profile() -> Profile:
    """The same program after a change: half the wall time, the GIL held half of it, worker-2
    gone and a worker-3 new; spin faster, helper_20 gone, a new function pack."""
    return Profile(
        python=PythonInfo("3.11.7", "CPython", True),
        cores=2,
        wall_s=1.0,
        held_fraction=0.5,
        threads=(
            ThreadStats("MainThread", 1000, 1.0, 0.001, 0.001, 0.0, 0.0, 0.0, 0.999),
            ThreadStats("worker-1", 1001, 1.0, 0.9, 0.5, 0.1, 0.4, 0.0, 0.0),
            ThreadStats("worker-3", 1003, 1.0, 0.5, 0.5, 0.0, 0.0, 0.5, 0.0),
        ),
        functions=(
            FunctionStats("spin", SOURCE, 3, 0.6, 0.1, native_s=0.2),
            FunctionStats("pack", SOURCE, 40, 0.25, 0.0),
            *(
                FunctionStats(f"helper_{i}", SOURCE, 10 + i, 0.01 * i, 0.005 * i)
                for i in range(1, 20)
            ),
        ),
        verdict=Verdict("native-parallel", "thread", 1.2, "Mostly native code now."),
        command="python spin.py --native",
    )


def test_the_run_figures_change_as_measured():
    diff = compare(gil_bound_profile(), after_profile())
    assert diff.speedup == pytest.approx(2.0)
    assert diff.before_run.gil_wait_s == pytest.approx(2.0)  # 0 + 1.0 + 1.0
    assert diff.after_run.gil_wait_s == pytest.approx(0.1)
    assert diff.before_run.cpu_s == pytest.approx(2.002)
    assert diff.after_run.cpu_s == pytest.approx(1.401)


def test_threads_match_by_name_with_absent_sides():
    diff = compare(gil_bound_profile(), after_profile())
    assert [(c.name, c.before is not None, c.after is not None) for c in diff.threads] == [
        ("MainThread", True, True),
        ("worker-1", True, True),
        ("worker-2", True, False),
        ("worker-3", False, True),
    ]


def test_functions_are_ranked_by_their_change():
    diff = compare(gil_bound_profile(), after_profile())
    first = [(c.function, round(c.busy_change_s, 6)) for c in diff.functions[:4]]
    # spin: 1.234 + 1.111 = 2.345 s -> 0.6 + 0.1 + 0.2 = 0.9 s; helper_20 (0.2 + 0.1) gone;
    # pack is new (0.25 s); then the unchanged ones, busiest first (helper_19: 0.285 s).
    assert first == [("spin", -1.445), ("helper_20", -0.3), ("pack", 0.25), ("helper_19", 0.0)]


def test_text_shows_every_figure():
    text = render_diff(gil_bound_profile(), after_profile(), "text")
    rows = {line.split()[0]: line for line in text.splitlines() if line.strip()}
    assert re.search(r"wall s\s+2\.000\s+1\.000\s+2\.00x faster", text)
    assert re.search(r"GIL held\s+98\.8%\s+50\.0%\s+-48\.8 pts", text)
    assert re.search(r"GIL wait s \(all threads\)\s+2\.000\s+0\.100\s+-1\.900", text)
    assert re.search(r"CPU s \(all threads\)\s+2\.002\s+1\.401\s+-0\.601", text)
    assert re.search(r"threads\s+3\s+3\s+0", text)
    assert rows["worker-2"].split()[1:4] == ["2.000", "→", "-"]
    assert rows["worker-3"].split()[1:4] == ["-", "→", "1.000"]
    assert "1.000 → 0.500" in rows["worker-1"]  # GIL held
    assert re.search(r"spin\s+\S*compute\.py:3\s+2\.345\s+0\.900\s+-1\.445", text)
    assert re.search(r"pack\s+\S*compute\.py:40\s+-\s+0\.250\s+\+0\.250", text)
    assert re.search(r"kind\s+gil-bound\s+native-parallel", text)
    assert re.search(r"recommended\s+process\s+thread", text)
    assert re.search(r"expected speedup\s+1\.9x\s+1\.2x", text)
    assert "before: python spin.py" in text and "after:  python spin.py --native" in text


def test_slower_and_same_speed_say_so():
    before = gil_bound_profile()
    assert "1.25x slower" in render_diff(before, replace(before, wall_s=2.5), "text")
    text = render_diff(before, before, "text")
    assert "same speed" in text and "functions: no change of 0.5 ms or more" in text


def test_json_has_both_sides_and_the_changes():
    doc = json.loads(render_diff(gil_bound_profile(), after_profile(), "json"))
    assert doc["schema"] == "gilwise.diff/1"
    assert doc["speedup"] == pytest.approx(2.0)
    assert doc["before"]["verdict"]["kind"] == "gil-bound"
    assert doc["after"]["held_fraction"] == 0.5
    worker_2 = next(t for t in doc["threads"] if t["name"] == "worker-2")
    assert worker_2["after"] is None and worker_2["before"]["gil_wait_s"] == 1.0
    spin = doc["functions"][0]
    assert spin["function"] == "spin" and spin["busy_change_s"] == pytest.approx(-1.445)


def test_html_is_self_contained_and_shows_the_figures():
    page = render_diff(gil_bound_profile(), after_profile(), "html")
    text = " ".join(_parse(page).text)
    assert "<script" not in page and "src=" not in page
    for fact in ("2.00x faster", "-48.8 pts", "gil-bound", "native-parallel", "-1.445", "+0.250"):
        assert fact in text
    assert '<td class="less">-1.445</td>' in page
    assert '<td class="more">+0.250</td>' in page


def test_child_processes_add_to_the_run():
    after = replace(after_profile(), processes=(replace(stacked_profile().processes[0]),))
    diff = compare(gil_bound_profile(), after)
    assert diff.after_run.processes == 1
    assert diff.after_run.cpu_s == pytest.approx(1.401 + 0.45)
    assert diff.after_run.threads == 4
    child = diff.threads[-1]
    assert (child.name, child.before, child.after.gil_held_s) == (
        "process 1 · MainThread",
        None,
        0.45,
    )
    assert "GIL held (parent process)" in render_diff(gil_bound_profile(), after, "text")


def test_duplicate_thread_names_are_told_apart():
    twins = (
        ThreadStats("pool", 1, 1.0, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0),
        ThreadStats("pool", 2, 1.0, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0),
    )
    profile = replace(gil_bound_profile(), threads=twins)
    assert [c.name for c in compare(profile, profile).threads] == ["pool", "pool #2"]


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, Path]:
    before, after = tmp_path / "before.json", tmp_path / "after.json"
    before.write_text(gil_bound_profile().to_json(), encoding="utf-8")
    after.write_text(after_profile().to_json(), encoding="utf-8")
    return before, after


@pytest.mark.parametrize(
    ("file_name", "marker"),
    [("d.html", "<!DOCTYPE html>"), ("d.json", '"gilwise.diff/1"'), ("d.log", "gilwise diff")],
)
def test_cli_diff_writes_the_format_its_output_names(saved, tmp_path, file_name, marker):
    out = tmp_path / file_name
    assert main(["diff", str(saved[0]), str(saved[1]), "-o", str(out)]) == 0
    assert marker in out.read_text(encoding="utf-8")


def test_cli_diff_prints_text(saved, capsys):
    assert main(["diff", str(saved[0]), str(saved[1])]) == 0
    assert "2.00x faster" in capsys.readouterr().out


def test_cli_diff_refuses_formats_it_cannot_write(saved, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["diff", str(saved[0]), str(saved[1]), "--format", "speedscope"])
    assert exit_.value.code == 2
    assert "invalid choice: 'speedscope'" in capsys.readouterr().err


def test_cli_diff_of_a_missing_file_names_it(saved, tmp_path, capsys):
    missing = tmp_path / "nope.json"
    assert main(["diff", str(saved[0]), str(missing)]) == 2
    assert f"gilwise diff: cannot read {missing}" in capsys.readouterr().err
