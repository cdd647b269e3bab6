"""The loop a process worker runs: receive pickled work, run it, send back each outcome.

A worker is either forked by the worker service's zygote (``run_forked``, the default) or
started as a fresh interpreter, ``python -c`` with the worker's end of a socket pair and the
parent's pid (``main``, start_method="spawn"). Either way it exits when its pipe reaches EOF
(the caller closed it or died) and, on Linux, by PR_SET_PDEATHSIG when its parent (the
zygote, or the caller for a spawned worker) dies, so no worker is orphaned. It ignores
SIGINT: Ctrl-C goes to the whole process group, and the caller decides what stops.

A worker is reused: by later tasks of the same executor and by later executors (see
_service). Module globals that one task changes stay changed for the next task on that
worker, as in every pool that reuses its workers.

Wire protocol on the pipe (one message per ``send_bytes``):
  caller -> worker: a pickled setup dict once (sys.path, cwd, the pickled initializer);
    then ``CALL`` + pickled ``(fn, args, kwargs)``, or ``BATCH`` + pickled
    ``(fn, [(args, kwargs), ...], flush_each)``, or ``SYS_PATH`` + the caller's new
    sys.path (no reply), sent before a job when it changed;
  worker -> caller: ``READY`` once set up (or ``INIT_FAILED`` + the pickled traceback text,
    then it exits); per CALL one encoded outcome (see _wire); per BATCH one or more
    ``BATCH`` + pickled list of encoded outcomes, in call order, sent after the call that
    ends ``BATCH_FLUSH_S`` or more after the previous send (so the outcome of a call that
    takes that long alone is never held back), or after every call when ``flush_each`` (which
    the caller asks for when calls have a timeout, to know when each one started); or
    ``BATCH_FAILED`` + one encoded outcome for every call when the batch cannot be unpickled.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import sys
import time
import traceback
from typing import Any, Callable, Optional

from ._service_pipe import MessagePipe

READY = b"R"
INIT_FAILED = b"I"
CALL = b"T"
BATCH = b"B"
BATCH_FAILED = b"X"
SYS_PATH = b"P"
# A batch's outcomes are sent at least this often, so tiny calls cost one message per many
# calls, yet at most this much finished work is lost (and run again) if the worker dies.
BATCH_FLUSH_S = 0.005
# Exit code of a worker whose initializer raised.
INITIALIZER_FAILED_EXIT = 3
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int, signum: int = signal.SIGKILL) -> None:
    """Get ``signum`` (default SIGKILL) when the parent dies (Linux); exit now if it is
    already gone."""
    if not ask_for_death_signal(parent_pid, signum):
        os._exit(1)


def ask_for_death_signal(parent_pid: int, signum: int) -> bool:
    """Get ``signum`` when the parent dies (Linux); False if it is already gone."""
    if sys.platform.startswith("linux"):
        # If prctl cannot be had, EOF on the pipe still ends the worker when the parent goes.
        with contextlib.suppress(OSError, AttributeError, ImportError, TypeError):
            _prctl()(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0)
    return os.getppid() == parent_pid  # else the parent died before prctl took effect


_PRCTL: Optional[Callable[..., Any]] = None  # made once; a forked worker inherits it


def _prctl() -> Callable[..., Any]:
    """libc's prctl, callable with ints. Through the C half of ctypes alone (~1 ms to
    import) where it offers what is needed: ``import ctypes`` takes 5-15 ms, paid by the
    zygote before it could fork a new pool's second worker, and by each worker after its
    first task. Any surprise there (the private module changed): ctypes itself."""
    global _PRCTL
    if _PRCTL is None:
        _PRCTL = _load_prctl()
    return _PRCTL


def _load_prctl() -> Callable[..., Any]:
    try:
        import _ctypes

        class _Int(_ctypes._SimpleCData):  # type: ignore[name-defined,misc]
            _type_ = "i"

        class _Function(_ctypes.CFuncPtr):  # type: ignore[misc]
            _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
            _restype_ = _Int

        return _Function(_ctypes.dlsym(_ctypes.dlopen(None, 0), "prctl"))  # type: ignore[arg-type,no-any-return]
    except Exception:  # the public way below
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl  # type: ignore[no-any-return]


def _dumps(obj: object) -> bytes:
    """Plain pickle where it works (fast, and cloudpickle stays unimported); cloudpickle for
    what only it can send back (a lambda, a class made in a task). Plain pickle fails loudly
    rather than wrongly for those: it pickles by reference, and the lookup fails here."""
    try:
        return pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
    except Exception:
        import cloudpickle

        return cloudpickle.dumps(obj)


def _set_up(conn: MessagePipe) -> bool:
    """Apply the setup message; False if the caller is gone or the initializer failed."""
    try:
        setup = pickle.loads(conn.recv_bytes())
    except EOFError:
        return False
    sys.path[:] = setup["sys_path"]
    cwd = setup.get("cwd")
    if cwd:
        # The caller's directory may be gone; tasks then run where the worker is.
        with contextlib.suppress(OSError):
            os.chdir(cwd)
    initializer = setup.get("initializer")
    if initializer is not None:
        try:
            function, initargs = pickle.loads(initializer)
            function(*initargs)
        except BaseException:  # whatever the initializer raised is reported to the caller
            with contextlib.suppress(OSError):
                conn.send_bytes(INIT_FAILED + pickle.dumps(traceback.format_exc()))
            return False
    return True


def _run_batch(conn: MessagePipe, message: memoryview) -> None:
    from ._wire import encode_exception, run_call

    try:
        fn, calls, flush_each = pickle.loads(message)
    except BaseException as exc:  # e.g. the function's module cannot be imported here
        conn.send_bytes(BATCH_FAILED + encode_exception(exc, dumps=_dumps))
        return
    ready: list[bytes] = []
    flushed = time.monotonic()
    last = len(calls) - 1
    for position, (args, kwargs) in enumerate(calls):
        ready.append(run_call(fn, args, kwargs, dumps=_dumps))
        now = time.monotonic()
        if flush_each or position == last or now - flushed >= BATCH_FLUSH_S:
            conn.send_bytes(BATCH + pickle.dumps(ready, pickle.HIGHEST_PROTOCOL))
            ready = []
            flushed = now


def serve(conn: MessagePipe, protect: Optional[Callable[[], None]] = None) -> int:
    """Set up, then run work until EOF; return the exit code.

    ``protect`` (die_with_parent for a forked worker) runs right after READY was sent when
    it is cheap (prctl already made: inherited from the zygote), else after the first
    message: making it takes a millisecond that would otherwise delay a new pool's first
    result. Until then EOF
    on the pipe (the caller gone) still ends the worker, and the zygote kills its workers
    when it ends."""
    try:
        return _serve(conn, protect)
    except (BrokenPipeError, ConnectionResetError):
        return 0  # the caller is gone (it ended, or stopped the service): nothing to say


def _serve(conn: MessagePipe, protect: Optional[Callable[[], None]]) -> int:
    if not _set_up(conn):
        return INITIALIZER_FAILED_EXIT
    from ._wire import execute

    conn.send_bytes(READY)
    if protect is not None and _PRCTL is not None:
        protect()
        protect = None
    while True:
        try:
            message = conn.recv_bytes()
        except EOFError:
            return 0
        body = memoryview(message)[1:]
        kind = message[:1]
        if kind == BATCH:
            _run_batch(conn, body)
        elif kind == SYS_PATH:  # the caller's sys.path changed: later imports look there
            sys.path[:] = pickle.loads(body)
        else:
            conn.send_bytes(execute(body, dumps=_dumps))
        del message, body
        if protect is not None:
            protect()
            protect = None


def run_forked(fd: int, zygote_pid: int) -> int:
    """Entry of a worker forked by the zygote (already ignoring SIGINT)."""
    os.set_inheritable(fd, False)  # a subprocess started by a task must not hold the pipe
    return serve(MessagePipe(fd), protect=lambda: die_with_parent(zygote_pid))


def main(fd: int, parent_pid: int) -> None:
    """Entry of a spawned worker (``python -c``)."""
    die_with_parent(parent_pid)
    # Ctrl-C goes to the whole process group; the parent decides what stops, not the worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.set_inheritable(fd, False)
    sys.exit(serve(MessagePipe(fd)))
