"""Fault injection: one worker crash per round (os._exit, SIGKILL, segfault) through the
modes of _crash_driver.MODES (Executor.map with batches, Executor.submit, both under auto
too, and Pipeline stages on processes with batches and under auto), counting lost,
duplicated and wrong results, hangs, caller deaths and processes left behind.

The rounds run in a separate program (_crash_driver.py) so that a crash reaching the caller
kills that program, not pytest: the harness counts it as a caller death and starts a new
driver at the next round. ``GILWISE_STRESS_ROUNDS`` sets the number of rounds (default 60,
so CI stays fast; the figure in the README comes from 1000):

    GILWISE_STRESS_ROUNDS=1000 python -m pytest tests/stress -s
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

DRIVER = Path(__file__).with_name("_crash_driver.py")
ROUNDS = int(os.environ.get("GILWISE_STRESS_ROUNDS", "60"))
SEED = int(os.environ.get("GILWISE_STRESS_SEED", "0"))
# "all": every mode of _crash_driver.MODES (today also the default, _crash_driver.TESTED_MODES).
MODES_ARGS = ["--modes", "all"] if os.environ.get("GILWISE_STRESS_MODES") == "all" else []
# Hang guard of one driver program (its own per-round guard is 60 s); a round takes 0.2-1 s.
DRIVER_GUARD_S = 90.0 + ROUNDS * 3.0


def _session_members(session_id: int) -> list[psutil.Process]:
    members = []
    for process in psutil.process_iter():
        try:
            # A zombie is dead already, only waiting for its new parent to reap it.
            if os.getsid(process.pid) == session_id and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return members


def _run_driver(first: int, rounds: int) -> tuple[list[dict], int, list[int]]:
    """Run rounds [first, first + rounds) in one driver; its reports, exit code, leftovers."""
    driver = subprocess.Popen(
        [
            sys.executable,
            str(DRIVER),
            "--first",
            str(first),
            "--rounds",
            str(rounds),
            "--seed",
            str(SEED),
            *MODES_ARGS,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # segfaulting workers print their faulthandler dumps
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = driver.communicate(timeout=DRIVER_GUARD_S)
    except subprocess.TimeoutExpired:
        os.killpg(driver.pid, signal.SIGKILL)
        out, _ = driver.communicate()
        pytest.fail(f"the crash driver hung past {DRIVER_GUARD_S:.0f} s (rounds {first}+)")
    # Workers die with their program: give them a moment, then look for any left.
    deadline = time.monotonic() + 5.0
    while (left := _session_members(driver.pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    leftovers = [p.pid for p in left]
    for process in left:
        process.kill()
    reports = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return reports, driver.returncode, leftovers


@pytest.mark.slow
@pytest.mark.timeout(DRIVER_GUARD_S + 60)
def test_injected_crashes_lose_duplicate_corrupt_and_hang_nothing() -> None:
    reports: list[dict] = []
    caller_deaths: list[str] = []
    leftovers: list[int] = []
    started = time.perf_counter()
    next_round = 0
    while next_round < ROUNDS:
        batch, returncode, left = _run_driver(next_round, ROUNDS - next_round)
        reports += batch
        leftovers += left
        done = {report["round"] for report in batch}
        next_round = max(done, default=next_round - 1) + 1
        if returncode != 0 and not (batch and batch[-1].get("hang")):
            caller_deaths.append(f"round {next_round}: exit code {returncode}")
            next_round += 1  # the round that was running killed its caller
        if batch and batch[-1].get("hang"):
            next_round = batch[-1]["round"] + 1
    elapsed_s = time.perf_counter() - started

    totals = collections.Counter()
    by_mode: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    failures = []
    for report in reports:
        mode = report.get("mode", "?")
        by_mode[mode]["rounds"] += 1
        for key in ("lost", "duplicated", "wrong"):
            totals[key] += report.get(key, 0)
            by_mode[mode][key] += report.get(key, 0)
        bad_error = not report.get("error_ok", False)
        totals["hangs"] += bool(report.get("hang"))
        totals["bad errors"] += bad_error
        by_mode[mode]["bad errors"] += bad_error
        if bad_error or report.get("lost") or report.get("duplicated") or report.get("wrong"):
            failures.append(report)
    summary = (
        f"{ROUNDS} rounds in {elapsed_s:.0f} s: lost {totals['lost']}, duplicated "
        f"{totals['duplicated']}, wrong {totals['wrong']}, hangs {totals['hangs']}, caller "
        f"deaths {len(caller_deaths)}, crashes without a WorkerCrashedError naming the call "
        f"{totals['bad errors']}, processes left {len(leftovers)}\n"
        + "\n".join(f"  {mode}: {dict(counts)}" for mode, counts in sorted(by_mode.items()))
    )
    print(summary)
    examples = "\n".join(json.dumps(report) for report in failures[:5])
    assert not caller_deaths, f"{summary}\ncaller deaths: {caller_deaths}"
    assert totals["hangs"] == 0, summary
    assert not leftovers, f"{summary}\nprocesses left after the driver exited: {leftovers}"
    assert not failures, f"{summary}\nfirst failing rounds:\n{examples}"
    assert len(reports) == ROUNDS, summary
