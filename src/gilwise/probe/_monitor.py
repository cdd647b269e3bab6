"""``gilwise.monitor`` and ``gilwise.profile``: profile the GIL of the running process.

Starting a monitor (about 50-200 ms, mostly the sampler child's interpreter start-up):
find the GIL in our own memory, start the stack-snapshot thread, start the sampler child
process and wait until it has taken its first sample. Stopping: tell the child to stop,
collect its samples, stop the stack thread, build the Profile.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any, Callable, Optional, TypeVar

from gilwise import runtime as _runtime
from gilwise.errors import ProbeUnavailableError
from gilwise.model import Profile
from gilwise.probe import _build, _child, _gil_address, _procfs
from gilwise.probe._sampler import SamplerConfig
from gilwise.probe._stacks import StackSampler
from gilwise.runtime import RuntimeFacts

# Thread-state samples per second. 1000 Hz keeps a 2-thread pure-Python run within the 3%
# overhead budget on 2 cores (benchmarks/bench_profile_overhead.py) and resolves the GIL's
# 5 ms switch interval.
DEFAULT_RATE_HZ = 1000.0
# Python stack snapshots per second: each one takes the GIL from the profiled threads.
DEFAULT_STACK_RATE_HZ = 100.0
# Above this the sampler child cannot keep up (one sample costs tens of microseconds).
MAX_RATE_HZ = 20_000.0

T = TypeVar("T")


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
    ) -> None:
        if not rate_hz or rate_hz <= 0 or rate_hz > MAX_RATE_HZ:
            raise ValueError(f"rate_hz must be in (0, {MAX_RATE_HZ:.0f}], got {rate_hz!r}")
        if stack_rate_hz is not None and stack_rate_hz <= 0:
            raise ValueError(f"stack_rate_hz must be positive or None, got {stack_rate_hz!r}")
        self.rate_hz = float(rate_hz)
        self.stack_rate_hz = stack_rate_hz
        self.max_timeline_spans = max_timeline_spans
        self.command = command
        self.runtime = runtime or _runtime.current()
        self._child: Optional[subprocess.Popen] = None
        self._stacks: Optional[StackSampler] = None
        self._profile: Optional[Profile] = None
        self._unavailable: list[str] = []
        self._state = "new"

    # -- context manager -------------------------------------------------------------------

    def __enter__(self) -> Monitor:
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

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
        missing = _procfs.available()
        if missing is not None:
            raise ProbeUnavailableError(
                f"gilwise cannot sample thread states here: {missing}. The GIL probe needs "
                f"Linux (x86_64 or aarch64) with /proc; run on Linux or in a Linux container."
            )
        config = SamplerConfig(
            pid=os.getpid(), rate_hz=self.rate_hz, gil_enabled=self.runtime.gil_enabled
        )
        if self.runtime.gil_enabled:
            try:
                location = _gil_address.locate_in_process()
            except OSError as exc:
                self._unavailable.append(f"gil: could not locate the GIL in this process ({exc})")
            else:
                config = SamplerConfig(
                    pid=config.pid,
                    rate_hz=self.rate_hz,
                    gil_address=location.address,
                    holder_chain=location.holder_chain,
                )
        try:
            if self.stack_rate_hz:
                self._stacks = StackSampler(self.stack_rate_hz)
                self._stacks.start()
            self._child = _child.start(config)
        except BaseException:
            self._abort()
            raise
        self._state = "running"

    def stop(self) -> Profile:
        """Stop sampling and build the profile (idempotent); returns it."""
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
        stacks = self._stacks
        self._profile = _build.build_profile(
            result,
            self.runtime,
            frames=stacks.series if stacks is not None else None,
            names=stacks.names if stacks is not None else None,
            excluded={stacks.native_id} if stacks is not None and stacks.native_id else (),
            command=self.command,
            unavailable=self._unavailable,
            max_timeline_spans=self.max_timeline_spans,
        )
        return self._profile

    def _abort(self) -> None:
        self._state = "stopped"
        if self._child is not None:
            _child.kill(self._child)
        if self._stacks is not None and self._stacks.native_id is not None:
            self._stacks.stop()


def monitor(
    rate_hz: float = DEFAULT_RATE_HZ,
    *,
    stack_rate_hz: Optional[float] = DEFAULT_STACK_RATE_HZ,
    max_timeline_spans: int = _build.MAX_TIMELINE_SPANS,
    runtime: Optional[RuntimeFacts] = None,
) -> Monitor:
    """Profile the GIL of this process for the duration of a ``with`` block.

    ``rate_hz``: thread-state samples per second, taken by a child process that reads this
    one through /proc (no GIL cost; a few percent of one core; it asks for SCHED_FIFO
    priority where permitted so that a busy machine does not bias its samples).
    ``stack_rate_hz``: Python stack snapshots per second for per-function attribution (each
    takes the GIL briefly; None disables functions). ``runtime``: the facts to judge with
    (tests inject a free-threaded build). Usage::

        with gilwise.monitor() as mon:
            work()
        print(mon.profile.held_fraction, mon.profile.verdict)
    """
    return Monitor(
        rate_hz,
        stack_rate_hz=stack_rate_hz,
        max_timeline_spans=max_timeline_spans,
        runtime=runtime,
    )


def profile(fn: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T, Profile]:
    """Call ``fn(*args, **kwargs)`` under a default monitor; return ``(result, profile)``.

    Exceptions from ``fn`` propagate (the monitor is stopped and cleaned up first).
    """
    with monitor() as mon:
        result = fn(*args, **kwargs)
    return result, mon.profile
