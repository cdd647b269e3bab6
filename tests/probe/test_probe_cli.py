"""`gilwise profile`: runs a program like cProfile, keeps its exit code and output, attaches."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gilwise.cli import main

pytestmark = pytest.mark.usefixtures("no_leaks")

TESTS_DIR = str(Path(__file__).resolve().parent.parent)
TIMEOUT_S = 120

PROGRAM = textwrap.dedent(
    f"""
    import sys
    sys.path.insert(0, {TESTS_DIR!r})
    import workloads
    print("program says", sys.argv[1:])
    workloads.run_threads(workloads.spinner, 2, 0.3)
    if "--raise" in sys.argv:
        raise RuntimeError("the program failed")
    if "--exit" in sys.argv:
        sys.exit(3)
    """
)


@pytest.fixture
def program(tmp_path: Path) -> Path:
    path = tmp_path / "program.py"
    path.write_text(PROGRAM)
    return path


def _gilwise(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gilwise", "profile", *argv],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        **kwargs,
    )


def test_script_output_stays_on_stdout_and_the_report_goes_to_stderr(program):
    done = _gilwise("--format", "json", str(program), "a", "--flag")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "program says ['a', '--flag']\n"
    report = json.loads(done.stderr)
    assert report["schema"] == "gilwise.profile/2"
    assert report["gil"]["held_fraction"] > 0.5
    assert report["verdict"]["kind"] in ("gil-bound", "serial", "mixed")


def test_sys_exit_code_is_kept_and_the_report_still_written(program, tmp_path):
    out = tmp_path / "report.json"
    done = _gilwise("--format", "json", "-o", str(out), str(program), "--exit")
    assert done.returncode == 3
    assert json.loads(out.read_text())["command"].endswith("--exit")


def test_an_exception_exits_1_with_the_programs_traceback_and_a_report(program, tmp_path):
    out = tmp_path / "report.json"
    done = _gilwise("--format", "json", "-o", str(out), str(program), "--raise")
    assert done.returncode == 1
    assert "RuntimeError: the program failed" in done.stderr
    assert "runpy" not in done.stderr
    assert json.loads(out.read_text())["threads"]


def test_dash_m_runs_a_module_with_its_arguments(program, tmp_path):
    out = tmp_path / "report.txt"
    done = _gilwise("-o", str(out), "-m", "program", "x", cwd=str(program.parent))
    assert done.returncode == 0, done.stderr
    assert "program says ['x']" in done.stdout
    assert "verdict" in out.read_text()


def test_ctrl_c_exits_130_and_still_writes_the_report(tmp_path):
    program = "import threading\nprint('ready', flush=True)\nthreading.Event().wait()\n"
    _, code, stderr, left, out = _interrupt(tmp_path, to_group=False, program=program)
    assert code == 130, stderr
    assert not left
    report = json.loads(out.read_text())
    assert report["command"].endswith("spin.py")
    assert report["threads"]
    assert report["end_reason"] == "SIGINT"


def test_attach_to_a_running_process_finds_the_gil_holder(capsys):
    victim_code = (
        "import threading, sys\n"
        "def spin():\n"
        "    while True: pass\n"
        "for _ in range(2): threading.Thread(target=spin, daemon=True).start()\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", victim_code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as victim:
        try:
            assert victim.stdout is not None and victim.stdout.readline() == "ready\n"
            code = main(
                ["profile", "--pid", str(victim.pid), "--duration", "0.5", "--format", "json"]
            )
        finally:
            victim.kill()
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["source"] == f"attach:{victim.pid}"
    assert report["gil"]["held_fraction"] == pytest.approx(1.0, abs=0.05)
    assert report["verdict"]["kind"] == "gil-bound"


def test_attach_to_a_missing_process_says_so(capsys):
    missing_pid = 2**22 + 12345
    assert not os.path.exists(f"/proc/{missing_pid}")
    assert main(["profile", "--pid", str(missing_pid), "--duration", "0.1"]) == 1
    assert "no process" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["profile"], "give a script"),
        (["profile", "no_such_script.py"], "no such script"),
        (["profile", "--rate", "0", "x.py"], "--rate must be in"),
        (["profile", "--pid", "1", "--rate", "-3"], "--rate must be in"),
        (["profile", "--pid", "1", "--duration", "0"], "--duration must be positive"),
    ],
)
def test_usage_errors_exit_2_with_a_message(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_stack_rate_zero_gives_states_without_functions_and_bad_rates_are_refused(program):
    done = _gilwise("--stack-rate", "0", "--format", "json", str(program))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stderr)
    assert report["functions"] == []
    assert any(note.startswith("functions:") for note in report["unavailable"])
    assert report["gil"]["held_fraction"] > 0.5
    refused = _gilwise("--stack-rate", "-5", str(program))
    assert refused.returncode == 2
    assert "--stack-rate must be in [0, 20000]" in refused.stderr
    assert "program says" not in refused.stdout


TOOL = "import sys\nprint(sys.argv[1:])\n"


@pytest.mark.parametrize(
    "program_args",
    [
        ["--flag"],
        ["-q", "-o", "theirs.txt", "--format", "x", "-m", "other"],
        ["--", "a", "--"],
        ["--pid", "1", "--rate=5"],
    ],
)
def test_every_argument_after_the_module_or_script_is_the_programs(tmp_path, program_args):
    (tmp_path / "tool.py").write_text(TOOL)
    out = tmp_path / "report.json"
    as_module = _gilwise(
        "--format", "json", "-o", str(out), "-m", "tool", *program_args, cwd=str(tmp_path)
    )
    assert as_module.returncode == 0, as_module.stderr
    assert as_module.stdout == f"{program_args}\n"
    assert json.loads(out.read_text())["command"] == "python -m tool " + " ".join(program_args)
    as_script = _gilwise(
        "--format=json", "-o", str(out), "tool.py", *program_args, cwd=str(tmp_path)
    )
    assert as_script.returncode == 0, as_script.stderr
    assert as_script.stdout == f"{program_args}\n"
    assert not (tmp_path / "theirs.txt").exists()


def test_dash_dash_ends_gilwise_options_and_dash_m_may_be_glued(tmp_path):
    (tmp_path / "tool.py").write_text(TOOL)
    out = tmp_path / "report.txt"
    done = _gilwise("-o", str(out), "--", "tool.py", "-x", cwd=str(tmp_path))
    assert done.stdout == "['-x']\n", done.stderr
    glued = _gilwise("-o", str(out), "-mtool", "-x", cwd=str(tmp_path))
    assert glued.stdout == "['-x']\n", glued.stderr


def test_dash_m_pytest_q_runs_pytest_with_its_own_options(tmp_path):
    (tmp_path / "test_small.py").write_text("def test_one():\n    assert 1 + 1 == 2\n")
    out = tmp_path / "report.json"
    done = _gilwise(
        "-o",
        str(out),
        "--format",
        "json",
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "test_small.py",
        cwd=str(tmp_path),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
    assert json.loads(out.read_text())["command"].startswith("python -m pytest -q")


@pytest.mark.parametrize("command", [["sleep", "60"], ["bash", "-c", "read line"]])
def test_pid_of_a_process_that_is_not_python_exits_1_with_one_line(command):
    with subprocess.Popen(command, stdin=subprocess.PIPE) as other:
        try:
            done = _gilwise("--pid", str(other.pid), "--duration", "0.2")
        finally:
            other.kill()
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"process {other.pid} ({command[0]}" in lines[0]
    assert "is not a CPython process" in lines[0]


ENDINGS = textwrap.dedent(
    """
    import os, sys, threading
    sys.path.insert(0, {tests!r})
    import workloads
    worker = threading.Thread(target=workloads.spinner, args=(0.2,), name="spinner")
    worker.start()
    worker.join()
    print("ran", flush=True)
    how = sys.argv[1]
    if how == "os._exit":
        os._exit(3)
    if how == "segfault":
        import ctypes
        ctypes.string_at(0)
    if how == "sigkill":
        import signal
        os.kill(os.getpid(), signal.SIGKILL)
    """
).format(tests=TESTS_DIR)


@pytest.mark.multiversion
@pytest.mark.parametrize(
    ("how", "exit_code", "end_reason"),
    [
        ("os._exit", 3, "os._exit"),
        ("segfault", 128 + signal.SIGSEGV, "signal SIGSEGV"),
        ("sigkill", 128 + signal.SIGKILL, "signal SIGKILL"),
    ],
)
def test_a_program_that_ends_abruptly_still_gets_its_report_and_exit_code(
    tmp_path, how, exit_code, end_reason
):
    program = tmp_path / "ends.py"
    program.write_text(ENDINGS)
    out = tmp_path / "report.json"
    done = _gilwise("--format", "json", "-o", str(out), str(program), how)
    assert done.returncode == exit_code, done.stderr
    assert done.stdout == "ran\n"
    report = json.loads(out.read_text())
    assert report["exit_code"] == exit_code
    assert report["end_reason"] == end_reason
    spinner = next(t for t in report["threads"] if t["native_id"] != report["pid"])
    assert spinner["gil_held_s"] == pytest.approx(0.2, abs=0.05)
    if how == "os._exit":
        assert spinner["name"] == "spinner"  # the program said its threads' names first
    else:
        assert f"killed by {end_reason.split()[1]}" in done.stderr
    assert not list(tmp_path.glob("*.tmp"))


SPIN_FOREVER = textwrap.dedent(
    """
    import threading
    def spin():
        while True:
            pass
    # Not daemon threads: they would keep the program alive after KeyboardInterrupt.
    threads = [threading.Thread(target=spin, name=f"spin-{i}") for i in range(2)]
    for thread in threads:
        thread.start()
    print("ready", flush=True)
    for thread in threads:
        thread.join()
    """
)


def _interrupt(
    tmp_path: Path, *, to_group: bool, repeat_every_s: float = 0.0, program: str = SPIN_FOREVER
):
    """Run ``program`` under gilwise, SIGINT it once it is ready (again every
    ``repeat_every_s`` until it exits, if given); returns (seconds to exit, exit code,
    stderr, processes left)."""
    import time

    import psutil

    program = tmp_path / "spin.py"
    program.write_text(SPIN_FOREVER)
    out = tmp_path / "report.json"
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gilwise",
            "profile",
            "--format",
            "json",
            "-o",
            str(out),
            str(program),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
            family = psutil.Process(proc.pid).children(recursive=True)
            sent = time.monotonic()
            deadline = sent + TIMEOUT_S
            while proc.poll() is None and time.monotonic() < deadline:
                if to_group:
                    os.killpg(proc.pid, signal.SIGINT)
                else:
                    proc.send_signal(signal.SIGINT)
                if not repeat_every_s:
                    proc.wait(TIMEOUT_S)
                    break
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(repeat_every_s)
            exit_s = time.monotonic() - sent
            stderr = proc.stderr.read() if proc.stderr is not None else ""
        finally:
            if proc.poll() is None:
                proc.kill()
    _, left = psutil.wait_procs(family, timeout=2)
    return exit_s, proc.returncode, stderr, left, out


@pytest.mark.parametrize("to_group", [False, True], ids=["to-gilwise", "to-group"])
def test_ctrl_c_exits_130_within_a_second_although_threads_keep_running(tmp_path, to_group):
    exit_s, code, stderr, left, out = _interrupt(tmp_path, to_group=to_group)
    assert code == 130, stderr
    assert exit_s <= 1.0, f"exited {exit_s:.2f} s after Ctrl-C"
    assert not left, f"left running: {left}"
    report = json.loads(out.read_text())
    assert report["exit_code"] == 130
    assert report["end_reason"] == "SIGINT"
    spinners = [t for t in report["threads"] if t["name"].startswith("spin-")]
    assert len(spinners) == 2
    assert report["gil"]["held_fraction"] > 0.8


@pytest.mark.parametrize("to_group", [False, True], ids=["to-gilwise", "to-group"])
def test_ctrl_c_repeated_while_the_report_is_written_still_leaves_a_whole_report(
    tmp_path, to_group
):
    # A SIGINT every 20 ms until gilwise exits: several land while the report is written.
    exit_s, code, stderr, left, out = _interrupt(tmp_path, to_group=to_group, repeat_every_s=0.02)
    assert code == 130, stderr
    assert exit_s <= 1.0, f"exited {exit_s:.2f} s after the first Ctrl-C"
    assert not left, f"left running: {left}"
    report = json.loads(out.read_text())
    assert report["end_reason"] == "SIGINT"
    assert not list(tmp_path.glob("*.tmp"))


SPIN_WITH_A_PROCESS = textwrap.dedent(
    """
    import multiprocessing, threading
    def spin():
        while True:
            pass
    if __name__ == "__main__":
        worker = multiprocessing.get_context("fork").Process(target=spin)
        worker.start()
        threading.Thread(target=spin).start()  # keeps the program alive after Ctrl-C
        print("ready", flush=True)
        worker.join()
    """
)


def test_ctrl_c_leaves_no_process_the_program_started(tmp_path):
    exit_s, code, stderr, left, out = _interrupt(
        tmp_path, to_group=False, program=SPIN_WITH_A_PROCESS
    )
    assert code == 130, stderr
    assert exit_s <= 1.0, f"exited {exit_s:.2f} s after Ctrl-C"
    assert not left, f"left running: {left}"
    assert json.loads(out.read_text())["end_reason"] == "SIGINT"
