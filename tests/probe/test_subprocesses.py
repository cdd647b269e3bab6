"""`gilwise profile --subprocesses` / `monitor(subprocesses=True)`: every Python child process
gets its own section, measured like the parent. Each program runs as a user runs it (a
child Python process); the workloads have known answers: a pure-Python loop holds its
process's GIL all the time, a parent blocked on its pool holds it almost never."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gilwise.probe._children import CHILDREN_POLL_S, SETTLE_S

pytestmark = pytest.mark.usefixtures("no_leaks")

# A child is found at a poll (every CHILDREN_POLL_S) and attached once SETTLE_S old: up to
# this much of its life (one level of the tree) is before its first sample, by design.
ATTACH_LATENCY_S = SETTLE_S + CHILDREN_POLL_S

TIMEOUT_S = 180
BURN = textwrap.dedent(
    """
    import time

    def burn(seconds):
        # Pure Python for `seconds` of this process's CPU: holds the GIL throughout.
        end = time.process_time() + seconds
        x = 0
        while time.process_time() < end:
            x += 1
        return x
    """
)


def _profile(tmp_path: Path, body: str, *options: str) -> dict:
    program = tmp_path / "program.py"
    program.write_text(BURN + textwrap.dedent(body))
    out = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "gilwise", "profile", *options, "-o", str(out), str(program)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        cwd=str(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text())


def _workers(report: dict, marker: str) -> list[dict]:
    return [p for p in report["processes"] if marker in (p["command"] or "")]


def _cpu_seconds(process: dict) -> float:
    return sum(t["cpu_s"] or 0.0 for t in process["threads"])


def _held_seconds(process: dict) -> float:
    return sum(t["gil_held_s"] or 0.0 for t in process["threads"])


def _function_seconds(process: dict, name: str) -> float:
    return sum(f["gil_held_s"] for f in process["functions"] if f["function"] == name)


def _function_held_share(process: dict, name: str) -> float:
    """The share of the samples in ``name`` (any state) in which its thread held the GIL."""
    states = ("gil_held_s", "gil_wait_s", "native_s", "io_wait_s", "lock_wait_s")
    entries = [f for f in process["functions"] if f["function"] == name]
    total = sum(f[state] for f in entries for state in states)
    return sum(f["gil_held_s"] for f in entries) / total


@pytest.mark.parametrize(
    "method", [pytest.param("fork", marks=pytest.mark.multiversion), "spawn", "forkserver"]
)
def test_a_pool_gets_one_section_per_worker_holding_its_own_gil(tmp_path, method):
    report = _profile(
        tmp_path,
        f"""
        import multiprocessing

        def meet(barrier):
            global BARRIER
            BARRIER = barrier

        def burn_together(seconds):
            BARRIER.wait(60)  # both workers hold one task each: one cannot take both
            return burn(seconds)

        if __name__ == "__main__":
            context = multiprocessing.get_context({method!r})
            barrier = context.Barrier(2)
            with context.Pool(2, initializer=meet, initargs=(barrier,)) as pool:
                pool.map(burn_together, [0.8, 0.8], chunksize=1)
        """,
        "--subprocesses",
        "--format",
        "json",
    )
    root_pid = report["pid"]
    marker = "program.py" if method == "fork" else "multiprocessing"
    workers = [p for p in _workers(report, marker) if _function_seconds(p, "burn") > 0]
    assert len(workers) == 2, [(p["pid"], p["command"]) for p in report["processes"]]
    for worker in workers:
        # Its own GIL: while it burns it never waits for a GIL. (Not its whole-life
        # held_fraction: that also counts its wait at the barrier for the other worker and
        # its wait for more work or the pool's end once its burn is done; how long those
        # last depends on how the two workers were scheduled, e.g. ~0.2 s of 1 s when idle.)
        assert _function_held_share(worker, "burn") > 0.95, worker["functions"][:3]
        # Each worker burned 0.8 s of CPU in burn(), holding its GIL throughout (on a
        # busy machine the GIL is also held while the kernel runs someone else).
        assert _cpu_seconds(worker) == pytest.approx(0.8, abs=0.15)
        assert 0.7 < _function_seconds(worker, "burn") <= _held_seconds(worker) + 1e-6
        assert worker["pid"] != root_pid
        if method != "forkserver":  # forkserver workers are the fork server's children
            assert worker["parent_pid"] == root_pid
        if method == "spawn":
            assert "fork of" not in worker["command"]
        else:  # forked from the program, or from the fork server (a spawned python)
            assert worker["command"].startswith(f"fork of {worker['parent_pid']}: ")
        main = next(t for t in worker["threads"] if t["native_id"] == worker["pid"])
        assert main["name"] == "MainThread"
    assert report["gil"]["held_fraction"] < 0.3  # the parent mostly waits for results
    assert report["verdict"]["kind"] != "lock-contention"


def test_a_process_pool_executor_and_a_python_run_through_a_shell_are_followed(tmp_path):
    report = _profile(
        tmp_path,
        """
        import subprocess, sys
        from concurrent.futures import ProcessPoolExecutor
        if __name__ == "__main__":
            with ProcessPoolExecutor(1) as pool:
                assert pool.submit(burn, 0.4).result() > 0
            script = "import time; end = time.process_time() + 0.4\\n"
            script += "while time.process_time() < end: pass"
            subprocess.run(["sh", "-c", f'"{sys.executable}" -c "{script}"'], check=True)
        """,
        "--subprocesses",
        "--format",
        "json",
    )
    by_pid = {p["pid"]: p for p in report["processes"]}
    pool_workers = [p for p in by_pid.values() if _function_seconds(p, "burn") > 0.3]
    assert len(pool_workers) == 1
    assert pool_workers[0]["gil"]["held_fraction"] > 0.8
    # The shell is not Python: not a section of its own, but its python child is one.
    shelled = [p for p in by_pid.values() if "process_time" in (p["command"] or "")]
    assert len(shelled) == 1, [p["command"] for p in by_pid.values()]
    assert shelled[0]["parent_pid"] not in by_pid and shelled[0]["parent_pid"] != report["pid"]
    assert shelled[0]["gil"]["held_fraction"] > 0.8
    assert not any((p["command"] or "").startswith("sh ") for p in by_pid.values())


def test_gilwise_process_workers_are_followed(tmp_path):
    report = _profile(
        tmp_path,
        """
        import gilwise
        if __name__ == "__main__":
            with gilwise.Executor(backend="process", max_workers=1) as executor:
                assert executor.submit(burn, 0.4).result() > 0
        """,
        "--subprocesses",
        "--format",
        "json",
    )
    ran = [p for p in report["processes"] if _function_seconds(p, "burn") > 0.3]
    assert len(ran) == 1, [(p["pid"], p["command"]) for p in report["processes"]]
    assert ran[0]["gil"]["held_fraction"] > 0.8


def test_without_the_option_children_are_not_followed(tmp_path):
    report = _profile(
        tmp_path,
        """
        import multiprocessing
        if __name__ == "__main__":
            with multiprocessing.get_context("fork").Pool(1) as pool:
                pool.map(burn, [0.2])
        """,
        "--format",
        "json",
    )
    assert report["processes"] == []


def test_monitor_subprocesses_in_a_program(tmp_path):
    program = tmp_path / "program.py"
    program.write_text(
        BURN
        + textwrap.dedent(
            """
            import json, multiprocessing, os
            import gilwise
            if __name__ == "__main__":
                with gilwise.monitor(subprocesses=True) as mon:
                    worker = multiprocessing.get_context("fork").Process(target=burn, args=(0.4,))
                    worker.start()
                    worker.join()
                profile = mon.profile
                (child,) = [p for p in profile.processes if p.pid == worker.pid]
                print(json.dumps({
                    "root_pid": profile.pid, "my_pid": os.getpid(),
                    "parent_pid": child.parent_pid, "held": child.held_fraction,
                    "burn": sum(f.gil_held_s for f in child.functions if f.function == "burn"),
                    "end": child.extra["end"],
                    "cpu": sum(t.cpu_s or 0.0 for t in child.threads),
                }))
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(program)], capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["root_pid"] == seen["my_pid"] == seen["parent_pid"]
    assert seen["held"] > 0.8
    # 0.4 s of CPU in burn() from the fork on, less what ran before the child was attached.
    assert seen["burn"] >= 0.4 - ATTACH_LATENCY_S - 0.02
    assert seen["cpu"] == pytest.approx(0.4, abs=0.1)
    assert seen["end"] == "exited"


def test_the_text_report_has_one_section_per_process(tmp_path):
    program = tmp_path / "program.py"
    program.write_text(
        BURN
        + textwrap.dedent(
            """
            import multiprocessing
            if __name__ == "__main__":
                with multiprocessing.get_context("fork").Pool(2) as pool:
                    pool.map(burn, [0.2] * 2, chunksize=1)
            """
        )
    )
    as_json, as_text = tmp_path / "report.json", tmp_path / "report.txt"
    for out in (as_json, as_text):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "gilwise",
                "profile",
                "--subprocesses",
                "-o",
                str(out),
                str(program),
            ],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
        assert done.returncode == 0, done.stderr
    text = as_text.read_text()
    sections = [line for line in text.splitlines() if line.startswith("process ")]
    children = json.loads(as_json.read_text())["processes"]
    assert len(sections) == len(children) >= 2
    for line in sections:
        assert "(child of " in line and "fork of " in line
    assert text.count("its own verdict: ") == len(sections)
