"""``gilwise.monitor`` and ``gilwise.profile``: profile the GIL of the running process.

Starting a monitor: find the GIL in our own memory (~1 ms) and the frame layout (~5 ms, once
per process), start the sampler child process and wait until it has taken its first sample
(forked: a few ms; a fresh interpreter when forking is not safe: 40-60 ms, see _child), then
the in-process stack thread if stacks cannot be read remotely. Stopping: tell the child to
stop, collect its samples, stop the stack thread, build the Profile.
"""

from __future__ import annotations

import os
import threading
from dataclasses import replace
from typing import Any, Callable, Optional, TypeVar

from gilwise import _runtime, _verdict
from gilwise._model import Profile
from gilwise._runtime import RuntimeFacts
from gilwise.errors import ProbeUnavailableError
from gilwise.probe import _build, _child, _frames, _gil_address, _procfs
from gilwise.probe._names import ThreadNames
from gilwise.probe._sampler import SamplerConfig
from gilwise.probe._stacks import StackSampler

# Thread-state samples per second. 1000 Hz keeps a 2-thread pure-Python run within the 3%
# overhead budget on 2 cores (benchmarks/bench_profile_overhead.py) and resolves the GIL's
# 5 ms switch interval.
DEFAULT_RATE_HZ = 1000.0
# Python stack samples per second. Read by the sampler child from our memory ("remote",
# see _frames): free for the profiled threads, so the rate can be high.
DEFAULT_STACK_RATE_HZ = 250.0
# When stacks must be snapshotted in-process (each snapshot takes the GIL and forces two
# hand-offs), the default rate drops to this.
IN_PROCESS_STACK_RATE_HZ = 50.0
STACK_SOURCES = ("auto", "remote", "in-process")
# Above this the sampler child cannot keep up (one sample costs tens of microseconds).
MAX_RATE_HZ = 20_000.0

T = TypeVar("T")

# Where the GIL is and the frame layout are facts of this interpreter (addresses and offsets,
# the same in a forked child): found once per process (~1 ms and ~5 ms with two helper
# threads), keyed by the finding function so that swapping it (tests) runs the new one.
_found: dict[Callable[..., Any], Any] = {}


def _once(locate: Callable[..., T], *args: Any) -> T:
    if locate not in _found:
        _found[locate] = locate(*args)
    return _found[locate]


class Monitor:
    """A running (or finished) GIL profile of this process; use as a context manager.

    ``profile`` is available after the ``with`` block (or ``stop()``). Not reusable: make a
    new monitor for each run. Raises ProbeUnavailableError on entry when this platform or
    process cannot be measured (no Linux /proc, no permission to read our own memory).
    """

    def __init__(
        self,
        rate_hz: float = DEFAULT_RATE_HZ,
        *,
        stack_rate_hz: Optional[float] = DEFAULT_STACK_RATE_HZ,
        max_timeline_spans: int = _build.MAX_TIMELINE_SPANS,
        command: Optional[str] = None,
        runtime: Optional[RuntimeFacts] = None,
        stack_source: str = "auto",
        subprocesses: bool = False,
    ) -> None:
        if not rate_hz or rate_hz <= 0 or rate_hz > MAX_RATE_HZ:
            raise ValueError(f"rate_hz must be in (0, {MAX_RATE_HZ:.0f}], got {rate_hz!r}")
        if stack_rate_hz is not None and stack_rate_hz <= 0:
            raise ValueError(f"stack_rate_hz must be positive or None, got {stack_rate_hz!r}")
        if stack_source not in STACK_SOURCES:
            raise ValueError(
                f"stack_source must be one of {', '.join(STACK_SOURCES)}, got {stack_source!r}"
            )
        self.rate_hz = float(rate_hz)
        self.stack_rate_hz = stack_rate_hz
        self.stack_source = stack_source
        # What was used: "remote", "in-process" or None (no stacks); and why not remote.
        self.stacks_used: Optional[str] = None
        self.stacks_note: Optional[str] = None
        self.max_timeline_spans = max_timeline_spans
        self.command = command
        self.subprocesses = bool(subprocesses)
        self.runtime = runtime or _runtime.current()
        # Set by ``gilwise profile``: the supervisor's pipe for the sampler's result when
        # this process ends without stopping the monitor (see probe/_supervise).
        self.rescue_fd: Optional[int] = None
        self._child: Optional[_child.SamplerChild] = None
        self._stacks: Optional[StackSampler] = None
        self._names: Optional[ThreadNames] = None
        self._profile: Optional[Profile] = None
        self._owner_pid: Optional[int] = None
        self._unavailable: list[str] = []
        self._state = "new"

    # -- context manager -------------------------------------------------------------------

    def __enter__(self) -> Monitor:
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._forked():
            # A child forked inside the block leaves it: the sampler and the profile are the
            # parent's, so the child lets go of its copies quietly.
            self._detach()
            return
        self.stop()

    def _forked(self) -> bool:
        return self._owner_pid is not None and os.getpid() != self._owner_pid

    def _detach(self) -> None:
        self._state = "stopped"
        child, self._child = self._child, None
        if child is not None:
            for stream in (child.stdin, child.stdout, child.stderr):
                if stream is not None:
                    stream.close()  # only this process's copy: the parent keeps its own

    @property
    def profile(self) -> Profile:
        """The finished Profile; raises RuntimeError while the monitor is still running."""
        if self._profile is None:
            raise RuntimeError(
                "the profile is ready only after the monitor stops: read mon.profile after "
                "the `with gilwise.monitor() as mon:` block"
            )
        return self._profile

    # -- start / stop ----------------------------------------------------------------------

    def start(self) -> None:
        """Begin sampling; returns once the first thread-state sample is taken."""
        if self._state != "new":
            raise RuntimeError(
                "a monitor runs once; create a new gilwise.monitor() to profile again"
            )
        self._state = "starting"
        self._owner_pid = os.getpid()
        missing = _procfs.available()
        if missing is not None:
            raise ProbeUnavailableError(
                f"gilwise cannot sample thread states here: {missing}. The GIL probe needs "
                f"Linux (x86_64 or aarch64) with /proc; run on Linux or in a Linux container."
            )
        config = SamplerConfig(
            pid=os.getpid(),
            rate_hz=self.rate_hz,
            gil_enabled=self.runtime.gil_enabled,
            follow_children=self.subprocesses,
            rescue_fd=self.rescue_fd,
        )
        if self.runtime.gil_enabled:
            try:
                location = _once(_gil_address.locate_in_process)
            except OSError as exc:
                self._unavailable.append(f"gil: could not locate the GIL in this process ({exc})")
            else:
                config = config.replace(
                    gil_address=location.address, holder_chain=location.holder_chain
                )
        stacks = self._plan_stacks(config)
        if stacks is not None:
            config = stacks
        try:
            self._names = ThreadNames()
            self._names.start()
            # The sampler first: it is forked when this process has one thread (see _child).
            self._child = _child.start(config)
            if self.stacks_used == "in-process":
                assert self.stack_rate_hz is not None
                rate = self.stack_rate_hz
                if rate == DEFAULT_STACK_RATE_HZ:
                    rate = IN_PROCESS_STACK_RATE_HZ
                self._stacks = StackSampler(rate)
                self._stacks.start()
        except BaseException:
            self._abort()
            raise
        self._state = "running"

    def _plan_stacks(self, config: SamplerConfig) -> Optional[SamplerConfig]:
        """Decide where stacks come from; returns the child's config when it reads them."""
        if not self.stack_rate_hz:
            return None
        if self.stack_source != "in-process":
            problem = _frames.supported()
            if problem is None and config.gil_address is None:
                problem = "the GIL (and with it our memory) could not be located"
            layout = None
            if problem is None:
                try:
                    layout = _once(_frames.locate_in_process, _frames.current_tstate())
                except OSError as exc:
                    problem = str(exc)
            if layout is not None:
                self.stacks_used = "remote"
                every = max(1, round(self.rate_hz / self.stack_rate_hz))
                return config.replace(frame_layout=layout.to_dict(), frame_every=every)
            if self.stack_source == "remote":
                raise ProbeUnavailableError(
                    f"gilwise cannot read Python stacks from outside this process: {problem}. "
                    f'Use stack_source="in-process" (snapshots that take the GIL) or "auto".'
                )
            self.stacks_note = f"stacks snapshotted in-process: {problem}"
        self.stacks_used = "in-process"
        return None

    def stop(self) -> Profile:
        """Stop sampling and build the profile (idempotent); returns it."""
        if self._forked():
            self._detach()
            raise RuntimeError(
                f"this monitor was started by process {self._owner_pid}; a process forked "
                "from it cannot stop it or read its profile (the parent's is unaffected)"
            )
        if self._state == "stopped" and self._profile is not None:
            return self._profile
        if self._state != "running":
            raise RuntimeError(
                "this monitor was never started: use it as `with gilwise.monitor():`"
            )
        self._state = "stopped"
        child = self._child
        assert child is not None
        try:
            result = _child.stop(child)
        finally:
            if self._stacks is not None:
                self._stacks.stop()
            names = self._names.stop() if self._names is not None else {}
        stacks = self._stacks
        self._profile = profile_from_result(
            result,
            self.runtime,
            in_process=stacks.series if stacks is not None else None,
            in_process_snapshots=stacks.snapshots if stacks is not None else 0,
            names=names,
            excluded={stacks.native_id} if stacks is not None and stacks.native_id else (),
            command=self.command,
            unavailable=self._unavailable,
            max_timeline_spans=self.max_timeline_spans,
            stacks_used=self.stacks_used,
            stacks_note=self.stacks_note,
        )
        return self._profile

    def handover(self) -> dict[str, Any]:
        """What another process needs to build this run's profile from the sampler's samples
        (``gilwise profile``'s supervisor, when this process ends without stopping): thread
        names seen so far, the sampler's pid, where stacks come from. Plain data."""
        names = dict(self._names.names) if self._names is not None else {}
        for thread in threading.enumerate():
            if thread.native_id is not None:
                names[thread.native_id] = thread.name
        stacks = self._stacks
        return {
            "names": names,
            "sampler_pid": self._child.pid if self._child is not None else None,
            "stacks_used": self.stacks_used,
            "stacks_note": self.stacks_note,
            "excluded": [stacks.native_id] if stacks is not None and stacks.native_id else [],
            "unavailable": list(self._unavailable),
        }

    def _abort(self) -> None:
        self._state = "stopped"
        if self._child is not None:
            _child.kill(self._child)
        if self._stacks is not None and self._stacks.native_id is not None:
            self._stacks.stop()
        if self._names is not None:
            self._names.stop()


def profile_from_result(
    result: dict[str, Any],
    runtime: RuntimeFacts,
    *,
    in_process: Optional[dict] = None,
    in_process_snapshots: int = 0,
    names: Optional[dict[int, str]] = None,
    excluded: Any = (),
    command: Optional[str] = None,
    unavailable: Any = (),
    max_timeline_spans: int = _build.MAX_TIMELINE_SPANS,
    stacks_used: Optional[str] = None,
    stacks_note: Optional[str] = None,
) -> Profile:
    """The Profile of a sampler process's result: the target's, with one child Profile per
    followed child process (``processes``); used by ``Monitor.stop`` and by the
    ``gilwise profile`` supervisor when the program ended without stopping its monitor.

    ``in_process``: frame series from the in-process stack sampler (stacks_used
    "in-process"); with "remote" the frames are in ``result``.
    """
    frames = _build.remote_frames(result) if stacks_used == "remote" else in_process
    profile = _build.build_profile(
        result,
        runtime,
        frames=frames,
        names=names,
        excluded=excluded,
        command=command,
        unavailable=unavailable,
        max_timeline_spans=max_timeline_spans,
    )
    profile.extra["stack_source"] = stacks_used
    if stacks_used == "remote":
        profile.extra["stack_samples"] = result.get("frame_samples", 0)
    elif stacks_used == "in-process":
        profile.extra["stack_samples"] = in_process_snapshots
    if stacks_note:
        profile.extra["stack_note"] = stacks_note
    children = tuple(
        _child_profile(child, result, runtime, max_timeline_spans)
        for child in result.get("children") or ()
    )
    profile = replace(profile, pid=result.get("pid"), processes=children)
    if children:
        # One verdict for the whole program: the parent waiting on its workers is no problem.
        profile = profile.with_verdict(_verdict.verdict_for_profile(profile, runtime))
    return profile


def _child_profile(
    child: dict[str, Any], root: dict[str, Any], runtime: RuntimeFacts, max_spans: int
) -> Profile:
    """One followed child process's Profile (its own threads, functions and verdict)."""
    profile = _build.build_profile(
        child,
        runtime,
        frames=_build.remote_frames(child) if child.get("frames") else None,
        # The thread whose id is the process's is its main thread (the others keep the
        # kernel's names: a child's threading names cannot be read from outside).
        names={child["pid"]: "MainThread"},
        source=f"child:{child['pid']}",
        command=child.get("command") or None,
        unavailable=child.get("notes", ()),
        max_timeline_spans=max_spans,
    )
    profile.extra["stack_source"] = "remote" if child.get("frames") else None
    # Where this process's time axis starts on its parent's (seconds after the profile began).
    if child.get("start_s") is not None and root.get("start_s") is not None:
        profile.extra["started_at_s"] = child["start_s"] - root["start_s"]
    profile.extra["end"] = child.get("end")
    return replace(profile, pid=child["pid"], parent_pid=child.get("parent_pid"))


def monitor(
    rate_hz: float = DEFAULT_RATE_HZ,
    *,
    stack_rate_hz: Optional[float] = DEFAULT_STACK_RATE_HZ,
    max_timeline_spans: int = _build.MAX_TIMELINE_SPANS,
    runtime: Optional[RuntimeFacts] = None,
    stack_source: str = "auto",
    subprocesses: bool = False,
) -> Monitor:
    """Profile the GIL of this process for the duration of a ``with`` block.

    ``rate_hz``: thread-state samples per second, taken by a child process that reads this
    one through /proc (no GIL cost; a few percent of one core; it asks for SCHED_FIFO
    priority where permitted so that a busy machine does not bias its samples).
    ``stack_rate_hz``: Python stack samples per second for per-function attribution (None
    disables functions). ``stack_source``: "remote" has the sampler child read the stacks
    from this process's memory (no GIL cost; the layout is discovered at start), "in-process"
    snapshots them with ``sys._current_frames`` from a thread (takes the GIL each time; the
    default rate drops to 50 Hz), "auto" (default) uses remote where it works. The profile's
    ``extra["stack_source"]`` says which ran. ``runtime``: the facts to judge with (tests
    inject a free-threaded build). ``subprocesses``: also profile the child processes
    this one starts (multiprocessing with any start method, ProcessPoolExecutor, gilwise's
    process workers, ``subprocess`` running python, through shells): each becomes a child
    Profile in ``profile.processes`` (``pid``, ``parent_pid``, ``command``); a process
    living under ~50 ms may be missed. Usage::

        with gilwise.monitor() as mon:
            work()
        print(mon.profile.held_fraction, mon.profile.verdict)
    """
    return Monitor(
        rate_hz,
        stack_rate_hz=stack_rate_hz,
        max_timeline_spans=max_timeline_spans,
        runtime=runtime,
        stack_source=stack_source,
        subprocesses=subprocesses,
    )


def profile(fn: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T, Profile]:
    """Call ``fn(*args, **kwargs)`` under a default monitor; return ``(result, profile)``.

    Exceptions from ``fn`` propagate (the monitor is stopped and cleaned up first).
    """
    with monitor() as mon:
        result = fn(*args, **kwargs)
    return result, mon.profile
