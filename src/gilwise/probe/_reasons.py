"""Why a blocked thread waits, told by its Python call stack.

The kernel only says *that* a thread sleeps on a futex (or in a read, a poll, a wait4): a
thread acquiring a contended lock, a pool worker waiting for work, ``Thread.join`` and
``Future.result`` all look the same there. Their stacks do not. Blocking calls are C
(``Lock.acquire``, ``SimpleQueue.get``), so the innermost *Python* frame is the caller of
the blocking call; the reason is read from it and its callers:

0. A frame that calls a user's callable (``Thread.run``, a pool's worker) as the innermost
   frame means the user's work is a C function and it is what blocks: no change.
1. Walk outwards from the innermost frame through "plumbing" (the standard library's
   threading, queue, concurrent.futures, multiprocessing, subprocess, selectors and asyncio
   modules, and gilwise's own code) while no user frame is met; the first frame that names a reason
   decides: ``Thread.join``, ``Process.join``, ``Popen.wait``, ``Queue.join``, closing a
   ``multiprocessing.Pool`` and interpreter shutdown -> join_wait; ``Future.result``/
   ``exception``, ``wait``, ``as_completed``, ``AsyncResult.get``/``wait``, ``imap``'s
   ``next`` -> result_wait;
   the worker loops of ``concurrent.futures`` and ``multiprocessing.pool`` -> idle;
   ``Semaphore.acquire`` -> lock_wait (a counted resource is contended like a lock).
2. Otherwise, when the plumbing reaches the thread's root (no user frame at all), the thread
   is the machinery of a pool, an executor or gilwise itself, waiting for something to do:
   idle.
3. Otherwise, a futex wait (not the GIL) is idle when the innermost frame is a wait for a
   signal from another thread (``Condition.wait``, ``Event.wait``, ``Barrier.wait``, a
   queue's ``get``/``put``): no lock is contended there, the thread waits for work or room;
   result_wait when user code called into gilwise (``gilwise.map``, a Pipeline) and waits
   there; and lock_wait otherwise: acquiring a lock (``with lock:`` in user code).

I/O waits (read, poll, wait4, sleep) change only by rules 1 and 2 (a pool's result reader,
``Process.join``); a user's own read stays io_wait. Names are matched with and without the
class (3.9/3.10 code objects have no qualified name).
"""

from __future__ import annotations

import os
from typing import Optional

from gilwise.probe._frames import FunctionKey
from gilwise.probe._procfs import FUTEX, IDLE, IO_WAIT, JOIN_WAIT, LOCK_WAIT, RESULT_WAIT

GILWISE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep

# (module path suffix, function name) -> the state it means. Names without a class match the
# qualified name's last part too.
_RULES: dict[tuple[str, str], int] = {}


def _rule(module: str, state: int, *names: str) -> None:
    for name in names:
        _RULES[(module, name)] = state


_rule("threading.py", JOIN_WAIT, "Thread.join", "Thread._wait_for_tstate_lock", "_shutdown")
_rule("threading.py", LOCK_WAIT, "Semaphore.acquire", "BoundedSemaphore.acquire")
_rule("queue.py", JOIN_WAIT, "Queue.join")
_rule("multiprocessing/process.py", JOIN_WAIT, "BaseProcess.join")
_rule("multiprocessing/popen_fork.py", JOIN_WAIT, "Popen.wait", "Popen.poll")
_rule("multiprocessing/popen_forkserver.py", JOIN_WAIT, "Popen.poll")
_rule(
    "multiprocessing/pool.py",
    JOIN_WAIT,
    "Pool.join",
    # Closing a pool (``with Pool() as pool:`` ends in terminate()): waiting for its workers
    # and handlers, e.g. for the inqueue's lock, which an idle worker process holds.
    "Pool.terminate",
    "Pool._terminate_pool",
    "Pool._help_stuff_finish",
)
_rule("subprocess.py", JOIN_WAIT, "Popen.wait", "Popen._wait", "Popen._try_wait")
_rule(
    "concurrent/futures/_base.py",
    RESULT_WAIT,
    "Future.result",
    "Future.exception",
    "wait",
    "as_completed",
    "_result_or_cancel",
)
_rule(
    "multiprocessing/pool.py",
    RESULT_WAIT,
    "ApplyResult.get",
    "ApplyResult.wait",
    "IMapIterator.next",
    "IMapIterator.__next__",
)
_rule("concurrent/futures/thread.py", IDLE, "_worker")
_rule(
    "concurrent/futures/process.py",
    IDLE,
    "_process_worker",
    "_ExecutorManagerThread.run",
    "_ExecutorManagerThread.wait_result_broken_or_wakeup",
    "_queue_management_worker",
)
_rule(
    "multiprocessing/pool.py",
    IDLE,
    "worker",
    "Pool._handle_workers",
    "Pool._handle_tasks",
    "Pool._handle_results",
    "Pool._wait_for_updates",
)
_rule("multiprocessing/queues.py", IDLE, "Queue._feed")

# Frames that call a user's callable: innermost, they mean the user's work is a C function
# (``Thread(target=time.sleep)``, ``pool.map(os.fsync, ...)``) and it is what blocks.
_WORK_CALLERS: frozenset[tuple[str, str]] = frozenset(
    {
        ("threading.py", "Thread.run"),
        ("concurrent/futures/thread.py", "_WorkItem.run"),
        ("concurrent/futures/process.py", "_process_worker"),
        ("multiprocessing/process.py", "BaseProcess.run"),
    }
)
# A multiprocessing.pool worker also gets its tasks through a C call (ThreadPool's
# queue.SimpleQueue): innermost and on a futex it waits for work; in I/O, the user's work.
_IO_WORK_CALLERS: frozenset[tuple[str, str]] = frozenset({("multiprocessing/pool.py", "worker")})

# Waits for a signal from another thread (a futex, but no lock is contended).
_SIGNAL_WAITS: frozenset[tuple[str, str]] = frozenset(
    {
        ("threading.py", "Condition.wait"),
        ("threading.py", "Condition.wait_for"),
        ("threading.py", "Event.wait"),
        ("threading.py", "Barrier.wait"),
        ("threading.py", "Barrier._wait"),
        ("queue.py", "Queue.get"),
        ("queue.py", "Queue.put"),
        ("multiprocessing/queues.py", "Queue.get"),
        ("multiprocessing/queues.py", "SimpleQueue.get"),
        ("multiprocessing/synchronize.py", "Event.wait"),
        ("multiprocessing/synchronize.py", "Condition.wait"),
    }
)
_PLUMBING = (
    "threading.py",
    "queue.py",
    "concurrent/futures/_base.py",
    "concurrent/futures/thread.py",
    "concurrent/futures/process.py",
    "subprocess.py",
    "selectors.py",
)
# Packages whose every module is plumbing. An asyncio loop waiting in select is plumbing too:
# with no user frame on its thread (gilwise's loop thread, Thread(target=loop.run_forever)) it
# is idle; under a user's asyncio.run(main()) it stays io_wait (an I/O-bound asyncio program).
_PLUMBING_PACKAGES = ("/multiprocessing/", "/asyncio/")
_MODULES = sorted(
    {module for module, _ in (*_RULES, *_SIGNAL_WAITS, *_WORK_CALLERS, *_IO_WORK_CALLERS)},
    key=len,
    reverse=True,
)
_BARE_RULES = {(module, name.rsplit(".", 1)[-1]): state for (module, name), state in _RULES.items()}
_BARE_SIGNAL_WAITS = {(module, name.rsplit(".", 1)[-1]) for module, name in _SIGNAL_WAITS}
_BARE_WORK_CALLERS = {(module, name.rsplit(".", 1)[-1]) for module, name in _WORK_CALLERS}
_BARE_IO_WORK_CALLERS = {(module, name.rsplit(".", 1)[-1]) for module, name in _IO_WORK_CALLERS}


def _module(filename: str) -> Optional[str]:
    path = filename.replace(os.sep, "/")
    for module in _MODULES:
        if path.endswith("/" + module):
            return module
    return None


def _is_plumbing(filename: str) -> bool:
    path = filename.replace(os.sep, "/")
    if filename.startswith(GILWISE_DIR) or any(package in path for package in _PLUMBING_PACKAGES):
        return True
    return any(path.endswith("/" + module) for module in _PLUMBING)


def _lookup(key: FunctionKey, table: dict, bare: dict) -> Optional[int]:
    module = _module(key[1])
    if module is None:
        return None
    name = key[0]
    if "." in name:  # a qualified name (3.11+): exact match only
        return table.get((module, name))
    return bare.get((module, name))


def _listed(key: FunctionKey, table: frozenset, bare: set) -> bool:
    module = _module(key[1])
    if module is None:
        return False
    name = key[0]
    if "." in name:
        return (module, name) in table
    return (module, name) in bare


def blocked_reason(state: int, stack: tuple[FunctionKey, ...]) -> int:
    """The state a blocked sample really is, given its stack (root first); ``state`` (a
    LOCK_WAIT, FUTEX or IO_WAIT code) when the stack names no other reason."""
    if not stack or state not in (LOCK_WAIT, FUTEX, IO_WAIT):
        return state
    if _listed(stack[-1], _WORK_CALLERS, _BARE_WORK_CALLERS):
        return state
    if state == IO_WAIT and _listed(stack[-1], _IO_WORK_CALLERS, _BARE_IO_WORK_CALLERS):
        return state
    entered_gilwise = False
    for depth, key in enumerate(reversed(stack)):
        reason = _lookup(key, _RULES, _BARE_RULES)
        if reason is not None:
            return reason
        if not _is_plumbing(key[1]):
            break
        entered_gilwise = entered_gilwise or key[1].startswith(GILWISE_DIR)
        if depth == len(stack) - 1:
            return IDLE  # no user frame at all: a pool's or gilwise's own thread, waiting
    else:  # pragma: no cover - the loop always returns or breaks
        return state
    if state == IO_WAIT:
        return RESULT_WAIT if entered_gilwise else state
    if _listed(stack[-1], _SIGNAL_WAITS, _BARE_SIGNAL_WAITS):
        return IDLE
    if entered_gilwise:
        return RESULT_WAIT
    return state
