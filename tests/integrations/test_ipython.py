"""``%load_ext gilwise``, ``%gilwise`` and ``%%gilwise`` in a real IPython shell, and the
notebook display path (the HTML report inline, a short repr for a Profile).

Workloads with known answers: a pure-Python spinner holds the GIL the whole time it runs;
two spinner threads take turns on it (each waits for the GIL while the other holds it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

IPython = pytest.importorskip("IPython", reason="IPython is in the test extra")

from IPython.core.interactiveshell import InteractiveShell  # noqa: E402

import gilwise  # noqa: E402
from gilwise._ipython import PROFILE_VARIABLE, ProfileReport  # noqa: E402
from gilwise._model import Profile, PythonInfo, ThreadStats, Verdict  # noqa: E402

SETUP = """
import threading, time
from workloads import run_threads, spinner
"""


@pytest.fixture(scope="module")
def shell() -> Any:
    from traitlets.config import Config

    # No history: its saving thread would outlive the tests (and sit in later profiles).
    config = Config()
    config.HistoryManager.enabled = False
    ip = InteractiveShell.instance(config=config)
    ip.run_line_magic("load_ext", "gilwise")
    ip.run_cell(SETUP)
    yield ip
    InteractiveShell.clear_instance()


def run(shell: Any, code: str) -> Any:
    result = shell.run_cell(code)
    return result


def test_line_magic_profiles_the_statement_and_returns_its_value(shell, capsys, no_leaks):
    result = run(shell, "%gilwise spinner(0.3) > 0")
    assert result.error_in_exec is None, result.error_in_exec
    assert result.result is True
    profile = shell.user_ns[PROFILE_VARIABLE]
    assert isinstance(profile, Profile)
    assert profile.command == "%gilwise spinner(0.3) > 0"
    # The spinner held the GIL the whole 0.3 s it ran in the main thread.
    assert profile.wall_s >= 0.3
    assert profile.thread("MainThread").gil_held_s >= 0.25
    out = capsys.readouterr().out
    assert "gilwise profile" in out
    assert "MainThread" in out
    assert f"verdict: {profile.verdict.kind}" in out


def test_cell_magic_runs_in_the_user_namespace_and_sees_threads(shell, capsys, no_leaks):
    code = "%%gilwise\ncounts = run_threads(spinner, 2, 0.4, name='spin')\nlen(counts)"
    result = run(shell, code)
    assert result.error_in_exec is None, result.error_in_exec
    assert result.result == 2  # the cell's last expression, as %%time returns it
    assert len(shell.user_ns["counts"]) == 2  # assignments land in the user's namespace
    profile = shell.user_ns[PROFILE_VARIABLE]
    spinners = [t for t in profile.threads if t.name.startswith("spin-")]
    assert len(spinners) == 2
    # Two pure-Python threads on one GIL take turns: both ran and both waited for it, and
    # together they held it no longer than the run lasted (never at the same time).
    for thread in spinners:
        assert thread.gil_held_s > 0.05
        assert thread.gil_wait_s > 0.0
    assert sum(thread.gil_held_s for thread in spinners) <= profile.wall_s * 1.02
    out = capsys.readouterr().out
    assert "spin-0" in out and "spin-1" in out


def test_an_exception_still_shows_the_report_and_propagates(shell, capsys, no_leaks):
    shell.user_ns.pop(PROFILE_VARIABLE, None)
    result = run(shell, "%%gilwise\nspinner(0.05)\n1 / 0")
    assert isinstance(result.error_in_exec, ZeroDivisionError)
    assert isinstance(shell.user_ns[PROFILE_VARIABLE], Profile)
    captured = capsys.readouterr()
    assert "gilwise profile" in captured.out
    assert "ZeroDivisionError" in captured.out + captured.err


def test_ctrl_c_in_the_cell_still_shows_the_report_and_stops_the_sampler(shell, capsys, no_leaks):
    shell.user_ns.pop(PROFILE_VARIABLE, None)
    result = run(shell, "%%gilwise\nspinner(0.05)\nraise KeyboardInterrupt")
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    assert shell.user_ns[PROFILE_VARIABLE].wall_s >= 0.05
    assert "gilwise profile" in capsys.readouterr().out
    # no_leaks: the sampler child and the stack thread are gone


def test_options_rate_quiet_and_output(shell, capsys, tmp_path: Path, no_leaks):
    json_path = tmp_path / "run.json"
    result = run(shell, f"%gilwise -q --rate 500 --no-stacks -o {json_path} spinner(0.1)")
    assert result.error_in_exec is None, result.error_in_exec
    assert capsys.readouterr().out.strip().startswith("Out") or not capsys.readouterr().out
    saved = Profile.from_json(json_path.read_text(encoding="utf-8"))
    assert saved.sample_interval_s == pytest.approx(1 / 500)
    assert saved.functions == ()  # --no-stacks
    assert json.loads(json_path.read_text(encoding="utf-8"))["schema"].startswith("gilwise.")
    html_path = tmp_path / "run.html"
    run(shell, f"%gilwise -q -o {html_path} spinner(0.05)")
    assert html_path.read_text(encoding="utf-8").lstrip().lower().startswith("<!doctype html")


def test_statement_with_quotes_and_minus_signs_is_kept_verbatim(shell, no_leaks):
    result = run(shell, "%gilwise -q 'a b'.split() + [str(-1)]")
    assert result.error_in_exec is None, result.error_in_exec
    assert result.result == ["a", "b", "-1"]


def test_magic_without_code_says_how_to_use_it(shell, capsys):
    run(shell, "%gilwise")
    captured = capsys.readouterr()
    assert "%gilwise needs code to profile" in captured.out + captured.err


def test_bad_rate_is_a_usage_error(shell, capsys):
    run(shell, "%gilwise -r fast spinner(0.01)")
    captured = capsys.readouterr()
    assert "--rate needs samples per second" in captured.out + captured.err


def test_a_rate_out_of_range_is_a_usage_error(shell, capsys):
    run(shell, "%gilwise -r 0 spinner(0.01)")
    captured = capsys.readouterr()
    assert "%gilwise: rate_hz must be in" in captured.out + captured.err


def test_where_the_probe_cannot_run_the_code_is_not_run_and_the_reason_shown(
    shell, capsys, monkeypatch, no_leaks
):
    # What a macOS or a /proc-less container reports (gilwise.probe._procfs.available).
    from gilwise.probe import _procfs

    monkeypatch.setattr(_procfs, "available", lambda: "no /proc filesystem here")
    shell.user_ns.pop("ran", None)
    run(shell, "%gilwise ran = True")
    captured = capsys.readouterr()
    assert "%gilwise cannot profile here, the code was not run" in captured.out + captured.err
    assert "no /proc filesystem here" in captured.out + captured.err
    assert "ran" not in shell.user_ns


def test_notebook_frontends_get_the_html_report(shell, no_leaks):
    with gilwise.monitor(stack_rate_hz=None) as mon:
        shell.user_ns["spinner"](0.05)
    profile = mon.profile
    # What a notebook asks for: every mime type the display formatter can produce.
    data, _metadata = shell.display_formatter.format(ProfileReport(profile))
    assert data["text/html"].startswith('<div class="gilwise-report"')
    assert "<html" not in data["text/html"].lower()  # a fragment, not a page inside a page
    assert "verdict" in data["text/html"]
    assert "gilwise profile" in data["text/plain"]
    # A bare Profile as a cell's value: HTML in a notebook, a short repr in a terminal.
    data, _metadata = shell.display_formatter.format(profile)
    assert data["text/html"].startswith('<div class="gilwise-report"')
    assert data["text/plain"].startswith("<gilwise.Profile ")


def _profile(held: float | None, verdict: str | None, threads: int) -> Profile:
    stats = tuple(
        ThreadStats(f"t{i}", 100 + i, 1.02, 0.5, 0.5, 0.1, 0.0, 0.0, 0.0) for i in range(threads)
    )
    return Profile(
        python=PythonInfo("3.11.7", "CPython", True),
        cores=2,
        wall_s=1.0234,
        held_fraction=held,
        threads=stats,
        verdict=None if verdict is None else Verdict(verdict, "process", 1.9, "because"),  # type: ignore[arg-type]
    )


def test_profile_repr_is_short_and_says_what_matters():
    assert repr(_profile(0.971, "gil-bound", 3)) == (
        "<gilwise.Profile 1.02 s, 3 threads, GIL held 97%, verdict gil-bound>"
    )
    assert repr(_profile(None, None, 1)) == "<gilwise.Profile 1.02 s, 1 thread, GIL held n/a>"


@pytest.mark.slow
def test_a_real_notebook_kernel_shows_the_html_report(tmp_path: Path, no_leaks) -> None:
    nbformat = pytest.importorskip("nbformat", reason="nbformat is in the dev extra")
    nbclient = pytest.importorskip("nbclient", reason="nbclient is in the dev extra")
    pytest.importorskip("ipykernel", reason="ipykernel is in the dev extra")
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell("%load_ext gilwise"),
        nbformat.v4.new_code_cell(
            "%%gilwise --no-stacks\n"
            "import time\n"
            "deadline = time.monotonic() + 0.2\n"
            "while time.monotonic() < deadline:\n"
            "    pass"
        ),
        nbformat.v4.new_code_cell("_gilwise_profile"),
    ]
    client = nbclient.NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()
    magic_outputs = notebook.cells[1].outputs
    html_outputs = [o for o in magic_outputs if "text/html" in o.get("data", {})]
    assert len(html_outputs) == 1, magic_outputs
    assert html_outputs[0]["data"]["text/html"].startswith('<div class="gilwise-report"')
    assert "gilwise profile" in html_outputs[0]["data"]["text/plain"]
    value = notebook.cells[2].outputs[0]["data"]
    assert value["text/plain"].startswith("<gilwise.Profile ")
    assert value["text/html"].startswith('<div class="gilwise-report"')
