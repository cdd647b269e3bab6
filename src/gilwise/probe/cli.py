"""``gilwise profile``: run a script or module under the monitor (like cProfile), or attach.

Where the report goes: to ``-o FILE`` if given; otherwise to stderr when gilwise runs a
script or module (its stdout belongs to the program, so piping it stays clean), and to
stdout with ``--pid`` (there is no program output). The profiled program's exit code is
returned; the report is still written when it raises (exit 1, traceback on stderr), calls
sys.exit(n) (exit n) or is interrupted with Ctrl-C (exit 130). A program that calls
os._exit() ends the process before any report can be written.
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
import threading
import traceback
from typing import Any, Optional

from gilwise.errors import ProbeUnavailableError
from gilwise.model import Profile
from gilwise.probe._monitor import DEFAULT_RATE_HZ, DEFAULT_STACK_RATE_HZ, MAX_RATE_HZ, Monitor

INTERRUPTED_EXIT = 130


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
        if args.script is not None or args.args:
            return _usage("--pid attaches to a running process: do not also give a script")
        return _attach(args, rate_hz)
    if args.module is None and args.script is None:
        return _usage("give a script (gilwise profile script.py), -m MODULE or --pid PID")
    if args.module is not None:
        argv = [args.module, *([args.script] if args.script is not None else []), *args.args]
        command = "python -m " + " ".join(argv)
    else:
        if not os.path.isfile(args.script):
            return _usage(f"no such script: {args.script}")
        argv = [args.script, *args.args]
        command = "python " + " ".join(argv)
    monitor = Monitor(rate_hz, stack_rate_hz=args.stack_rate_hz, command=command)
    try:
        monitor.start()
    except ProbeUnavailableError as exc:
        print(f"gilwise profile: {exc}", file=sys.stderr)
        return 1
    exit_code = _run_program(args.module, argv)
    profile = monitor.stop()
    _write_report(profile, args.format, args.output, default_stream=sys.stderr)
    return exit_code


def _run_program(module: Optional[str], argv: list[str]) -> int:
    """Run the program as __main__ with ``argv``; returns its exit code (never raises)."""
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
            code = 0
        except SystemExit as exit_:
            code = _exit_code(exit_.code)
        except KeyboardInterrupt:
            print("gilwise profile: interrupted; writing the report", file=sys.stderr)
            return INTERRUPTED_EXIT
        except BaseException as exc:
            _print_program_traceback(exc)
            code = 1
        # Like interpreter shutdown: the program is not over until its threads are.
        try:
            _join_non_daemon_threads()
        except KeyboardInterrupt:
            print("gilwise profile: interrupted; writing the report", file=sys.stderr)
            return INTERRUPTED_EXIT
        return code
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path


def _print_program_traceback(exc: BaseException) -> None:
    """The traceback as Python would print it: without gilwise's and runpy's frames."""
    tb = exc.__traceback__
    while tb is not None and (
        tb.tb_frame.f_code.co_filename == __file__ or "runpy" in tb.tb_frame.f_code.co_filename
    ):
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb)


def _join_non_daemon_threads() -> None:
    current = threading.current_thread()
    for thread in threading.enumerate():
        if thread is not current and not thread.daemon and thread.is_alive():
            thread.join()


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


def _write_report(profile: Profile, fmt: str, output: Optional[str], default_stream) -> None:
    text = render(profile, fmt)
    if not text.endswith("\n"):
        text += "\n"
    if output:
        with open(output, "w", encoding="utf-8") as report:
            report.write(text)
        print(f"gilwise profile: {fmt} report written to {output}", file=sys.stderr)
    else:
        default_stream.write(text)
        default_stream.flush()


def _usage(message: str) -> int:
    print(f"gilwise profile: {message}", file=sys.stderr)
    return 2
