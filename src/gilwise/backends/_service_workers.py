"""How the worker service starts its processes and learns how they ended.

Two kinds of process live here, both owned by the service's manager thread (_service):

- the zygote (_zygote): forked from the caller while it is single-threaded, else spawned
  as a fresh interpreter that preloads the caller's modules; ``Zygote`` is the caller's end
  of its control socket;
- a worker: forked by the zygote (start_method="forkserver") or spawned as a fresh
  interpreter (start_method="spawn"). ``Worker`` is the caller's record of one: its pipe,
  what it is doing, and how to signal it. A forked worker is the zygote's child, so only the
  zygote can wait() for it: its exit code arrives as a message from the zygote.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import socket
import sys
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Optional

from . import _zygote
from ._service_pipe import MessagePipe

if TYPE_CHECKING:
    import subprocess  # imported where a fresh interpreter starts: forking never needs it

    from ._service import Job, Lease

FORKSERVER, SPAWN = "forkserver", "spawn"


def how_it_died(returncode: Optional[int]) -> str:
    if returncode is None:
        return "it closed its pipe"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"it was killed by {name} (exit code {returncode})"
    return f"it exited with code {returncode}"


def _package_parent() -> str:
    # os.path, not pathlib: this module is imported on an executor's first task.
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))


def _python_command(bootstrap: str) -> list[str]:
    import subprocess

    flags = subprocess._args_from_interpreter_flags()  # type: ignore[attr-defined]
    return [sys.executable, *flags, "-c", bootstrap, _package_parent()]


def worker_command() -> list[str]:
    """The command of a spawned worker; its fd and the caller's pid are appended."""
    return _python_command(
        "import sys; sys.path.append(sys.argv[1]); "
        "from gilwise.backends._process_worker import main; "
        "main(int(sys.argv[2]), int(sys.argv[3]))"
    )


def zygote_command() -> list[str]:
    """The command of a spawned zygote; its fd and the caller's pid are appended."""
    return _python_command(
        "import sys; sys.path.append(sys.argv[1]); "
        "from gilwise.backends._zygote import main; "
        "main(int(sys.argv[2]), int(sys.argv[3]))"
    )


def _start_with_socket(command: list[str], kind: int) -> tuple[socket.socket, subprocess.Popen]:
    """Start ``command`` + [its end of a new socket pair, our pid]; return our end."""
    import subprocess

    ours, theirs = socket.socketpair(socket.AF_UNIX, kind)
    try:
        popen = subprocess.Popen(
            [*command, str(theirs.fileno()), str(os.getpid())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
        )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return ours, popen


def reap(pid: int, timeout_s: float) -> None:
    """Wait for our child ``pid`` for up to ``timeout_s``, then SIGKILL and wait."""
    deadline = time.monotonic() + timeout_s
    delay = 0.0005
    while True:
        try:
            done, _status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return  # already reaped (e.g. by a user's os.wait())
        if done:
            return
        if time.monotonic() >= deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            return
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


# When a thread of gilwise last ended (monotonic): a joined thread may still be ending in
# the kernel for a moment, and must not make the caller look multi-threaded.
thread_ended_at = -1e9


def may_fork_zygote() -> bool:
    """True when forking the caller now is safe: it runs exactly one OS thread (this one)."""
    if not hasattr(os, "fork") or threading.current_thread() is not threading.main_thread():
        return False
    if threading.active_count() != 1:
        return False
    # Native threads (e.g. a BLAS pool) are invisible to the threading module.
    recently = time.monotonic() - thread_ended_at < 1.0
    deadline = time.monotonic() + (0.5 if recently else 0.005)
    while True:
        try:
            if len(os.listdir("/proc/self/task")) == 1:
                return True
        except OSError:
            return False
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.001)


class Zygote:
    """The caller's end of the zygote's control socket, and how to stop the zygote."""

    def __init__(self, ctl: socket.socket, pid: int, popen: Optional[subprocess.Popen]) -> None:
        self.ctl = ctl
        self.pid = pid
        self.popen = popen  # None when forked from the caller
        self.ready = False
        self.forked = popen is None

    @classmethod
    def fork_from_caller(cls) -> Zygote:
        """Fork the (single-threaded) caller into a zygote. Raises OSError."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        caller_pid = os.getpid()
        try:
            pid = os.fork()
        except BaseException:
            ours.close()
            theirs.close()
            raise
        if pid == 0:  # pragma: no cover - the zygote; never returns
            ours.close()
            _zygote.run_forked_zygote(theirs, caller_pid)
        theirs.close()
        return cls(ours, pid, None)

    @classmethod
    def spawn(cls) -> Zygote:
        """Start a fresh interpreter that preloads the caller's modules. Raises OSError."""
        ours, popen = _start_with_socket(zygote_command(), socket.SOCK_SEQPACKET)
        setup = {
            "sys_path": list(sys.path),
            "modules": _zygote.preload_names(),
            "cwd": os.getcwd(),
        }
        with contextlib.suppress(OSError):  # if it died already, EOF says so
            ours.send(pickle.dumps(setup))
        return cls(ours, popen.pid, popen)

    def fork_worker(self, token: bytes, worker_end: socket.socket) -> None:
        socket.send_fds(self.ctl, [_zygote.FORK + token], [worker_end.fileno()])

    def signal(self, pid: int, signum: int) -> None:
        with contextlib.suppress(OSError):
            self.ctl.send(_zygote.SIGNAL + pickle.dumps((pid, signum)))

    def receive(self) -> Optional[tuple]:
        """One message, or None at EOF (the zygote died)."""
        try:
            data = self.ctl.recv(4096)
        except OSError:
            return None
        return pickle.loads(data) if data else None

    def stop(self, timeout_s: float) -> None:
        """EOF: the zygote SIGKILLs its workers and exits; wait for it (kill after
        ``timeout_s``)."""
        with contextlib.suppress(OSError):
            self.ctl.close()
        if self.popen is not None:
            import subprocess

            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        else:
            reap(self.pid, timeout_s)


class Worker:
    """The caller's record of one worker process. Touched only by the manager thread."""

    STARTING = "starting"  # asked the zygote to fork it: no pid yet
    BOOTING = "booting"  # running its setup (initializer)
    IDLE = "idle"
    BUSY = "busy"
    RETIRING = "retiring"  # its pipe was closed: it exits by itself
    DYING = "dying"  # killed (timeout, interrupt): nothing it sends counts

    __slots__ = (
        "boot_lease",
        "conn",
        "created_at",
        "deadline",
        "exit_deadline",
        "exit_killed",
        "flavor",
        "gone",
        "init_error",
        "job_started",
        "jobs",
        "kill_at",
        "last_used",
        "lease",
        "pid",
        "pidfd",
        "popen",
        "ready",
        "returncode",
        "state",
        "sys_path",
        "tasks_sent",
        "token",
        "zygote",
    )

    def __init__(self, conn: MessagePipe, flavor: tuple, boot_lease: Optional[Lease]) -> None:
        self.conn = conn
        self.flavor = flavor
        self.boot_lease = boot_lease
        self.state = self.STARTING
        self.ready = False  # READY received
        self.pid: Optional[int] = None
        self.pidfd: Optional[int] = None
        self.popen: Optional[subprocess.Popen] = None
        self.zygote: Optional[Zygote] = None
        self.token = b""
        self.jobs: deque[Job] = deque()  # sent, in order; jobs[0] is running
        self.lease: Optional[Lease] = None  # whose jobs it runs now
        self.tasks_sent = 0
        self.deadline: Optional[float] = None
        self.kill_at: Optional[float] = None
        self.job_started = 0.0
        self.last_used = 0.0
        self.created_at = time.monotonic()
        self.gone = False  # EOF or pidfd seen
        self.returncode: Any = None
        self.exit_deadline: Optional[float] = None
        self.exit_killed = False
        self.init_error: Optional[str] = None
        self.sys_path: list[str] = []  # as last sent to it

    @classmethod
    def spawn(cls, setup: bytes, flavor: tuple, boot_lease: Optional[Lease]) -> Worker:
        parent_end, popen = _start_with_socket(worker_command(), socket.SOCK_STREAM)
        worker = cls(MessagePipe(parent_end.detach()), flavor, boot_lease)
        worker.popen = popen
        worker.pid = popen.pid
        worker.state = cls.BOOTING
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is not None:
            try:
                worker.pidfd = pidfd_open(popen.pid)
            except OSError:  # kernel older than 5.3: EOF on the pipe tells us instead
                worker.pidfd = None
        with contextlib.suppress(OSError):  # if it died already, its pipe or pidfd says so
            worker.conn.send_bytes(setup)
        return worker

    @classmethod
    def fork(
        cls, zygote: Zygote, token: bytes, setup: bytes, flavor: tuple, boot_lease: Optional[Lease]
    ) -> Worker:
        parent_end, child_end = socket.socketpair()
        try:
            zygote.fork_worker(token, child_end)
        except BaseException:
            parent_end.close()
            raise
        finally:
            child_end.close()
        worker = cls(MessagePipe(parent_end.detach()), flavor, boot_lease)
        worker.zygote = zygote
        worker.token = token
        with contextlib.suppress(OSError):  # waits in the socket until the fork reads it
            worker.conn.send_bytes(setup)
        return worker

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the worker, never to a process that reused its pid."""
        if self.popen is not None:
            if self.popen.returncode is None:
                with contextlib.suppress(OSError):
                    self.popen.send_signal(signum)
        elif self.zygote is not None and self.pid is not None:
            self.zygote.signal(self.pid, signum)  # the zygote has not reaped it yet

    def spawned_returncode(self) -> Optional[int]:
        """A spawned worker's exit code, waiting briefly (it closed its pipe: exiting)."""
        assert self.popen is not None
        import subprocess

        try:
            return self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:  # closed its pipe but lives on: make it stop
            self.popen.kill()
            self.popen.wait()
            return None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.close()
        if self.pidfd is not None:
            with contextlib.suppress(OSError):
                os.close(self.pidfd)
            self.pidfd = None
