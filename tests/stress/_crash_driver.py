"""The program under test of the crash stress test: injects one worker crash per round.

    python tests/stress/_crash_driver.py --first ROUND --rounds N --seed S [--modes ...]

Round r uses mode ``modes[r % len(modes)]`` (default TESTED_MODES; "all": MODES) and crash
kind ``KINDS[(r // len(modes)) % 3]`` (os._exit, SIGKILL, a segfault), so every mode meets
every kind; the crashing item's index
is drawn from ``random.Random(seed + r)``. It prints one JSON line per round as soon as the
round ends, so the harness (test_crash_stress.py) knows which round was running if this
program dies: a crash that reached the caller kills this process, which is the failure the
harness counts as a caller death.

Each round counts, against the known answer ``i * i + 1``:
- lost: a good result that was due but never delivered;
- duplicated: a result delivered more than once;
- wrong: a value that is not the answer, a result delivered for the crashing item, or an
  error other than WorkerCrashedError for it (or none);
- hang: the round did not finish within ROUND_GUARD_S (then this program reports it and
  exits at once; its workers die with it).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import random
import signal
import sys
import threading
import time
from typing import Any, Optional

import gilwise
from gilwise.errors import WorkerCrashedError

MODES = ("map-batches", "submit", "auto-map", "auto-submit", "pipeline-batches", "pipeline-auto")
# What the test runs by default: every mode (`--modes` picks some).
TESTED_MODES = MODES
KINDS = ("exit", "kill", "segv")
ITEMS = 16
# Under auto the first calls are measured in this process (threads), so the crash is placed
# after them; the work per call makes auto choose processes (the total outweighs a start:
# auto keeps a map's small work inline, which a crash would kill by design), and the driver
# starts two warm workers first (see _warm_up).
AUTO_ITEMS = 32
AUTO_FIRST_CRASH = 12
AUTO_SPIN_MS = 10.0
ROUND_GUARD_S = float(os.environ.get("GILWISE_STRESS_GUARD_S", "60"))
# GILWISE_STRESS_TRACE=1 (debugging): print each round's decision (explain()) to stderr, and
# when the crashing call is about to run in this program, print where it runs (its stack)
# and raise instead of crashing, so the rounds go on and the report shows it as wrong.
TRACE = os.environ.get("GILWISE_STRESS_TRACE") == "1"
_DRIVER_PID = os.getpid()


def _spin_ms(milliseconds: float) -> None:
    """Pure-Python work for ``milliseconds`` of this thread's CPU time (not wall time: on a
    busy machine a wall-clock spin is mostly waiting for a core, which is not CPU-bound)."""
    until = time.thread_time() + milliseconds / 1000
    while time.thread_time() < until:
        pass


def task(item: tuple[int, Optional[str], float]) -> int:
    """Work for ``spin_ms``, then crash if this item carries a crash kind; else i * i + 1."""
    index, crash, spin_ms = item
    if spin_ms:
        _spin_ms(spin_ms)
    if crash and TRACE and os.getpid() == _DRIVER_PID:
        import traceback

        stack = "".join(traceback.format_stack())
        print(
            f"TRACE: crash {crash} of item {index} runs in the caller, on thread "
            f"{threading.current_thread().name}:\n{stack}",
            file=sys.stderr,
            flush=True,
        )
        raise RuntimeError(f"item {index} would have crashed the caller ({crash})")
    if crash == "exit":
        os._exit(7)
    elif crash == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif crash == "segv":
        ctypes.string_at(0)
    return index * index + 1


def _trace(text: str) -> None:
    if TRACE:
        print(f"TRACE: {text}", file=sys.stderr, flush=True)


def _trace_executor(executor: gilwise.Executor) -> None:
    """The decision, and the raw samples it came from (CallSample: wall, CPU, run-queue)."""
    if TRACE:
        from gilwise._chooser import key

        chooser = executor._plans[key(task)].chooser
        _trace(
            f"{executor.explain(task)}\n  samples: {chooser.probe.singles} {chooser.probe.pairs}"
        )


def _counts(delivered: dict[int, list[Any]], due: set[int], crash_at: int) -> dict[str, int]:
    """Compare what was delivered per index with what was due."""
    lost = sum(1 for i in due if not delivered.get(i))
    duplicated = sum(len(values) - 1 for values in delivered.values() if len(values) > 1)
    wrong = sum(
        1
        for i, values in delivered.items()
        for value in values
        if i == crash_at or value != i * i + 1
    )
    return {"lost": lost, "duplicated": duplicated, "wrong": wrong}


def _error_ok(error: Optional[BaseException], crash_at: int) -> bool:
    """A WorkerCrashedError whose message names the user's call: ``task((index, ...``."""
    return isinstance(error, WorkerCrashedError) and f"task(({crash_at}," in str(error)


def run_map(items: list, crash_at: int, backend: str, chunksize: Any) -> dict[str, Any]:
    """Executor.map: results before the crash delivered in order, then WorkerCrashedError."""
    delivered: dict[int, list[Any]] = {}
    error: Optional[BaseException] = None
    with gilwise.Executor(backend) as executor:
        results = executor.map(task, items, timeout=ROUND_GUARD_S, chunksize=chunksize)
        position = 0
        try:
            for value in results:
                delivered.setdefault(position, []).append(value)
                position += 1
        except WorkerCrashedError as exc:
            error = exc
        except Exception as exc:  # counted as wrong below, with its type in the report
            error = exc
        _trace_executor(executor)
    counts = _counts(delivered, set(range(crash_at)), crash_at)
    counts["error_ok"] = _error_ok(error, crash_at) and position == crash_at
    counts["error"] = f"{type(error).__name__}: {error}"[:300] if error else "none"
    return counts


def run_submit(items: list, crash_at: int, backend: str) -> dict[str, Any]:
    """Executor.submit: every other future has its answer; the crashing one the error."""
    delivered: dict[int, list[Any]] = {}
    error: Optional[BaseException] = None
    with gilwise.Executor(backend) as executor:
        futures = [executor.submit(task, item) for item in items]
        for index, future in enumerate(futures):
            try:
                delivered.setdefault(index, []).append(future.result(timeout=ROUND_GUARD_S))
            except WorkerCrashedError as exc:
                if index == crash_at:
                    error = exc
            except Exception as exc:
                if index == crash_at:
                    error = exc
        _trace_executor(executor)
    delivered = {i: v for i, v in delivered.items() if v}
    counts = _counts(delivered, set(range(len(items))) - {crash_at}, crash_at)
    counts["error_ok"] = _error_ok(error, crash_at)
    counts["error"] = f"{type(error).__name__}: {error}"[:300] if error else "none"
    return counts


def run_pipeline(items: list, crash_at: int, backend: str, chunksize: Optional[int]) -> dict:
    """A Pipeline stage with on_error="collect": only the crashing item is a dead letter."""
    options: dict[str, Any] = {"chunksize": chunksize} if chunksize else {}
    pipe = gilwise.Pipeline(items).map(
        task, backend=backend, on_error="collect", name="work", **options
    )
    delivered: dict[int, list[Any]] = {}
    answers = {i * i + 1: i for i in range(len(items))}
    for value in pipe:
        delivered.setdefault(answers.get(value, -1), []).append(value)
    dead = pipe.dead_letters
    stats = pipe.stats
    if stats is not None:
        _trace("\n".join(f"{s.name}: {s.backend}: {s.reason}" for s in stats.stages))
    counts = _counts(delivered, set(range(len(items))) - {crash_at}, crash_at)
    error = dead[0].error if len(dead) == 1 else None
    counts["error_ok"] = (
        len(dead) == 1 and dead[0].item[0] == crash_at and _error_ok(error, crash_at)
    )
    counts["error"] = (
        f"{len(dead)} dead letters: "
        + "; ".join(f"item {d.item[0]}: {type(d.error).__name__}: {d.error}" for d in dead)
    )[:300]
    return counts


def run_round(number: int, seed: int, modes: tuple[str, ...] = MODES) -> dict[str, Any]:
    mode = modes[number % len(modes)]
    kind = KINDS[(number // len(modes)) % len(KINDS)]
    rng = random.Random(seed + number)
    auto = "auto" in mode
    count = AUTO_ITEMS if auto else ITEMS
    crash_at = rng.randrange(AUTO_FIRST_CRASH, count) if auto else rng.randrange(count)
    spin_ms = AUTO_SPIN_MS if auto else 0.0
    items = [(i, kind if i == crash_at else None, spin_ms) for i in range(count)]
    if mode == "map-batches":
        counts = run_map(items, crash_at, "process", 4)
    elif mode == "submit":
        counts = run_submit(items, crash_at, "process")
    elif mode == "auto-map":
        counts = run_map(items, crash_at, "auto", "auto")
    elif mode == "auto-submit":
        counts = run_submit(items, crash_at, "auto")
    elif mode == "pipeline-batches":
        counts = run_pipeline(items, crash_at, "process", 4)
    else:
        counts = run_pipeline(items, crash_at, "auto", None)
    return {"round": number, "mode": mode, "kind": kind, "crash_at": crash_at, **counts}


def _warm_up() -> None:
    """Two warm process workers, so that starting workers costs auto nothing to weigh."""
    with gilwise.Executor("process", 2) as executor:
        for future in [executor.submit(time.sleep, 0.05) for _ in range(2)]:
            future.result(ROUND_GUARD_S)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--rounds", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--modes", nargs="+", choices=(*MODES, "all"), default=TESTED_MODES)
    args = parser.parse_args(argv)
    modes = MODES if "all" in args.modes else tuple(args.modes)
    if any("auto" in mode for mode in modes):
        _warm_up()
    for number in range(args.first, args.first + args.rounds):
        report: dict[str, Any] = {}
        started = time.perf_counter()

        def play(number: int = number, report: dict[str, Any] = report) -> None:
            try:
                report.update(run_round(number, args.seed, modes))
            except BaseException as exc:  # reported, so the harness sees it as "wrong"
                report.update(round=number, unexpected=f"{type(exc).__name__}: {exc}"[:300])

        player = threading.Thread(target=play, name=f"round-{number}", daemon=True)
        player.start()
        player.join(ROUND_GUARD_S)
        if player.is_alive():
            print(json.dumps({"round": number, "hang": True}), flush=True)
            if TRACE:
                import faulthandler

                faulthandler.dump_traceback(all_threads=True)
            os._exit(3)  # the round's threads may be stuck: do not wait for them
        report["seconds"] = round(time.perf_counter() - started, 3)
        _trace(f"round {number} done: {json.dumps(report)}")
        print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
