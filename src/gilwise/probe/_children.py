"""Following the profiled program's child processes, from inside the sampler process.

``monitor(subprocesses=True)`` and ``gilwise profile --subprocesses``: the sampler process
(see _sampler) samples its target and, every CHILDREN_POLL_S, lists the children of every
process it follows (/proc/<pid>/task/<tid>/children). Each CPython child gets a Sampler of
its own, driven by the same loop right after the target's sample:

    the program (target)        the sampler process
      |-- pool worker (fork)    <- Sampler(its parent's config, pid replaced)
      |-- python job.py         <- Sampler(config located like --pid: ELF symbols + maps)
      `-- sh -c "python x.py"   (not Python: not sampled, its children are followed)
            `-- python x.py     <- ...

A forked child has its parent's memory layout, so the parent's GIL address and frame
layout hold as they are (the same image: equal start of code and of the heap). A freshly
executed python is read like ``--pid``: ``_PyRuntime`` from its ELF symbols and load
address, the GIL from the per-version table, functions when it runs this Python version.
A child is attached once it is SETTLE_S old (a fork about to exec must not be read with its
parent's layout), is detached when it exits, and an exec seen later starts it afresh. A
program without children costs one small /proc read per thread per poll.
"""

from __future__ import annotations

import os
import sys
import time

from gilwise.probe._sampler import Sampler

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Optional

    from gilwise.probe._sampler import SamplerConfig

# How often the process tree is listed: a child living less than this may be missed.
CHILDREN_POLL_S = 0.02
# A new child is attached once this old, counted from its fork (fork + exec is well under it).
SETTLE_S = 0.03
# A freshly started python whose GIL or stacks cannot be located yet (still starting up)
# is retried at every poll; after this long it is sampled with what could be found.
GIVE_UP_S = 1.0


def child_pids(pid: int) -> list[int]:
    """The direct children of process ``pid`` (all its threads' children); [] when gone."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    out: list[int] = []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as children:
                out.extend(int(word) for word in children.read().split())
        except (OSError, ValueError):
            continue
    return out


def image_signature(pid: int) -> Optional[tuple[int, int]]:
    """(start of code, start of heap) of ``pid``: equal for a fork and its parent, new after
    an exec (address-space randomisation); None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read()
    except OSError:
        return None
    fields = text[text.rindex(b")") + 2 :].split()
    try:
        signature = int(fields[23]), int(fields[44])  # fields 26 (startcode), 47 (start_brk)
    except (IndexError, ValueError):
        return None
    return signature if all(signature) else None  # zeros: exiting, its memory is gone


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_age_s(pid: int) -> float:
    """How long ago ``pid`` was forked (clock-tick resolution); 0.0 when unknown.

    A child's age counts from its fork, not from when a poll first saw it: a grandchild
    is listed only once its parent is followed, so "first seen" could lag its fork by a
    settle and a poll per level (e.g. gilwise's own process workers, children of a zygote
    forked from the program, lost their first ~0.1 s of samples)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read()
        started_ticks = int(text[text.rindex(b")") + 2 :].split()[19])  # field 22
        now = time.clock_gettime(time.CLOCK_BOOTTIME)
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0
    return max(0.0, now - started_ticks / _CLOCK_TICKS)


def command_line(pid: int) -> str:
    """The command line of ``pid`` as one string ("" when gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            raw = cmdline.read()
    except OSError:
        return ""
    return " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)


class _Followed:
    """One attached child process."""

    __slots__ = ("command", "config", "notes", "parent_pid", "pid", "sampler", "signature")

    def __init__(
        self,
        pid: int,
        parent_pid: int,
        sampler: Sampler,
        signature: Optional[tuple[int, int]],
        notes: list[str],
        forked: bool,
    ) -> None:
        self.pid = pid
        self.parent_pid = parent_pid
        self.sampler = sampler
        self.config = sampler.config
        self.signature = signature
        self.notes = notes
        # A fork keeps its parent's command line: say so, or it reads like a second program.
        self.command = command_line(pid)
        if forked:
            self.command = f"fork of {parent_pid}: {self.command}"


class Family:
    """The target's Sampler plus one per followed child process.

    The sampler process drives it in place of the target's Sampler (``sample``,
    ``run_until``, ``finish``, ``result``). ``result()`` is the target's result with
    ``"children"``: one Sampler result per child, with ``pid``, ``parent_pid``, ``command``,
    ``notes`` (what could not be measured) and ``end`` ("exited", "exec", "running").
    """

    def __init__(self, root: Sampler) -> None:
        self.root = root
        self.config = root.config
        self.pid = root.pid
        self._root_signature = image_signature(root.pid)
        self._followed: dict[int, _Followed] = {}
        self._finished: list[dict[str, Any]] = []
        self._pending: dict[int, tuple[float, int]] = {}  # pid -> (first seen, parent pid)
        self._transit: set[int] = set()  # not Python: only its children are followed
        self._ignored: set[int] = set()
        self._next_poll_s = 0.0
        self._own_pid = os.getpid()
        self.errors: list[str] = []

    @property
    def start_s(self) -> Optional[float]:
        return self.root.start_s

    # -- the loop ----------------------------------------------------------------------

    def sample(self) -> bool:
        """One sample of the target and of every child; False when the target is gone."""
        alive = self.root.sample()
        self._tick(time.monotonic())
        return alive

    def run_until(
        self, should_stop: Callable[[float], bool], deadline_s: Optional[float] = None
    ) -> None:
        """Like Sampler.run_until: the children are sampled right after each target sample."""

        def between(timeout_s: float) -> bool:
            begin = time.monotonic()
            self._tick(begin)
            return should_stop(max(0.0, timeout_s - (time.monotonic() - begin)))

        self.root.run_until(between, deadline_s)

    def finish(self) -> None:
        self.root.finish()
        for pid in list(self._followed):
            self._detach(pid, "running")

    def result(self) -> dict[str, Any]:
        result = self.root.result()
        result["children"] = list(self._finished)
        result["errors"] = [*result.get("errors", ()), *self.errors]
        return result

    # -- children ------------------------------------------------------------------------

    def _tick(self, now: float) -> None:
        for pid, child in list(self._followed.items()):
            if not child.sampler.sample():
                self._detach(pid, "exited")
        if now >= self._next_poll_s:
            self._next_poll_s = now + CHILDREN_POLL_S
            self._discover(now)

    def _discover(self, now: float) -> None:
        for pid, child in list(self._followed.items()):
            signature = image_signature(pid)
            if signature is not None and signature != child.signature:
                self._detach(pid, "exec")  # a new program in the same process
                self._pending[pid] = (now, child.parent_pid)
        present: set[int] = set()
        # A child attached (or found not to be Python) in this poll has its own children
        # listed in this poll too, not one poll later.
        parents = [self.root.pid, *self._followed, *self._transit]
        listed: set[int] = set()
        while parents:
            parent = parents.pop()
            if parent in listed:
                continue
            listed.add(parent)
            for pid in child_pids(parent):
                present.add(pid)
                if pid == self._own_pid or pid in self._followed or pid in self._ignored:
                    continue
                if pid in self._transit:
                    continue
                if pid not in self._pending:
                    self._pending[pid] = (now - process_age_s(pid), parent)
                first_s, parent_pid = self._pending[pid]
                if now - first_s >= SETTLE_S:
                    self._attach(pid, parent_pid, now - first_s)
                    if pid in self._followed or pid in self._transit:
                        parents.append(pid)
        self._transit &= present
        for pid in [pid for pid in self._pending if pid not in present]:
            del self._pending[pid]

    def _parent_config(self, parent_pid: int) -> tuple[Optional[SamplerConfig], Any]:
        if parent_pid == self.root.pid:
            return self.root.config, self._root_signature
        parent = self._followed.get(parent_pid)
        if parent is None:
            return None, None
        return parent.config, parent.signature

    def _attach(self, pid: int, parent_pid: int, age_s: float) -> None:
        signature = image_signature(pid)
        if signature is None:
            self._pending.pop(pid, None)
            return
        parent_config, parent_signature = self._parent_config(parent_pid)
        notes: list[str] = []
        forked = parent_config is not None and signature == parent_signature
        if forked:
            config: Optional[SamplerConfig] = parent_config
        else:
            config, notes, python = self._locate(pid, final=age_s >= GIVE_UP_S)
            if python is False:
                self._pending.pop(pid, None)
                self._transit.add(pid)
                return
            if config is None:
                return  # starting up: try again at the next poll
        assert config is not None  # a forked child has its parent's config
        config = config.replace(pid=pid, duration_s=None, rescue_fd=None, follow_children=False)
        self._pending.pop(pid, None)
        try:
            sampler = Sampler(config)
            sampler.scheduling = self.root.scheduling
        except OSError as exc:
            self._ignored.add(pid)
            self.errors.append(f"child process {pid}: cannot be read ({exc})")
            return
        self._followed[pid] = _Followed(pid, parent_pid, sampler, signature, notes, forked)

    def _locate(self, pid: int, final: bool) -> tuple[Optional[SamplerConfig], list[str], Any]:
        """(config, notes, is_python) for a freshly executed process, found like --pid.

        ``config`` is None while a python child is still starting (its GIL or stacks not
        yet readable) unless ``final``: then it is what could be found, with notes.
        """
        from gilwise.probe import _attach

        try:
            target = _attach.find_target_python(pid)
        except Exception as exc:  # a vanished or unreadable process
            return None, [str(exc)], None if not final else False
        python = _attach.looks_like_python(pid, target)
        if python is not True:
            return None, [], python if python is False or final else None
        notes: list[str] = []
        gil_address, chain, problem = None, (), None
        if target.free_threaded:
            pass
        else:
            gil_address, chain, problem = _attach.locate_gil(pid, target)
            if problem:
                if not final:
                    return None, [], True
                notes.append(f"gil holder: {problem}")
        layout = None
        if gil_address is not None and self.config.frame_layout is not None:
            layout, frames_problem = _attach.locate_frames(pid, target, chain)
            same_version = target.minor == sys.version_info[1] and not target.free_threaded
            if frames_problem:
                if same_version and not final:
                    return None, [], True
                notes.append(f"functions: {frames_problem}")
        config = self.config.replace(
            pid=pid,
            gil_address=gil_address,
            holder_chain=chain,
            gil_enabled=not target.free_threaded,
            frame_layout=layout.to_dict() if layout is not None else None,
        )
        return config, notes, True

    def _detach(self, pid: int, end: str) -> None:
        child = self._followed.pop(pid)
        child.sampler.finish()
        result = child.sampler.result()
        result.update(
            pid=pid,
            parent_pid=child.parent_pid,
            command=child.command,
            notes=list(child.notes),
            end=end,
        )
        self._finished.append(result)
