"""Start, stop and collect the sampler child process.

Used by ``monitor`` (the child samples its parent) and by ``gilwise profile --pid`` (the
child samples another process, so the CLI process never changes its own scheduling).

Two ways to start it, the same protocol afterwards (see _sampler.serve):

- forked from this process (about 1-3 ms): when this process has a single thread, so no
  lock can be held by a thread the child would not have, and a small memory (FORK_MAX_RSS_BYTES):
  while the child lives, each page this process writes is copied once (copy-on-write,
  ~5 us a page on a 2-core VM), so a big process would pay more than the fresh start saves;
- a fresh interpreter, ``python -S -m gilwise.probe._sampler`` (40-60 ms: interpreter start
  and imports), otherwise.

The forked child keeps only its pipes (and the supervisor's rescue pipe), gets /dev/null for
stdin/stdout, default signal handlers, a frozen garbage collector (it never scans the
parent's objects, so it never copies their pages) and leaves with os._exit: nothing of the
parent's (atexit handlers, buffered output) runs twice.
"""

from __future__ import annotations

import contextlib
import gc
import marshal
import os
import select
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Optional, Union

from gilwise.errors import ProbeUnavailableError
from gilwise.probe import _procfs, _sampler
from gilwise.probe._sampler import SamplerConfig

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0
# Fork the sampler only from a process this small (resident memory); see the module text.
# At ~5 us a copied page, a process rewriting all of 64 MiB while sampled pays about the
# fresh interpreter's start; typical scripts rewrite a fraction of theirs.
FORK_MAX_RSS_BYTES = 64 << 20
# "auto": fork when safe, else a fresh interpreter; "fork" / "spawn" force one (tests).
START_METHODS = ("auto", "fork", "spawn")
start_method = "auto"

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


def start(config: SamplerConfig, *, allow_tracing: bool = True) -> SamplerChild:
    """Start a sampler child for ``config.pid``; returns once it has taken its first sample.

    ``allow_tracing``: the target is this process, so let the child read it under Yama
    ptrace_scope=1. Raises ProbeUnavailableError (saying what to do) when the child cannot
    read the target; the child is reaped before raising.
    """
    child: Optional[SamplerChild] = None
    if start_method == "fork" or (start_method == "auto" and fork_is_safe()):
        child = _fork(config, allow_tracing)
    if child is None:
        child = _spawn(config, allow_tracing)
    try:
        assert child.stdout is not None
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


def fork_is_safe() -> bool:
    """Whether this process can fork its sampler: one thread (the main one, which alone may
    reset signal handlers in the child), small memory, a fork()."""
    if not hasattr(os, "fork") or threading.current_thread() is not threading.main_thread():
        return False
    try:
        if len(os.listdir("/proc/self/task")) != 1:
            return False
        with open("/proc/self/statm", "rb") as statm:
            resident_pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return False
    return resident_pages * os.sysconf("SC_PAGE_SIZE") <= FORK_MAX_RSS_BYTES


def _spawn(config: SamplerConfig, allow_tracing: bool) -> subprocess.Popen:
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
        assert child.stdin is not None
        child.stdin.write(marshal.dumps(config.to_dict()))
    except BaseException:
        kill(child)
        raise
    return child


def _fork(config: SamplerConfig, allow_tracing: bool) -> Optional[ForkedSampler]:
    """The sampler as a forked child (None when fork() refuses: a sub-interpreter, say)."""
    # Under Yama ptrace_scope=1 the child may read us only after we name it (prctl), so it
    # waits for a go byte; otherwise it starts at once.
    wait_for_go = allow_tracing and _procfs.ptrace_scope() == 1
    with contextlib.suppress(ImportError):
        import resource  # noqa: F401  (the child's raise_file_limit: imported once, here)
    control_r, control_w = os.pipe()
    data_r, data_w = os.pipe()
    errors_r, errors_w = os.pipe()
    # No signal handler may run in the child before it is a sampler (a KeyboardInterrupt
    # there would unwind into the program's own code in a second process): signals wait
    # until the child has reset its handlers, and in the parent until fork() returns.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        pid = os.fork()
    except (OSError, RuntimeError):
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for fd in (control_r, control_w, data_r, data_w, errors_r, errors_w):
            os.close(fd)
        return None
    if pid == 0:
        _forked_main(config, control_r, data_w, errors_w, wait_for_go, mask)  # never returns
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    for fd in (control_r, data_w, errors_w):
        os.close(fd)
    child = ForkedSampler(pid, control_w, data_r, errors_r)
    try:
        if wait_for_go:
            _procfs.allow_tracer(pid)
            assert child.stdin is not None
            child.stdin.write(b"G")
    except BaseException:
        kill(child)
        raise
    return child


def _forked_main(
    config: SamplerConfig,
    control_fd: int,
    data_fd: int,
    errors_fd: int,
    wait_for_go: bool,
    mask: Any,
) -> None:
    """The forked child: become a clean sampler process, serve, leave without cleanup."""
    code = 1
    try:
        gc.freeze()  # never scan (and so never copy) the parent's objects
        # A program that closed its stdio may have given our pipes the numbers 0-2, which
        # become /dev/null and the error pipe below: move ours above them first.
        control_fd, data_fd, errors_fd = (
            _above_stdio(fd) for fd in (control_fd, data_fd, errors_fd)
        )
        if config.rescue_fd is not None and config.rescue_fd < 3:
            config = config.replace(rescue_fd=_above_stdio(config.rescue_fd))
        devnull = _above_stdio(os.open(os.devnull, os.O_RDWR))
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.dup2(errors_fd, 2)
        keep = {0, 1, 2, control_fd, data_fd}
        if config.rescue_fd is not None:
            keep.add(config.rescue_fd)
        # Nothing of the parent's stays open here: a pipe or socket the parent closes must
        # reach its end for whoever reads it, not wait for the sampler.
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd not in keep:
                with contextlib.suppress(OSError):  # the listing's own, already closed
                    os.close(fd)
        for signum in signal.valid_signals():
            try:
                handler = signal.getsignal(signum)
                if handler not in (signal.SIG_DFL, signal.SIG_IGN, None):
                    signal.signal(signum, signal.SIG_DFL)
            except (OSError, ValueError):
                pass
        # Sampling is latency-sensitive; the profiled program's signals are not ours (nor
        # its event loop's wake-up descriptor, closed above).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.set_wakeup_fd(-1)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        _name_this_process(b"gilwise-sampler")  # ps/top: not a second copy of the program
        if wait_for_go and os.read(control_fd, 1) != b"G":
            code = 0  # the parent went away before we started
        else:
            # Not closed here: the parent's reader must see the end of it only after an
            # error's traceback is written (os._exit closes it; serve flushes).
            code = _sampler.serve(config, control_fd, os.fdopen(data_fd, "wb"))
    except BaseException:
        try:
            import traceback

            os.write(2, traceback.format_exc().encode(errors="replace"))
        except BaseException:
            pass
    finally:
        os._exit(code)


def _above_stdio(fd: int) -> int:
    """``fd``, or a copy of it numbered 3 or more (the copies below 3 are overwritten later)."""
    while fd < 3:
        fd = os.dup(fd)
    return fd


def _name_this_process(name: bytes) -> None:
    """Set the kernel's name of this process (``comm``, what ps -e and top show); best effort."""
    ctypes = sys.modules.get("ctypes")  # loaded by the GIL search; never imported here
    if ctypes is None:
        return
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(15, name, 0, 0, 0)  # PR_SET_NAME


class ForkedSampler:
    """A forked sampler child, with the part of subprocess.Popen's interface used here:
    ``pid``, ``stdin``/``stdout``/``stderr`` (unbuffered binary pipes), ``returncode``,
    ``poll``, ``kill`` and ``communicate``."""

    def __init__(self, pid: int, control_fd: int, data_fd: int, errors_fd: int) -> None:
        self.pid = pid
        self.returncode: Optional[int] = None
        self.stdin: Optional[Any] = os.fdopen(control_fd, "wb", buffering=0)
        self.stdout: Optional[Any] = os.fdopen(data_fd, "rb", buffering=0)
        self.stderr: Optional[Any] = os.fdopen(errors_fd, "rb", buffering=0)

    def poll(self) -> Optional[int]:
        if self.returncode is None:
            self._reap(os.WNOHANG)
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def communicate(
        self, input: Optional[bytes] = None, timeout: Optional[float] = None
    ) -> tuple[bytes, bytes]:
        """Send ``input``, close stdin, read stdout and stderr to their end, reap the child.
        Raises subprocess.TimeoutExpired (the child left running) after ``timeout`` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if self.stdin is not None:
            try:
                if input:
                    self.stdin.write(input)
            except BrokenPipeError:
                pass
            finally:
                self.stdin.close()
                self.stdin = None
        chunks: dict[Any, list[bytes]] = {}
        open_streams = [s for s in (self.stdout, self.stderr) if s is not None and not s.closed]
        for stream in open_streams:
            chunks[stream] = []
        while open_streams:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise subprocess.TimeoutExpired(f"gilwise sampler {self.pid}", timeout or 0.0)
            ready, _, _ = select.select(open_streams, [], [], remaining)
            for stream in ready:
                chunk = stream.read(1 << 16)
                if chunk:
                    chunks[stream].append(chunk)
                else:
                    open_streams.remove(stream)
        output = b"".join(chunks.get(self.stdout, []))
        errors = b"".join(chunks.get(self.stderr, []))
        for stream in (self.stdout, self.stderr):
            if stream is not None:
                stream.close()
        if self.returncode is None:
            self._reap(0)
        return output, errors

    def _reap(self, options: int) -> None:
        try:
            pid, status = os.waitpid(self.pid, options)
        except ChildProcessError:
            self.returncode = 0  # reaped by someone else (a SIGCHLD handler): as Popen does
            return
        if pid == self.pid:
            self.returncode = os.waitstatus_to_exitcode(status)


SamplerChild = Union[subprocess.Popen, ForkedSampler]


def stop(child: SamplerChild) -> dict[str, Any]:
    """Tell the child to stop (if it has not already) and return its Sampler.result()."""
    try:
        output, errors = child.communicate(b"stop\n", timeout=STOP_TIMEOUT_S)
    except BaseException:
        kill(child)
        raise
    return _result(child, output, errors)


def wait(child: SamplerChild, deadline_s: float) -> dict[str, Any]:
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


def kill(child: SamplerChild) -> None:
    """Kill and reap the child (for error paths)."""
    if child.poll() is None:
        child.kill()
    child.communicate()


def _result(child: SamplerChild, output: bytes, errors: bytes) -> dict[str, Any]:
    if child.returncode != 0 or not output:
        raise ProbeUnavailableError(
            f"the gilwise sampler process failed (exit code {child.returncode}): "
            f"{(errors or b'').decode(errors='replace').strip()[-2000:]}"
        )
    return marshal.loads(output)
