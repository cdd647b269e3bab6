"""Run one measurement in a fresh Python, as a user's script would run: the benchmarks'
way to time a pool from its creation, with nothing warm from an earlier measurement.

``run(script, argument, hang_guard_s)`` starts ``python script --cell|--variant ARGUMENT``
in its own session, returns the last JSON line it printed (or {"error": ...}) and how many
of its processes (pool workers) were still alive a second after it ended; those are killed.
"""

from __future__ import annotations

import compileall
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

import psutil

_environment: Optional[dict[str, str]] = None


def script_environment() -> dict[str, str]:
    """A user's environment: imports read cached bytecode. (A shell that sets
    PYTHONDONTWRITEBYTECODE makes every import of an uninstalled, editable package compile
    its source again: hundreds of milliseconds that no installed program pays.)"""
    global _environment
    if _environment is None:
        import gilwise

        compileall.compile_dir(str(Path(gilwise.__file__).parent), quiet=1)
        compileall.compile_dir(str(Path(__file__).parent), quiet=1, maxlevels=0)
        _environment = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return _environment


def _session_members(session_id: int) -> list[int]:
    members = []
    for process in psutil.process_iter(["pid"]):
        try:
            if os.getsid(process.pid) == session_id:
                members.append(process.pid)
        except (ProcessLookupError, PermissionError):
            continue
    return members


def run(
    script: Path, flag: str, argument: dict[str, Any], hang_guard_s: float
) -> tuple[dict[str, Any], int]:
    """(the script's answer, processes it left alive for more than a second)."""
    child = subprocess.Popen(
        [sys.executable, str(script), flag, json.dumps(argument)],
        env=script_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = child.communicate(timeout=hang_guard_s)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        return {"error": f"no answer within {hang_guard_s:.0f} s"}, 0
    deadline = time.monotonic() + 1.0
    while (members := _session_members(child.pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in members:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        tail = (err.strip().splitlines() or [f"exit code {child.returncode}"])[-1]
        return {"error": tail}, len(members)
    return json.loads(lines[-1]), len(members)
