"""Start, stop and collect the sampler child process (``python -m gilwise.probe._sampler``).

Used by ``monitor`` (the child samples its parent) and by ``gilwise profile --pid`` (the
child samples another process, so the CLI process never changes its own scheduling).
"""

from __future__ import annotations

import marshal
import os
import select
import subprocess
import sys
import time
from typing import Any

from gilwise.errors import ProbeUnavailableError
from gilwise.probe import _procfs
from gilwise.probe._sampler import SamplerConfig

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0

_PERMISSION_HINT = (
    "It needs ptrace permission on the target: set kernel.yama.ptrace_scope to 0 or 1 "
    "(sysctl), run as the same user or root, or grant CAP_SYS_PTRACE (in a container: "
    "--cap-add SYS_PTRACE)."
)


def sampler_command() -> list[str]:
    """The command line of the sampler child; raises when no Python executable is known."""
    if not sys.executable:
        raise ProbeUnavailableError(
            "gilwise needs sys.executable to start its sampler process, and it is empty "
            "(an embedded interpreter?); run the program with a regular python"
        )
    return [sys.executable, "-S", "-m", "gilwise.probe._sampler"]


def start(config: SamplerConfig, *, allow_tracing: bool = True) -> subprocess.Popen:
    """Start a sampler child for ``config.pid``; returns once it has taken its first sample.

    ``allow_tracing``: the target is this process, so let the child read it under Yama
    ptrace_scope=1. Raises ProbeUnavailableError (saying what to do) when the child cannot
    read the target; the child is reaped before raising.
    """
    env = dict(os.environ)
    # The child needs only gilwise and the standard library: put gilwise first on its path.
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (package_parent, env.get("PYTHONPATH", "")) if part
    )
    child = subprocess.Popen(
        sampler_command(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
        env=env,
        close_fds=True,
        pass_fds=() if config.rescue_fd is None else (config.rescue_fd,),
    )
    try:
        if allow_tracing:
            _procfs.allow_tracer(child.pid)
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(marshal.dumps(config.to_dict()))
        ready, _, _ = select.select([child.stdout], [], [], START_TIMEOUT_S)
        first = child.stdout.read(1) if ready else b""
        if first == b"R":
            return child
        rest = child.stdout.read() if first else b""
        child.kill()
        _, stderr = child.communicate()
        detail = (rest or stderr).decode(errors="replace").strip()[-2000:]
        if not first:
            detail = detail or f"no answer within {START_TIMEOUT_S:.0f} s"
        hint = _PERMISSION_HINT
        if "Too many open files" in detail:
            hint = (
                "The sampler keeps a /proc file open per thread and ran out of file "
                "descriptors: raise the limit (ulimit -n) for this program."
            )
        raise ProbeUnavailableError(
            f"gilwise cannot read the threads of process {config.pid}: {detail}. " + hint
        )
    except BaseException:
        if child.poll() is None:
            child.kill()
        child.communicate()
        raise


def stop(child: subprocess.Popen) -> dict[str, Any]:
    """Tell the child to stop (if it has not already) and return its Sampler.result()."""
    try:
        output, errors = child.communicate(b"stop\n", timeout=STOP_TIMEOUT_S)
    except BaseException:
        kill(child)
        raise
    return _result(child, output, errors)


def wait(child: subprocess.Popen, deadline_s: float) -> dict[str, Any]:
    """Let the child sample until ``deadline_s`` (monotonic) or until the target exits.

    Interrupting (KeyboardInterrupt) stops the child early and still returns its samples.
    """
    assert child.stdout is not None
    chunks: list[bytes] = []
    try:
        while True:
            remaining = deadline_s - time.monotonic()
            if remaining <= 0:
                break
            ready, _, _ = select.select([child.stdout], [], [], remaining)
            if ready:
                chunk = child.stdout.read(1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
    except KeyboardInterrupt:
        pass
    try:
        output, errors = child.communicate(b"stop\n", timeout=STOP_TIMEOUT_S)
    except BaseException:
        kill(child)
        raise
    return _result(child, b"".join(chunks) + (output or b""), errors)


def kill(child: subprocess.Popen) -> None:
    """Kill and reap the child (for error paths)."""
    if child.poll() is None:
        child.kill()
    child.communicate()


def _result(child: subprocess.Popen, output: bytes, errors: bytes) -> dict[str, Any]:
    if child.returncode != 0 or not output:
        raise ProbeUnavailableError(
            f"the gilwise sampler process failed (exit code {child.returncode}): "
            f"{(errors or b'').decode(errors='replace').strip()[-2000:]}"
        )
    return marshal.loads(output)
