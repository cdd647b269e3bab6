"""The zygote: one single-threaded process per program that forks process workers.

Forking a worker from it takes milliseconds and the worker starts with the program's
imports already done, where a fresh interpreter takes 30 ms plus every import again. The
zygote is started once by the worker service (_service) in one of two ways:

- **forked from the caller** when the caller has exactly one OS thread at that moment (no
  lock can be held by a thread the copy lacks, so this fork is as safe as any): the zygote
  is then a snapshot of the program with every module it had imported, ``__main__``
  included, like multiprocessing's "fork" but done once. Of the file descriptors the
  program had open then it keeps files, ttys and devices (a module-level log file works in
  workers) but lets go of pipes and sockets (each becomes /dev/null, so the number stays
  taken): the zygote lives until idle_timeout_s after the last executor closed, and a
  child process of the program must see EOF on its stdin, a listening port be free again,
  when the program closes them.
- **spawned** as a fresh interpreter otherwise (the caller has threads; forking it could
  copy a lock held by another thread): it imports, in order, every module the caller had
  imported by name (``sys.modules`` entries whose spec names them; multiprocessing's
  forkserver "preload"), skipping any that fails. ``__main__`` is not run (its top level
  could start the program's work again, as a script without an
  ``if __name__ == "__main__"`` guard would): cloudpickle sends functions and classes
  defined in the main script by value, and the modules it imported are preloaded.

A module the program imports after the zygote started is imported by each worker when a
task first needs it (cloudpickle pickles module-level functions by reference).

The zygote ignores SIGINT (Ctrl-C goes to the process group; the caller decides), dies with
the caller (PR_SET_PDEATHSIG, and EOF on its control socket: it then SIGKILLs its workers
and exits), and reaps its workers, reporting each exit code to the caller, which cannot
wait() for a grandchild.

Control socket (SOCK_SEQPACKET, one message each), caller -> zygote:
  (spawned zygote only) first a pickled setup dict: sys_path, modules, cwd;
  ``FORK`` + 8-byte token, with the worker's socket end attached (SCM_RIGHTS);
  ``SIGNAL`` + pickled ``(pid, signum)`` for one of its workers.
zygote -> caller, pickled tuples: ("ready", imported, failed), ("forked", token, pid),
  ("fork-failed", token, error text), ("exited", pid, returncode).
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import pickle
import select
import signal
import socket
import stat
import sys
import traceback
from typing import Any, Callable, Optional

FORK = b"F"
SIGNAL = b"K"
_SETUP_MAX_BYTES = 4 * 1024 * 1024
_MESSAGE_MAX_BYTES = 64 * 1024
# Set in the zygote: the worker service refuses to start there (a preloaded module that
# runs gilwise work at import would otherwise start a zygote inside the zygote).
in_zygote = False


def preload_names() -> list[str]:
    """The caller's modules that a fresh interpreter can import by the same name, in the
    order they were imported."""
    names = []
    for name, module in list(sys.modules.items()):
        if name in ("__main__", "__mp_main__") or module is None:
            continue
        spec = getattr(module, "__spec__", None)
        # An alias (os.path is posixpath) or a module made at run time is skipped; the
        # module it aliases is listed under its own name.
        if spec is None or getattr(spec, "name", None) != name:
            continue
        names.append(name)
    return names


def _send(ctl: socket.socket, message: tuple) -> None:
    ctl.send(pickle.dumps(message))


def _reap(ctl: socket.socket, children: set[int]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        children.discard(pid)
        _send(ctl, ("exited", pid, os.waitstatus_to_exitcode(status)))


def _fork_worker(ctl: socket.socket, wake_fds: tuple[int, int], worker_fd: int) -> int:
    zygote_pid = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:  # the worker: never return into the zygote's loop
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for fd in wake_fds:
            os.close(fd)
        ctl.close()
        global in_zygote
        in_zygote = False  # a task may use gilwise's own process backend
        gc.unfreeze()
        from ._process_worker import run_forked

        code = run_forked(worker_fd, zygote_pid)
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)
    return 0  # pragma: no cover - never reached


def serve(ctl: socket.socket, protect: Optional[Callable[[], bool]] = None) -> None:
    """The zygote's loop: fork workers, reap them, until EOF on ``ctl``; never returns.

    ``protect`` (ask_for_death_signal, for a zygote forked from the caller) runs once the
    requests already queued are served: the first worker is then not held up by the
    millisecond it takes (its prctl made: the workers forked after it inherit that); until
    then EOF on ``ctl`` ends the zygote as usual."""
    global in_zygote
    in_zygote = True
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    children: set[int] = set()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # wakes the select below
    # The zygote's death signal (the caller died): end like at EOF, killing the workers. A
    # worker protects itself only after its first task (see _process_worker.serve).
    caller_gone: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: caller_gone.append(signum))
    gc.freeze()  # workers then do not copy-on-write the zygote's objects on each collection
    try:
        while True:
            if protect is not None and not select.select([ctl.fileno()], [], [], 0)[0]:
                if not protect():
                    return  # the caller died before it could be asked to tell us
                protect = None
            readable, _, _ = select.select([ctl.fileno(), wake_r], [], [])
            if caller_gone:
                return
            if wake_r in readable:
                try:
                    while os.read(wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
                _reap(ctl, children)
            if ctl.fileno() not in readable:
                continue
            data, fds, _flags, _address = socket.recv_fds(ctl, _MESSAGE_MAX_BYTES, 4)
            if not data:
                return  # EOF: the caller stopped the service, or died
            kind = data[:1]
            if kind == FORK and len(fds) == 1:
                token = data[1:9]
                try:
                    pid = _fork_worker(ctl, (wake_r, wake_w), fds[0])
                except OSError as exc:
                    _send(ctl, ("fork-failed", token, f"{type(exc).__name__}: {exc}"))
                else:
                    children.add(pid)
                    _send(ctl, ("forked", token, pid))
                finally:
                    os.close(fds[0])
            elif kind == SIGNAL:
                for fd in fds:
                    os.close(fd)
                pid, signum = pickle.loads(data[1:])
                if pid in children:  # not yet reaped: the pid cannot be someone else's
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signum)
    except (BrokenPipeError, ConnectionResetError):
        return
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def release_inherited_channels(keep: int) -> None:
    """In a zygote forked from the program: let go of the pipes and sockets it inherited
    (above stderr, except ``keep``). Each becomes /dev/null rather than closed, so that its
    number is not reused: a copied object that closes its old fd when collected (a Popen's
    pipe, a socket) then closes /dev/null, never a socket of the zygote or a worker."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:  # no /proc: every number up to the limit
        fds = list(range(3, min(os.sysconf("SC_OPEN_MAX"), 4096)))
    null = -1
    try:
        for fd in fds:
            if fd <= 2 or fd == keep:
                continue
            try:
                mode = os.fstat(fd).st_mode
            except OSError:  # not open (e.g. the directory listing's own fd)
                continue
            if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
                if null < 0:
                    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
                os.dup2(null, fd, inheritable=False)
    finally:
        if null >= 0:
            os.close(null)


def run_forked_zygote(ctl: socket.socket, caller_pid: int) -> None:
    """In the child of the caller's fork: become the zygote; never returns."""
    from ._process_worker import ask_for_death_signal

    try:
        if os.getppid() != caller_pid:  # the caller died already
            return
        release_inherited_channels(ctl.fileno())
        _send(ctl, ("ready", 0, 0))
        serve(ctl, protect=lambda: ask_for_death_signal(caller_pid, signal.SIGTERM))
    except (BrokenPipeError, ConnectionResetError):
        pass  # the caller stopped the service (or ended) before the zygote said it is ready
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(0)


def main(fd: int, caller_pid: int) -> None:
    """Entry of a spawned zygote (``python -c``): preload the caller's modules, then serve."""
    from ._process_worker import die_with_parent

    die_with_parent(caller_pid, signal.SIGTERM)  # serve() then ends cleanly on it
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ctl = socket.socket(fileno=fd)
    os.set_inheritable(fd, False)
    data = ctl.recv(_SETUP_MAX_BYTES)
    if not data:
        return
    setup: dict[str, Any] = pickle.loads(data)
    sys.path[:] = setup["sys_path"]
    with contextlib.suppress(OSError):
        os.chdir(setup["cwd"])
    global in_zygote
    in_zygote = True
    imported = failed = 0
    for name in setup["modules"]:
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
            imported += 1
        except BaseException:  # a module that cannot be imported here is imported on use
            failed += 1
    try:
        _send(ctl, ("ready", imported, failed))
        serve(ctl)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the caller stopped the service (or ended) while the zygote was importing
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(0)
