"""Small realistic programs, each profiled by the CLI as a user would, get their true verdict.

The programs and their truths are in calibration_cases.py (one script per case under
programs/). Each runs once here (also under 3.9-3.13: multiversion); the stability claim
(the same verdict in every run) is checked by repeating each case: set
GILWISE_CALIBRATION_RUNS=5, or run ``python tests/calibration/run.py --runs 5`` for a table.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Iterator

import calibration_cases as calibration
import pytest

REPEATS = int(os.environ.get("GILWISE_CALIBRATION_RUNS", "0"))


def _cli_has(option: str) -> bool:
    done = subprocess.run(
        [sys.executable, "-m", "gilwise", "profile", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return option in done.stdout


# Cases waiting for another area's work: they run, and report a pass when it lands.
def _pending() -> dict[str, str]:
    pending = {}
    if not _cli_has("--subprocesses"):
        pending["mp-pool-whole"] = "`gilwise profile --subprocesses` has not landed yet"
    return pending


PENDING = _pending()


def _params() -> list:
    return [
        pytest.param(
            case,
            id=case.name,
            marks=[pytest.mark.xfail(reason=PENDING[case.name], strict=False)]
            if case.name in PENDING
            else [],
        )
        for case in calibration.CASES
    ]


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    with calibration.local_server() as url:
        yield url


@pytest.mark.multiversion
@pytest.mark.parametrize("case", _params())
def test_program_gets_its_true_verdict(case, server_url, tmp_path):
    profile = calibration.profile_program(case, tmp_path, server_url)
    wrong = calibration.problems(case, profile)
    assert not wrong, f"{case.name}: {'; '.join(wrong)}\n{calibration.describe(profile)}"


@pytest.mark.slow
@pytest.mark.parametrize("case", _params())
def test_verdict_is_the_same_in_every_run(case, server_url, tmp_path):
    if REPEATS < 2:
        pytest.skip("repeats each program: set GILWISE_CALIBRATION_RUNS=5 to run")
    outcomes = []
    for run in range(REPEATS):
        workdir = tmp_path / str(run)
        workdir.mkdir()
        profile = calibration.profile_program(case, workdir, server_url)
        wrong = calibration.problems(case, profile)
        outcomes.append(
            f"run {run + 1}: {'; '.join(wrong) or 'ok'}: {calibration.describe(profile)}"
        )
    assert all(": ok: " in line for line in outcomes), "\n".join(outcomes)
