"""Ctrl-C for a program in a child interpreter: start it, wait until it prints the line that
says it is where the test wants it, send SIGINT, and check that it ended at once with a
KeyboardInterrupt, leaving no process of its family behind."""

from __future__ import annotations

import signal
import subprocess
import sys

import psutil


def interrupt_when_it_says(code: str, line: str, guard_s: float) -> None:
    """Run ``code``; once it prints ``line`` (its first line), Ctrl-C it; assert the ending."""
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == line
        family = [child.pid] + [p.pid for p in psutil.Process(child.pid).children(recursive=True)]
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=guard_s)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode != 0 and "KeyboardInterrupt" in err, err
    assert not [
        pid
        for pid in family
        if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    ]
