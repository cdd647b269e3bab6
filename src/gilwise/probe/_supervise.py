"""``gilwise profile``'s supervisor: the report is written whichever way the program ends.

A program can end without running another line of Python: os._exit, a segfault, SIGKILL,
or threads that keep it alive after Ctrl-C. So ``gilwise profile`` forks before running it:

    shell
      `-- gilwise profile: the SUPERVISOR (the pid the shell waits for). Waits, forwards
          |  signals, and writes the report itself when the program could not.
          `-- the PROGRAM (forked): runs the script under the monitor and, on a normal end
              |  (return, exception, sys.exit, Ctrl-C), writes the report as before.
              `-- the SAMPLER: samples the program. If the program ends without asking
                  for the samples, it writes them to the supervisor's rescue pipe.

The program tells the supervisor what only it knows over a status pipe (length-prefixed
marshal dicts): the sampler's pid and stack source after the start, thread names when it
gives up on purpose, "writing" and "done" around its own report.

Exit code: the program's. Killed by a signal: 128 + the signal's number, as a shell
reports it (a segfault exits 139), and the report's ``end_reason`` names the signal.
Ctrl-C: the program gets KeyboardInterrupt in its main thread as usual (a Ctrl-C at the
terminal reaches it directly, a SIGINT sent to gilwise's pid is forwarded); if it has not
ended INTERRUPT_GRACE_S later, the supervisor kills it (and its child processes), writes
the report from the samples and exits 130. Signals that arrive while the supervisor writes
a report wait until it is written (they are blocked; the write is bounded by the data).
"""

from __future__ import annotations

import contextlib
import marshal
import os
import select
import signal
import struct
import sys
import threading
import time
from typing import Any, Callable, Optional

# After the first Ctrl-C (or SIGTERM/SIGHUP) the program has this long to end by itself.
INTERRUPT_GRACE_S = 0.6
# ... plus up to this long while it is writing its report.
WRITE_GRACE_S = 2.0
# How long the sampler may take to hand over its samples after the program ended.
RESCUE_TIMEOUT_S = 10.0
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# si_code of a signal the kernel sent to the whole foreground process group (a Ctrl-C at
# the terminal): the program got it too, so it is not forwarded.
SI_KERNEL = 0x80
_POLL_S = 0.05
_HEADER = struct.Struct("<I")


class Link:
    """The program's end of the status pipe and the rescue pipe (program side only)."""

    def __init__(self, status_fd: int, rescue_fd: int) -> None:
        self.status_fd = status_fd
        self.rescue_fd = rescue_fd

    def send(self, message: dict[str, Any]) -> None:
        """Tell the supervisor something (never raises: the supervisor may be gone)."""
        data = marshal.dumps(message)
        with contextlib.suppress(OSError):
            os.write(self.status_fd, _HEADER.pack(len(data)) + data)

    def close_rescue(self) -> None:
        """The sampler has its copy of the rescue pipe: drop ours (children must not get it)."""
        if self.rescue_fd >= 0:
            os.close(self.rescue_fd)
            self.rescue_fd = -1


def _set_parent_death_signal() -> None:
    """Die with the supervisor (a SIGKILLed gilwise must not leave the program running)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def supervise(
    run_program: Callable[[Link], int], write_rescued: Callable[[dict[str, Any]], int]
) -> int:
    """Fork; in the child, return ``run_program(link)``; in the parent, supervise and
    return the exit code to use, with SIGINT, SIGTERM and SIGHUP still blocked. Either way
    the caller is expected to exit with the code at once (``gilwise profile`` does).

    ``write_rescued(info)`` is called in the parent when the program ended without writing
    its report: ``info`` has "result" (the sampler's samples or None), "exit_code",
    "end_reason" and what the program sent ("names", "stacks_used", ...); it writes the
    report and returns the exit code.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    status_r, status_w = os.pipe()
    rescue_r, rescue_w = os.pipe()
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
    supervisor_pid = os.getpid()
    pid = os.fork()
    if pid == 0:
        os.close(status_r)
        os.close(rescue_r)
        _set_parent_death_signal()
        # threading keeps the parent's native id for the main thread after a fork (3.9-3.11):
        # thread names are matched by native id, so correct it.
        set_native_id = getattr(threading.current_thread(), "_set_native_id", None)
        if set_native_id is not None:
            set_native_id()
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        if os.getppid() != supervisor_pid:
            os._exit(1)  # the supervisor died before we could ask to die with it
        # Returned like any program's end: the caller exits with it, through the
        # interpreter's own shutdown (the program's threads joined, its atexit handlers run).
        return run_program(Link(status_w, rescue_w))
    os.close(status_w)
    os.close(rescue_w)
    # The signals stay blocked after we return: the caller exits with the code, and a
    # Ctrl-C that arrives meanwhile must not turn a written report into a traceback.
    try:
        return _Supervisor(pid, status_r, rescue_r, write_rescued).run()
    finally:
        os.close(status_r)
        os.close(rescue_r)


class _Supervisor:
    def __init__(
        self,
        pid: int,
        status_fd: int,
        rescue_fd: int,
        write_rescued: Callable[[dict[str, Any]], int],
    ) -> None:
        self.pid = pid
        self.status_fd = status_fd
        self.rescue_fd = rescue_fd
        self.write_rescued = write_rescued
        self.info: dict[str, Any] = {}
        self.buffer = b""
        self.interrupted: Optional[int] = None
        self.interrupted_at = 0.0
        self.killed = False
        self.descendants: set[int] = set()
        os.set_blocking(status_fd, False)
        try:
            self.pidfd: Optional[int] = os.pidfd_open(pid)
        except (AttributeError, OSError):
            self.pidfd = None

    def run(self) -> int:
        status = self._wait()
        self._read_status()
        if self.pidfd is not None:
            os.close(self.pidfd)
        code = os.waitstatus_to_exitcode(status)
        if code < 0:
            signum = -code
            code = 128 + signum
            reason = f"signal {signal.Signals(signum).name}"
        else:
            reason = None
        if self.killed and self.interrupted is not None:
            code = 128 + self.interrupted
            reason = signal.Signals(self.interrupted).name
        if self.info.get("done"):
            return code
        reason = self.info.get("end_reason") or reason or "ended before its report was written"
        if reason.startswith("signal "):
            print(f"gilwise profile: the program was killed by {reason[7:]}", file=sys.stderr)
        rescued = dict(self.info)
        rescued["told"] = bool(self.info.get("end_reason"))  # the program said why it ended
        rescued.update(
            result=self._rescue(), exit_code=code, end_reason=reason, program_pid=self.pid
        )
        return self.write_rescued(rescued)

    # -- waiting -------------------------------------------------------------------------

    def _wait(self) -> int:
        """Wait for the program to end (forwarding signals, enforcing the Ctrl-C grace);
        returns its wait status."""
        while True:
            waits = [self.status_fd] + ([self.pidfd] if self.pidfd is not None else [])
            select.select(waits, [], [], _POLL_S)
            self._read_status()
            while True:
                info = signal.sigtimedwait(FORWARDED, 0)
                if info is None:
                    break
                self._on_signal(info)
            if self.interrupted is not None:
                self.descendants.update(self._tree())
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                if self.interrupted is not None:
                    # Interrupted: nothing the program started outlives it (a forked worker
                    # left behind when it gave up on its threads, say).
                    self._kill(self.descendants)
                return status
            if self.interrupted is not None and not self.killed and self._grace_over():
                self._kill([self.pid, *self._tree()])
                self.killed = True

    def _on_signal(self, info: Any) -> None:
        if info.si_code != SI_KERNEL:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, info.si_signo)
        if self.interrupted is None:
            self.interrupted = info.si_signo
            self.interrupted_at = time.monotonic()

    def _grace_over(self) -> bool:
        if self.info.get("done"):
            return False
        grace = INTERRUPT_GRACE_S + (WRITE_GRACE_S if self.info.get("writing") else 0.0)
        return time.monotonic() - self.interrupted_at > grace

    def _tree(self) -> list[int]:
        """The program's descendants, all but the sampler (which must hand over its samples)."""
        from gilwise.probe._children import child_pids

        keep = self.info.get("sampler_pid")
        found: list[int] = []
        pending = [self.pid]
        while pending:
            for child in child_pids(pending.pop()):
                if child != keep and child not in found:
                    found.append(child)
                    pending.append(child)
        return found

    @staticmethod
    def _kill(pids: Any) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _read_status(self) -> None:
        while True:
            try:
                chunk = os.read(self.status_fd, 1 << 16)
            except BlockingIOError:
                break
            if not chunk:
                break
            self.buffer += chunk
        while len(self.buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self.buffer)
            if len(self.buffer) < _HEADER.size + size:
                break
            message = marshal.loads(self.buffer[_HEADER.size : _HEADER.size + size])
            self.buffer = self.buffer[_HEADER.size + size :]
            if isinstance(message, dict):
                self.info.update(message)

    def _rescue(self) -> Optional[dict[str, Any]]:
        """The sampler's samples from the rescue pipe (None if it had none to give)."""
        chunks: list[bytes] = []
        deadline = time.monotonic() + RESCUE_TIMEOUT_S
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([self.rescue_fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(self.rescue_fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
        if not chunks:
            return None
        try:
            result = marshal.loads(b"".join(chunks))
        except (EOFError, ValueError, TypeError):
            return None
        return result if isinstance(result, dict) else None
