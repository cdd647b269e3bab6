"""The loop a process worker runs: receive one pickled task, run it, send back its outcome.

Started by the process backend as ``python -c`` with the worker's end of a socket pair and
the parent's pid. It exits when the pipe reaches EOF (the parent closed it or died) and, on
Linux, also by PR_SET_PDEATHSIG when the parent dies, so no worker is orphaned.

Wire protocol on the pipe (one message per ``send_bytes``):
  parent -> worker: a pickled setup dict once, then one pickled ``(fn, args, kwargs)`` per task;
  worker -> parent: ``b"R"`` once ready, then one encoded outcome (see _wire) per task.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
from multiprocessing.connection import Connection

READY = b"R"
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # EOF on the pipe still ends the worker when the parent goes
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _dumps(obj: object) -> bytes:
    """Plain pickle where it works (fast, and cloudpickle stays unimported); cloudpickle for
    what only it can send back (a lambda, a class made in a task). Plain pickle fails loudly
    rather than wrongly for those: it pickles by reference, and the lookup fails here."""
    try:
        return pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
    except Exception:
        import cloudpickle

        return cloudpickle.dumps(obj)


def main(fd: int, parent_pid: int) -> None:
    _die_with_parent(parent_pid)
    # Ctrl-C goes to the whole process group; the parent decides what stops, not the worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.set_inheritable(fd, False)  # a subprocess started by a task must not hold the pipe
    conn = Connection(fd)
    try:
        setup = pickle.loads(conn.recv_bytes())
    except EOFError:
        return
    sys.path[:] = setup["sys_path"]

    from ._wire import execute

    conn.send_bytes(READY)
    while True:
        try:
            task_bytes = conn.recv_bytes()
        except EOFError:
            return
        conn.send_bytes(execute(task_bytes, dumps=_dumps))
        del task_bytes
