"""``gilwise profile``: run a script or module under the monitor (like cProfile), or attach.

Where the report goes: to ``-o FILE`` if given (written to a temporary file, then renamed:
never half a report); otherwise to stderr when gilwise runs a script or module (its stdout
belongs to the program, so piping it stays clean), and to stdout with ``--pid``.

The program runs in a process forked from gilwise's (see _supervise), so the report is
written however it ends, and the program's exit status is gilwise's:
- returns, raises (exit 1, traceback on stderr) or calls sys.exit(n): the program writes
  the report itself, as it always did;
- calls os._exit(n) (exit n) or dies from a signal (exit 128 + the signal's number, 139
  for a segfault): the sampler hands its samples to gilwise's process, which writes the
  report (thread names as the kernel knows them if the program could not say them);
- Ctrl-C: the program gets KeyboardInterrupt in its main thread as usual; gilwise exits
  130 with the report written within about a second, killing the program (and its child
  processes) if it has not ended by then. A second Ctrl-C while the report is written
  waits until it is written.
The report's ``exit_code`` and ``end_reason`` say which ("os._exit", "signal SIGSEGV",
"SIGINT", "exception RuntimeError").
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import runpy
import signal
import sys
import threading
import time
import traceback
from dataclasses import replace
from typing import Any, Optional

from gilwise._model import Profile
from gilwise.errors import ProbeUnavailableError
from gilwise.probe._monitor import DEFAULT_RATE_HZ, DEFAULT_STACK_RATE_HZ, MAX_RATE_HZ, Monitor

INTERRUPTED_EXIT = 130
_REAL_OS_EXIT = os._exit  # before _tell_before_os_exit replaces it in the program
# After Ctrl-C, the program's own (non-daemon) threads get this long to end before its
# process stops waiting for them and leaves the report to the supervisor.
THREADS_GRACE_S = 0.3


def run(args: argparse.Namespace) -> int:
    """Run ``gilwise profile`` with parsed arguments; returns the exit code to use."""
    rate_hz = args.rate if args.rate is not None else DEFAULT_RATE_HZ
    if not 0 < rate_hz <= MAX_RATE_HZ:
        return _usage(f"--rate must be in (0, {MAX_RATE_HZ:.0f}] samples per second, got {rate_hz}")
    stack_rate = getattr(args, "stack_rate", None)
    stack_rate = DEFAULT_STACK_RATE_HZ if stack_rate is None else stack_rate
    if not 0 <= stack_rate <= MAX_RATE_HZ:
        return _usage(
            f"--stack-rate must be in [0, {MAX_RATE_HZ:.0f}] reads per second (0: no "
            f"functions), got {stack_rate}"
        )
    args.stack_rate_hz = stack_rate or None
    if args.pid is not None:
        if args.script is not None or args.args or args.module is not None:
            return _usage("--pid attaches to a running process: do not also give a script")
        if getattr(args, "subprocesses", False):
            return _usage(
                "--subprocesses follows the children of a program gilwise runs; "
                "with --pid give the child's pid"
            )
        return _attach(args, rate_hz)
    if args.module is None and args.script is None:
        return _usage("give a script (gilwise profile script.py), -m MODULE or --pid PID")
    if args.module is not None:
        argv = [args.module, *args.args]
        command = "python -m " + " ".join(argv)
    else:
        if not os.path.isfile(args.script):
            return _usage(f"no such script: {args.script}")
        argv = [args.script, *args.args]
        command = "python " + " ".join(argv)
    program = _Program(args, rate_hz, argv, command)
    if not hasattr(os, "fork"):
        return program.run(None)
    from gilwise.probe import _supervise

    supervisor = os.getpid()
    code = _supervise.supervise(program.run, program.write_rescued)
    if os.getpid() == supervisor:
        # The supervisor has nothing to finalise: skip the interpreter's shutdown (with
        # this many modules loaded it takes longer than a short program's whole run).
        _flush_and_exit(code)
    return code


class _Program:
    """The profiled program: run in the forked process (``run``), or its report written
    by the supervisor from the sampler's samples (``write_rescued``)."""

    def __init__(self, args: argparse.Namespace, rate_hz: float, argv: list[str], command: str):
        self.args = args
        self.rate_hz = rate_hz
        self.argv = argv
        self.command = command

    def run(self, link: Any) -> int:
        """Start the monitor, run the program, write the report; returns the exit code.

        ``link``: the supervisor's pipes (None: no supervisor).
        """
        monitor = Monitor(
            self.rate_hz,
            stack_rate_hz=self.args.stack_rate_hz,
            command=self.command,
            subprocesses=getattr(self.args, "subprocesses", False),
        )
        if link is not None:
            monitor.rescue_fd = link.rescue_fd
        try:
            monitor.start()
        except ProbeUnavailableError as exc:
            print(f"gilwise profile: {exc}", file=sys.stderr)
            if link is not None:
                link.send({"done": True})  # said why: nothing to rescue
            return 1
        finally:
            if link is not None:
                link.close_rescue()
        if link is not None:
            link.send(monitor.handover())
            _tell_before_os_exit(monitor, link)
        owner = os.getpid()
        gate = _InterruptGate()
        gate.install()
        code, reason, interrupted_at = _run_program(self.args.module, self.argv, gate)
        if os.getpid() != owner:
            # A process the program forked (os.fork) returned from its main: it ends like
            # Python would end it; the profile and the report are the parent's.
            atexit._run_exitfuncs()
            _flush_and_exit(code)
        gate.close()
        if (
            interrupted_at is not None
            and link is not None
            and not _join_non_daemon_threads(interrupted_at + THREADS_GRACE_S)
        ):
            # Its threads keep the program alive: leave, the supervisor writes the report
            # from the samples (building it here would compete with them for the GIL).
            link.send({**monitor.handover(), "end_reason": reason})
            _flush_and_exit(code)
        profile = replace(monitor.stop(), exit_code=code, end_reason=reason)
        if link is not None:
            link.send({"writing": True})
        written = _write_report(profile, self.args.format, self.args.output, sys.stderr)
        if link is not None:
            link.send({"done": True})
        if gate.noted:
            code = INTERRUPTED_EXIT
        return code if written or code else 1

    def write_rescued(self, info: dict[str, Any]) -> int:
        """In the supervisor: the report from the sampler's samples; returns the exit code."""
        from gilwise import _runtime
        from gilwise.probe._monitor import profile_from_result

        code: int = info["exit_code"]
        reason: str = info["end_reason"]
        result = info.get("result")
        output = self.args.output
        program_pid = info.get("program_pid")
        if output and program_pid:
            _remove_quietly(_temporary_name(output, program_pid))
        if result is None:
            print(
                f"gilwise profile: the program ended ({reason}) before the sampler could "
                f"hand over its samples: no report",
                file=sys.stderr,
            )
            return code or 1
        stacks_used = info.get("stacks_used")
        notes = list(info.get("unavailable", ()))
        if stacks_used == "in-process":
            stacks_used = None
            notes.append("functions: the in-process stack samples ended with the program")
        if not info.get("told"):
            notes.append(
                "threads: those started after the program's start are named as the kernel "
                "knows them (the program ended without saying their names)"
            )
        profile = profile_from_result(
            result,
            _runtime.current(),
            names={int(tid): name for tid, name in (info.get("names") or {}).items()},
            excluded=info.get("excluded", ()),
            command=self.command,
            unavailable=notes,
            stacks_used=stacks_used,
            stacks_note=info.get("stacks_note"),
        )
        profile = replace(profile, exit_code=code, end_reason=reason)
        written = _write_report(profile, self.args.format, output, sys.stderr)
        return code if written or code else 1


def _tell_before_os_exit(monitor: Monitor, link: Any) -> None:
    """os._exit ends the process at once: first tell the supervisor the thread names and
    why (only in this process: forked children call the real os._exit untouched)."""
    real_exit = os._exit
    owner = os.getpid()

    def _exit(status: int) -> None:
        if os.getpid() == owner:
            link.send({**monitor.handover(), "end_reason": "os._exit"})
        real_exit(status)

    _exit.__doc__ = real_exit.__doc__
    os._exit = _exit  # type: ignore[assignment]


def _flush_and_exit(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    _REAL_OS_EXIT(code)


class _InterruptGate:
    """SIGINT raises KeyboardInterrupt while the program runs (as Python's own handler
    does) and is only noted once the program is over, so that a second Ctrl-C cannot stop
    the report half-way. Installed from the main thread before the program starts; a
    program that sets its own SIGINT handler keeps it while it runs."""

    def __init__(self) -> None:
        self.program_running = True
        self.noted: list[int] = []

    def install(self) -> None:
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGINT, self._handle)

    def close(self) -> None:
        """The program is over: note SIGINT from now on."""
        self.program_running = False
        self.install()

    def _handle(self, signum: int, frame: Any) -> None:
        if self.program_running:
            signal.default_int_handler(signum, frame)
        self.noted.append(signum)


def _run_program(
    module: Optional[str], argv: list[str], gate: _InterruptGate
) -> tuple[int, Optional[str], Optional[float]]:
    """Run the program as __main__ with ``argv``, then wait for its non-daemon threads;
    returns (exit code, end reason, when Ctrl-C interrupted it); never raises."""
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    sys.argv = argv[:]
    if module is None:
        sys.path.insert(0, os.path.dirname(os.path.abspath(argv[0])))
    else:
        sys.path.insert(0, os.getcwd())
    try:
        try:
            if module is None:
                runpy.run_path(argv[0], run_name="__main__")
            else:
                runpy.run_module(module, run_name="__main__", alter_sys=True)
            code, reason = 0, None
        except SystemExit as exit_:
            code, reason = _exit_code(exit_.code), None
        except KeyboardInterrupt:
            gate.program_running = False
            return _interrupted()
        except BaseException as exc:
            _print_program_traceback(exc)
            code, reason = 1, f"exception {type(exc).__name__}"
        # Like interpreter shutdown: the program is not over until its threads are.
        try:
            _join_non_daemon_threads(None)
        except KeyboardInterrupt:
            gate.program_running = False
            return _interrupted()
        return code, reason, None
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path


def _interrupted() -> tuple[int, str, float]:
    print("gilwise profile: interrupted; writing the report", file=sys.stderr)
    return INTERRUPTED_EXIT, "SIGINT", time.monotonic()


def _print_program_traceback(exc: BaseException) -> None:
    """The traceback as Python would print it: without gilwise's and runpy's frames."""
    tb = exc.__traceback__
    while tb is not None and (
        tb.tb_frame.f_code.co_filename == __file__ or "runpy" in tb.tb_frame.f_code.co_filename
    ):
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb)


def _join_non_daemon_threads(deadline_s: Optional[float]) -> bool:
    """Wait for the program's non-daemon threads (until ``deadline_s``, monotonic, if
    given); True when none is left."""
    current = threading.current_thread()
    for thread in threading.enumerate():
        if thread is not current and not thread.daemon and thread.is_alive():
            if deadline_s is None:
                thread.join()
            else:
                thread.join(max(0.0, deadline_s - time.monotonic()))
                if thread.is_alive():
                    return False
    return True


def _exit_code(code: Any) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _attach(args: argparse.Namespace, rate_hz: float) -> int:
    from gilwise.probe._attach import attach

    if args.duration <= 0:
        return _usage(f"--duration must be positive, got {args.duration}")
    try:
        profile = attach(
            args.pid,
            args.duration,
            rate_hz,
            command=f"--pid {args.pid}",
            stack_rate_hz=args.stack_rate_hz,
        )
    except ProbeUnavailableError as exc:
        print(f"gilwise profile: {exc}", file=sys.stderr)
        return 1
    _write_report(profile, args.format, args.output, default_stream=sys.stdout)
    return 0


def render(profile: Profile, fmt: str) -> str:
    """The report text; JSON from the model itself if the renderers are not installed."""
    try:
        from gilwise.report import render as render_report
    except ImportError:
        return profile.to_json()
    return render_report(profile, fmt)


def _write_report(profile: Profile, fmt: str, output: Optional[str], default_stream) -> bool:
    """Render and write the report; False (after saying why) when the file cannot be
    written. A file is written whole or not at all (temporary file, then rename)."""
    text = render(profile, fmt)
    if not text.endswith("\n"):
        text += "\n"
    if not output:
        default_stream.write(text)
        default_stream.flush()
        return True
    temporary = _temporary_name(output, os.getpid())
    try:
        with open(temporary, "w", encoding="utf-8") as report:
            report.write(text)
        os.replace(temporary, output)
    except OSError as exc:
        _remove_quietly(temporary)
        print(f"gilwise profile: cannot write the report to {output}: {exc}", file=sys.stderr)
        return False
    print(f"gilwise profile: {fmt} report written to {output}", file=sys.stderr)
    return True


def _temporary_name(output: str, pid: int) -> str:
    return f"{output}.{pid}.tmp"


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)


def _usage(message: str) -> int:
    print(f"gilwise profile: {message}", file=sys.stderr)
    return 2
