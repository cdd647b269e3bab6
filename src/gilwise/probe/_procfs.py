"""Linux /proc readers for another process's threads: state, blocking syscall, CPU, memory.

Standard library only: the sampler child process imports this and nothing heavier. Every
reader returns None (or raises OSError) rather than guessing when /proc cannot answer.
"""

from __future__ import annotations

import contextlib
import os
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional

# Thread state codes; the order matches gilwise._model.THREAD_STATES. RUNNING and FUTEX are
# used only when the GIL's address is unknown: then a running thread may or may not hold
# the GIL and a futex may or may not be the GIL's.
# IDLE, JOIN_WAIT and RESULT_WAIT are never sampled: the build gives them to blocked samples
# whose Python stack tells the reason (see _reasons).
GIL_HELD, GIL_WAIT, NATIVE, IO_WAIT, LOCK_WAIT, UNKNOWN, RUNNING, FUTEX = range(8)
IDLE, JOIN_WAIT, RESULT_WAIT = 8, 9, 10
STATE_NAMES = (
    "gil_held",
    "gil_wait",
    "native",
    "io_wait",
    "lock_wait",
    "unknown",
    "running",
    "futex",
    "idle",
    "join_wait",
    "result_wait",
)

# Syscalls a thread blocks in while waiting for I/O, a child or a timer (sleep counts: the
# thread gives up the CPU and the GIL). Numbers per architecture.
_X86_64_FUTEX = (202, 449)  # futex, futex_waitv
_X86_64_IO = frozenset(
    {
        0,
        1,
        7,
        17,
        18,
        19,
        20,
        23,
        34,
        35,
        40,
        42,
        43,
        44,
        45,
        46,
        47,
        61,
        70,
        72,
        73,
        74,
        128,
        130,
        208,
        230,
        232,
        247,
        270,
        271,
        275,
        281,
        288,
        299,
        307,
        426,
        441,
    }
)
_AARCH64_FUTEX = (98, 449)
_AARCH64_IO = frozenset(
    {
        4,
        22,
        25,
        32,
        63,
        64,
        65,
        66,
        67,
        68,
        71,
        72,
        73,
        76,
        82,
        95,
        101,
        115,
        133,
        137,
        188,
        202,
        203,
        206,
        207,
        211,
        212,
        242,
        243,
        260,
        426,
        441,
    }
)
_SYSCALLS = {
    "x86_64": (_X86_64_FUTEX, _X86_64_IO),
    "amd64": (_X86_64_FUTEX, _X86_64_IO),
    "aarch64": (_AARCH64_FUTEX, _AARCH64_IO),
    "arm64": (_AARCH64_FUTEX, _AARCH64_IO),
}


def syscall_tables(machine: Optional[str] = None) -> tuple[tuple[int, ...], frozenset[int]]:
    """(futex syscall numbers, blocking I/O syscall numbers) for this CPU architecture.

    Raises OSError naming the architecture when gilwise has no table for it.
    """
    arch = (machine or os.uname().machine).lower()
    try:
        return _SYSCALLS[arch]
    except KeyError:
        raise OSError(
            f"gilwise knows the syscall numbers of x86_64 and aarch64 only, not {arch!r}"
        ) from None


def available() -> Optional[str]:
    """None if this platform has the /proc files the probe reads, else what is missing."""
    if not os.path.isdir("/proc/self/task"):
        return "/proc/<pid>/task (Linux procfs) is not available on this platform"
    if not os.path.exists(f"/proc/self/task/{os.getpid()}/syscall"):
        return (
            "/proc/<pid>/task/<tid>/syscall is not available "
            "(a kernel without CONFIG_HAVE_ARCH_TRACEHOOK)"
        )
    try:
        syscall_tables()
    except OSError as exc:
        return str(exc)
    return None


def list_threads(pid: int) -> list[int]:
    """Native thread ids of ``pid``; empty when the process is gone."""
    try:
        return [int(name) for name in os.listdir(f"/proc/{pid}/task")]
    except (FileNotFoundError, ProcessLookupError):
        return []


def thread_name(pid: int, tid: int) -> str:
    """The kernel's name of a thread (``comm``), or "" when the thread is gone."""
    try:
        with open(f"/proc/{pid}/task/{tid}/comm") as comm:
            return comm.read().strip()
    except OSError:
        return ""


def ptrace_scope() -> Optional[int]:
    """Yama's ptrace_scope (0-3), None when Yama is not active."""
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope") as scope:
            return int(scope.read().strip())
    except (OSError, ValueError):
        return None


def allow_tracer(tracer_pid: int) -> None:
    """Let ``tracer_pid`` read this process under Yama ptrace_scope=1 (prctl PR_SET_PTRACER).

    Does nothing when Yama is absent or scope 0. Raises OSError when the prctl fails.
    """
    if ptrace_scope() not in (1,):
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_ptracer = 0x59616D61
    if libc.prctl(pr_set_ptracer, tracer_pid, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_PTRACER, {tracer_pid}) failed: {os.strerror(err)}")


class ThreadReader:
    """Reads one thread's blocking syscall through a kept-open /proc file (cheap to repeat)."""

    __slots__ = ("_cpu_fd", "_fd", "_sched_path", "tid")

    def __init__(self, pid: int, tid: int, *, keep_sched_open: bool = True) -> None:
        """``keep_sched_open``: also keep schedstat open (two descriptors per thread); a
        process with very many threads opens it at each read instead."""
        self.tid = tid
        self._cpu_fd = -1
        self._sched_path = f"/proc/{pid}/task/{tid}/schedstat"
        path = f"/proc/{pid}/task/{tid}/syscall"
        self._fd = os.open(path, os.O_RDONLY)
        try:
            # The kernel checks ptrace permission on read, not on open: fail here, clearly.
            os.pread(self._fd, 256, 0)
        except PermissionError as exc:
            os.close(self._fd)
            raise PermissionError(exc.errno, f"cannot read {path}: {exc.strerror}") from None
        except OSError:
            pass  # the thread ended meanwhile: syscall() will say so
        if keep_sched_open:
            try:
                self._cpu_fd = os.open(self._sched_path, os.O_RDONLY)
            except OSError:
                self._cpu_fd = -1

    def sched_ns(self) -> Optional[tuple[int, int, int]]:
        """(nanoseconds run on a CPU, nanoseconds runnable but waiting for one, times it was
        put on a CPU) from schedstat; None when unreadable. The kernel adds a wait when the
        wait ends; the last count moves whenever the thread runs at all."""
        try:
            if self._cpu_fd >= 0:
                fields = os.pread(self._cpu_fd, 128, 0).split()
            else:
                with open(self._sched_path, "rb") as stat:
                    fields = stat.read().split()
            return int(fields[0]), int(fields[1]), int(fields[2])
        except (OSError, ValueError, IndexError):
            return None

    def syscall(self) -> Optional[tuple[int, int]]:
        """(syscall number, first argument) if blocked, (-1, 0) if running, None if gone.

        The kernel answers "running" for a thread that is on a CPU or runnable.
        """
        try:
            raw = os.pread(self._fd, 256, 0)
        except OSError:
            return None
        if not raw:
            return None
        if raw[:1] == b"r":  # "running"
            return (-1, 0)
        parts = raw.split(b" ", 2)
        try:
            number = int(parts[0])
            first_arg = int(parts[1], 16) if len(parts) > 1 else 0
        except ValueError:
            return (-2, 0)
        return (number, first_arg)

    def close(self) -> None:
        """Close once: a second call must not close a descriptor reused by someone else."""
        for fd in (self._fd, self._cpu_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = self._cpu_fd = -1


def offsets_of(blob: bytes, value: int, fmt: str = "<Q") -> list[int]:
    """Every offset, aligned to the field's size, where ``blob`` holds ``value`` as ``fmt``."""
    step = struct.calcsize(fmt)
    return [
        offset
        for offset in range(0, len(blob) - step + 1, step)
        if struct.unpack_from(fmt, blob, offset)[0] == value
    ]


def follow_chain(read, address: int, chain) -> Optional[int]:
    """Apply ``chain``'s (offset, size) reads from ``address`` (each to the value read
    before); None when a read fails. ``read(address, size)`` -> bytes."""
    value = address
    try:
        for offset, size in chain:
            raw = read(value + offset, size)
            if len(raw) < size:
                return None
            value = int.from_bytes(raw, "little")
    except (OSError, OverflowError, ValueError):
        return None
    return value


class MemoryReader:
    """Reads another process's memory through /proc/<pid>/mem (needs ptrace permission)."""

    __slots__ = ("_fd", "pid")

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)

    def read(self, address: int, size: int) -> bytes:
        """``size`` bytes at ``address`` (fewer at the end of a mapping); raises OSError."""
        return os.pread(self._fd, size, address)

    def read_until_unmapped(
        self, address: int, limit_bytes: int, chunk_bytes: int = 65536
    ) -> bytes:
        """Up to ``limit_bytes`` from ``address``, stopping at the first unreadable chunk."""
        chunks: list[bytes] = []
        total = 0
        while total < limit_bytes:
            try:
                chunk = os.pread(self._fd, min(chunk_bytes, limit_bytes - total), address + total)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        """Close once: a second call must not close a descriptor reused by someone else."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)
