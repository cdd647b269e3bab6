"""gilwise.Executor() (auto) and gilwise.map beside the pools users pick by hand, in one run.

    python benchmarks/bench_peers.py [--rounds 3] [--quick] [--tools ...] [--workloads ...]

Every cell is one fresh Python process running one job as a user's script would: it imports
what the script imports (for the costly-import row, a generated module whose import keeps a
CPU busy for 0.25 s), then, inside the timed region, creates the pool, maps the workload,
consumes every result and closes the pool. Cells run in interleaved rounds (round 1 of every
workload and tool, then round 2, ...) so a burst of load from elsewhere hurts all alike; the
table shows each cell's median. Every tool's results are checked against the sequential
loop's. A cell that runs past ``--cell-limit-s`` is stopped (its process group killed) and
shown as "> N s"; it is not run again in later rounds.

Tools: a sequential loop, ThreadPoolExecutor(), ProcessPoolExecutor() (the default start
method), multiprocessing.Pool(), joblib.Parallel(n_jobs=-1), gilwise.map, and
gilwise.Executor() (backend="auto"). The last column is the best time of the tools a user
picks by hand (sequential, the stdlib pools, joblib) divided by auto's: >= 1 means auto is
at least as fast as the best of them (target: >= 0.95 on every row).

Rows: the workloads (calibrated on this machine at start: "5 ms" means a pure-Python loop
that took 5 ms here), x + 1 over 1e6 items, and "second job": the same program running a
second job with the same tool (the first one untimed), where pools that are reused (joblib's
loky executor, gilwise's worker service) no longer pay their start.

Then the first-result latency of a new process pool: gilwise.Executor(backend="process")
against ProcessPoolExecutor(fork), with and without the costly import.

The ``--cell`` mode is the child's side; it is not meant to be called by hand.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import multiprocessing
import os
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import _fresh_script  # noqa: E402
import _peer_workloads as wl  # noqa: E402

TOOLS = [
    "sequential",
    "ThreadPool()",
    "ProcessPool()",
    "mp.Pool()",
    "joblib(-1)",
    "gilwise.map",
    "gilwise auto",
]
AUTO = "gilwise auto"
# The columns the last one compares auto with: what a user would otherwise pick by hand.
HAND_PICKED = ["sequential", "ThreadPool()", "ProcessPool()", "mp.Pool()", "joblib(-1)"]
HTTP_LATENCY_MS = 20
HTTP_BODY_BYTES = 16 * 1024


# --- workloads ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """Counts and durations of one run (the full run's, or --quick's tiny ones)."""

    coarse_calls: int = 120
    coarse_ms: float = 5.0
    fine_calls: int = 400
    mixed_calls: int = 80
    json_calls: int = 120
    json_ms: float = 3.0
    import_cost_s: float = 0.25
    costly_calls: int = 40
    hash_calls: int = 32
    sleep_calls: int = 32
    http_calls: int = 32
    increments: int = 1_000_000
    second_job_calls: int = 100
    second_job_ms: float = 2.0


QUICK = Sizes(
    coarse_calls=8,
    coarse_ms=2.0,
    fine_calls=16,
    mixed_calls=10,
    json_calls=8,
    json_ms=1.0,
    import_cost_s=0.05,
    costly_calls=4,
    hash_calls=4,
    sleep_calls=4,
    http_calls=4,
    increments=5_000,
    second_job_calls=8,
    second_job_ms=1.0,
)

WORKLOAD_LABELS = {
    "coarse": "coarse pure-Python CPU, {coarse_calls} calls of ~{coarse_ms:g} ms",
    "fine": "pure-Python CPU, {fine_calls} calls of ~1 ms",
    "mixed": "mixed durations, {mixed_calls} calls (0.3 ms, every 10th 20 ms)",
    "json": "json encode/decode, {json_calls} calls of ~{json_ms:g} ms",
    "costly": "{costly_calls} calls of 1 ms in a module whose import costs {import_cost_s:g} s",
    "hash": "hashlib sha256 (releases the GIL), {hash_calls} calls",
    "sleep": "sleep I/O, {sleep_calls} calls of 20 ms",
    "http": "HTTP GET, local server, 20 ms latency, {http_calls} calls",
    "increment": "x + 1 over {increments:,} items",
    "second": "second job in the same process: {second_job_calls} calls of ~{second_job_ms:g} ms",
}


def workload(key: str, params: dict[str, Any]) -> tuple[Callable[[Any], int], list]:
    """The function and the inputs of one row, rebuilt identically in every cell's process."""
    sizes = Sizes(**params["sizes"])
    per_ms = params["spin_per_ms"]
    if key == "coarse":
        return wl.spin, [round(per_ms * sizes.coarse_ms)] * sizes.coarse_calls
    if key == "fine":
        return wl.spin, [per_ms] * sizes.fine_calls
    if key == "mixed":
        small, large = round(per_ms * 0.3), per_ms * 20
        return wl.spin, [large if i % 10 == 9 else small for i in range(sizes.mixed_calls)]
    if key == "json":
        return wl.json_roundtrip, [params["json_rounds"]] * sizes.json_calls
    if key == "costly":
        costly = sys.modules[wl.COSTLY_MODULE_NAME]  # imported by the cell, as a script would
        return costly.work, [1] * sizes.costly_calls
    if key == "hash":
        return wl.digest, [1] * sizes.hash_calls
    if key == "sleep":
        return wl.nap, [20] * sizes.sleep_calls
    if key == "http":
        return wl.fetch, [params["url"]] * sizes.http_calls
    if key == "increment":
        return wl.inc, list(range(sizes.increments))
    if key == "second":
        return wl.spin, [round(per_ms * sizes.second_job_ms)] * sizes.second_job_calls
    raise ValueError(f"unknown workload {key!r}; known: {', '.join(WORKLOAD_LABELS)}")


# --- the tools, as a script would call them -------------------------------------------------


def _sequential(fn: Callable, items: list) -> tuple[list, str]:
    return [fn(item) for item in items], ""


def _thread_pool(fn: Callable, items: list) -> tuple[list, str]:
    with cf.ThreadPoolExecutor() as pool:
        return list(pool.map(fn, items)), ""


def _process_pool(fn: Callable, items: list) -> tuple[list, str]:
    with cf.ProcessPoolExecutor() as pool:
        return list(pool.map(fn, items)), ""


def _mp_pool(fn: Callable, items: list) -> tuple[list, str]:
    with multiprocessing.Pool() as pool:
        return pool.map(fn, items), ""


def _joblib(fn: Callable, items: list) -> tuple[list, str]:
    from joblib import Parallel, delayed

    return Parallel(n_jobs=-1)(delayed(fn)(item) for item in items), ""


def _gilwise_map(fn: Callable, items: list) -> tuple[list, str]:
    import gilwise

    return list(gilwise.map(fn, items)), ""


def _gilwise_auto(fn: Callable, items: list) -> tuple[list, str]:
    import gilwise

    with gilwise.Executor() as executor:
        results = list(executor.map(fn, items))
        chosen = [
            f"{getattr(d, 'backend', '?')} x{getattr(d, 'workers', '?')}"
            for d in executor.decisions.values()
        ]
    return results, ", ".join(chosen)


RUNNERS: dict[str, Callable[[Callable, list], tuple[list, str]]] = {
    "sequential": _sequential,
    "ThreadPool()": _thread_pool,
    "ProcessPool()": _process_pool,
    "mp.Pool()": _mp_pool,
    "joblib(-1)": _joblib,
    "gilwise.map": _gilwise_map,
    "gilwise auto": _gilwise_auto,
}


# --- the child's side: one cell ------------------------------------------------------------


def _checksum(results: list) -> int:
    return hash(tuple(results)) & 0xFFFFFFFF


def _stop_after(limit_s: float) -> None:
    """Past ``limit_s``, say so and kill this cell's whole process group (its pools too).

    A timer signal, not a timer thread: a script has one thread when it creates its pool, and
    a thread here would change what the tools do (gilwise cannot fork its warm zygote from a
    program with threads and starts a fresh interpreter instead; fork-based pools copy the
    thread's state). ``_stop_after(0)`` cancels."""

    def stop(signum: int, frame: Any) -> None:
        sys.stdout.write(json.dumps({"timeout": True}) + "\n")
        sys.stdout.flush()
        os.killpg(os.getpgid(0), signal.SIGKILL)

    signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, limit_s)


def _import_tool(tool: str) -> None:
    """Import what the cell's tool needs before the timed region, as a script's imports at
    its top are: the cell times the pool, not the import of its library."""
    if tool.startswith("gilwise"):
        import gilwise

        _ = gilwise.Executor, gilwise.map  # gilwise imports these lazily: import them now
    if tool.startswith("joblib"):
        import joblib  # noqa: F401


def run_cell(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one job (or, for "second", two: the first untimed) and time it."""
    params = spec["params"]
    _import_tool(spec.get("tool") or spec.get("latency", ""))
    sys.path.insert(0, params["costly_dir"])  # as if the module sat beside the script
    if spec["workload"] == "costly" or spec.get("latency_costly"):
        __import__(wl.COSTLY_MODULE_NAME)
    if "latency" in spec:
        return _first_result(spec["latency"], bool(spec.get("latency_costly")))
    fn, items = workload(spec["workload"], params)
    runner = RUNNERS[spec["tool"]]
    if spec["workload"] == "second":
        runner(fn, items)
    _stop_after(params["cell_limit_s"])
    started = time.perf_counter()
    results, note = runner(fn, items)
    elapsed_s = time.perf_counter() - started
    _stop_after(0)
    return {"seconds": elapsed_s, "check": _checksum(results), "count": len(results), "note": note}


def _first_result(kind: str, costly: bool) -> dict[str, Any]:
    """Seconds from creating a new process pool to its first result."""
    fn: Callable[[int], int] = sys.modules[wl.COSTLY_MODULE_NAME].work if costly else wl.inc
    argument = 0 if costly else 1
    started = time.perf_counter()
    if kind == "gilwise":
        import gilwise

        pool: Any = gilwise.Executor(backend="process")
    else:
        pool = cf.ProcessPoolExecutor(mp_context=multiprocessing.get_context("fork"))
    result = pool.submit(fn, argument).result()
    elapsed_s = time.perf_counter() - started
    pool.shutdown()
    return {"seconds": elapsed_s, "check": result, "count": 1, "note": ""}


# --- the parent's side: rounds, cells, table -----------------------------------------------


@dataclass
class Cell:
    times_s: list[float]
    timed_out: bool = False
    error: str = ""
    note: str = ""


# Per tool: processes of its cells still alive a second after the cell's program ended.
LEFTOVERS: dict[str, int] = {}


def spawn_cell(spec: dict[str, Any], hang_guard_s: float) -> dict[str, Any]:
    """Run one cell in a fresh Python; count what it left behind."""
    answer, left = _fresh_script.run(Path(__file__).resolve(), "--cell", spec, hang_guard_s)
    if left:
        tool = spec.get("tool") or f"first result ({spec.get('latency')})"
        LEFTOVERS[tool] = LEFTOVERS.get(tool, 0) + left
    return answer


def measure(
    workloads: list[str], tools: list[str], rounds: int, params: dict[str, Any]
) -> dict[str, dict[str, Cell]]:
    cells = {key: {tool: Cell([]) for tool in tools} for key in workloads}
    expected: dict[str, tuple[int, int]] = {}
    hang_guard_s = params["cell_limit_s"] + 60
    for number in range(rounds):
        for key in workloads:
            print(f"round {number + 1}/{rounds}: {key}", file=sys.stderr, flush=True)
            for tool in tools:
                cell = cells[key][tool]
                if cell.timed_out or cell.error:
                    continue
                answer = spawn_cell({"tool": tool, "workload": key, "params": params}, hang_guard_s)
                if answer.get("timeout"):
                    cell.timed_out = True
                elif "error" in answer:
                    cell.error = answer["error"]
                    print(f"  {tool} on {key}: {cell.error}", file=sys.stderr)
                else:
                    outcome = (answer["check"], answer["count"])
                    reference = expected.setdefault(key, outcome)
                    if outcome != reference:
                        cell.error = f"wrong results: {outcome} != {reference}"
                    cell.times_s.append(answer["seconds"])
                    cell.note = answer["note"] or cell.note
    return cells


def measure_latency(rounds: int, params: dict[str, Any]) -> dict[tuple[str, bool], Cell]:
    cells = {(kind, costly): Cell([]) for costly in (False, True) for kind in ("fork", "gilwise")}
    for _ in range(rounds):
        for (kind, costly), cell in cells.items():
            spec = {"latency": kind, "latency_costly": costly, "workload": "", "params": params}
            answer = spawn_cell(spec, params["cell_limit_s"] + 60)
            if "error" in answer:
                cell.error = answer["error"]
            else:
                cell.times_s.append(answer["seconds"])
    return cells


def _seconds_text(seconds: float) -> str:
    return f"{seconds:.3f} s" if seconds < 0.1 else f"{seconds:.2f} s"


def _cell_text(cell: Cell, limit_s: float) -> str:
    if cell.error:
        return "error"
    if cell.timed_out:
        return f"> {limit_s:g} s"
    return _seconds_text(statistics.median(cell.times_s))


def _median(cell: Optional[Cell]) -> Optional[float]:
    if cell is None or cell.error or cell.timed_out or not cell.times_s:
        return None
    return statistics.median(cell.times_s)


def paired_ratios(row: dict[str, Cell]) -> list[float]:
    """Per round, the best hand-picked tool's time over auto's in that round: the cells of
    one round run back to back, so a machine that speeds up or slows down between rounds
    (this one does, by 10-30%) moves both sides of each ratio together."""
    auto = row.get(AUTO)
    if auto is None or auto.error or auto.timed_out:
        return []
    ratios = []
    for index, auto_s in enumerate(auto.times_s):
        others = [
            cell.times_s[index]
            for tool in HAND_PICKED
            if (cell := row.get(tool)) is not None
            and not cell.error
            and not cell.timed_out
            and len(cell.times_s) > index
        ]
        if others:
            ratios.append(min(others) / auto_s)
    return ratios


def table_lines(
    cells: dict[str, dict[str, Cell]], tools: list[str], sizes: Sizes, limit_s: float
) -> list[str]:
    lines = [
        "| workload | "
        + " | ".join(tools)
        + " | auto / best of others | same, round by round: median (range) |",
        "|---|" + "---:|" * (len(tools) + 2),
    ]
    for key, row in cells.items():
        label = WORKLOAD_LABELS[key].format(**sizes.__dict__)
        texts = [_cell_text(row[tool], limit_s) for tool in tools]
        auto_s = _median(row.get(AUTO))
        others = [m for tool in HAND_PICKED if (m := _median(row.get(tool))) is not None]
        ratio = f"{min(others) / auto_s:.2f}" if auto_s and others else "n/a"
        paired = paired_ratios(row)
        by_round = (
            f"{statistics.median(paired):.2f} ({min(paired):.2f}-{max(paired):.2f})"
            if paired
            else "n/a"
        )
        lines.append(f"| {label} | " + " | ".join(texts) + f" | {ratio} | {by_round} |")
    return lines


def _loops_at_once(copies: int, iterations: int) -> float:
    """Wall seconds for ``copies`` forked processes to each run the spin loop at once (the
    processes are started and waiting before the clock starts: no pool, no start cost)."""
    go_read, go_write = os.pipe()
    done_read, done_write = os.pipe()
    pids = []
    for _ in range(copies):
        pid = os.fork()
        if pid == 0:  # the child: wait for the start, spin, report, leave
            try:
                os.read(go_read, 1)
                wl.spin(iterations)
                os.write(done_write, b"d")
            finally:
                os._exit(0)
        pids.append(pid)
    time.sleep(0.1)  # every child at its read
    started = time.perf_counter()
    os.write(go_write, b"g" * copies)
    for _ in range(copies):
        os.read(done_read, 1)
    wall_s = time.perf_counter() - started
    for pid in pids:
        os.waitpid(pid, 0)
    for fd in (go_read, go_write, done_read, done_write):
        os.close(fd)
    return wall_s


def parallel_ceiling(spin_per_ms: int, rounds: int, loop_ms: float = 300.0) -> float:
    """How many loops' worth of pure-Python work two cores do here in the time of one: 2.0
    on two full-speed cores; less where two loops at once run slower (vCPUs sharing a
    physical core, a busy host). The ceiling of every pool on the CPU rows of this run."""
    iterations = int(spin_per_ms * loop_ms)
    ratios = []
    for _ in range(rounds):
        one_s = _loops_at_once(1, iterations)
        two_s = _loops_at_once(2, iterations)
        ratios.append(2 * one_s / two_s)
    return statistics.median(ratios)


def target_lines(
    cells: dict[str, dict[str, Cell]],
    latency: dict[tuple[str, bool], Cell],
    ceiling: Optional[float] = None,
) -> list[str]:
    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    lines = []
    ratios = []
    for key, row in cells.items():
        auto_s = _median(row.get(AUTO))
        others = [m for tool in HAND_PICKED if (m := _median(row.get(tool))) is not None]
        if auto_s and others:
            ratios.append((min(others) / auto_s, key))
    if ratios:
        below = [f"{key} ({ratio:.2f})" for ratio, key in ratios if ratio < 0.95]
        lines.append(
            f"- auto >= 0.95x the best hand-picked tool on every row: {verdict(not below)}"
            + (f"; below: {', '.join(below)}" if below else "")
        )
    coarse = cells.get("coarse", {})
    seq_s, auto_s = _median(coarse.get("sequential")), _median(coarse.get(AUTO))
    if seq_s and auto_s:
        peers = [m for tool in HAND_PICKED if (m := _median(coarse.get(tool))) is not None]
        context = []
        if peers:
            context.append(f"best hand-picked {seq_s / min(peers):.2f}x")
        if ceiling is not None:
            context.append(f"two loops at once here: {ceiling:.2f}x one")
        lines.append(
            f"- coarse CPU: auto {seq_s / auto_s:.2f}x sequential (target >= 1.85x"
            + (f"; {', '.join(context)}" if context else "")
            + f"): {verdict(seq_s / auto_s >= 1.85)}"
        )
    increment = cells.get("increment", {})
    seq_s, map_s = _median(increment.get("sequential")), _median(increment.get("gilwise.map"))
    if seq_s and map_s:
        lines.append(
            f"- x + 1: gilwise.map {map_s / seq_s:.2f}x the plain loop's time (target <= 1.3x): "
            f"{verdict(map_s / seq_s <= 1.3)}"
        )
    for costly, what, allowed in (
        (False, "first result", lambda fork_s: 2 * fork_s + 0.01),
        (True, "first result with the costly import", lambda fork_s: 1.2 * fork_s),
    ):
        fork_s = _median(latency.get(("fork", costly)))
        new_s = _median(latency.get(("gilwise", costly)))
        if fork_s and new_s:
            rule = "1.2x fork" if costly else "2x fork + 10 ms"
            lines.append(
                f"- {what}: {new_s * 1000:.0f} ms vs fork {fork_s * 1000:.0f} ms (target <= "
                f"{rule} = {allowed(fork_s) * 1000:.0f} ms): {verdict(new_s <= allowed(fork_s))}"
            )
    return lines


def latency_lines(latency: dict[tuple[str, bool], Cell]) -> list[str]:
    lines = [
        "| first result of a new pool | ProcessPoolExecutor(fork) | "
        'gilwise.Executor(backend="process") | ratio |',
        "|---|---:|---:|---:|",
    ]
    for costly, label in ((False, "x + 1"), (True, "1 ms in the costly-import module")):
        fork, new = latency[("fork", costly)], latency[("gilwise", costly)]
        fork_s, new_s = _median(fork), _median(new)
        ratio = f"{new_s / fork_s:.2f}" if fork_s and new_s else "n/a"
        lines.append(f"| {label} | {_cell_text(fork, 0)} | {_cell_text(new, 0)} | {ratio} |")
    return lines


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=None, help="default 3 (--quick: 1)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--tools", nargs="+", choices=TOOLS, default=TOOLS)
    parser.add_argument("--workloads", nargs="+", choices=list(WORKLOAD_LABELS))
    parser.add_argument("--cell-limit-s", type=float, default=None, help="default 5 (quick: 5)")
    parser.add_argument("--no-latency", action="store_true", help="skip the first-result table")
    parser.add_argument("--cell", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cell:
        print(json.dumps(run_cell(json.loads(args.cell))))
        return 0

    from gilwise._runtime import current
    from gilwise.demo._server import LocalServer

    sizes = QUICK if args.quick else Sizes()
    rounds = args.rounds or (1 if args.quick else 3)
    workloads = args.workloads or list(WORKLOAD_LABELS)
    tools = [tool for tool in TOOLS if tool in args.tools]
    facts = current()
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    spin_per_ms = wl.calibrate(wl.spin, 200_000, 0.001)
    with tempfile.TemporaryDirectory(prefix="gilwise-bench-") as costly_dir:
        wl.write_costly_module(Path(costly_dir), sizes.import_cost_s, spin_per_ms)
        with LocalServer(latency_ms=HTTP_LATENCY_MS, body_bytes=HTTP_BODY_BYTES) as server:
            params = {
                "sizes": sizes.__dict__,
                "spin_per_ms": spin_per_ms,
                "json_rounds": wl.calibrate(wl.json_roundtrip, 10, sizes.json_ms / 1000),
                "url": server.url("/item"),
                "costly_dir": costly_dir,
                "cell_limit_s": args.cell_limit_s or 5.0,
            }
            ceiling = parallel_ceiling(spin_per_ms, rounds)
            cells = measure(workloads, tools, rounds, params)
            latency = {} if args.no_latency else measure_latency(rounds, params)
    total_s = time.perf_counter() - started

    limit_s = params["cell_limit_s"]
    print(
        f"Python {facts.version_text}, {facts.cores} cores, medians of {rounds} interleaved "
        f"round(s), each cell a fresh process creating its pool inside the timed region; "
        f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after (a shared "
        f"machine: compare within this run only); whole run {total_s:.0f} s.\n"
    )
    print(
        f"Two pure-Python loops at once (forked processes, already started) did {ceiling:.2f}x "
        "the work of one loop alone in the same time (2.00 on two full-speed cores): the "
        "ceiling of every pool on the CPU rows of this run.\n"
    )
    print("\n".join(table_lines(cells, tools, sizes, limit_s)))
    notes = [
        f"{key}: {row[AUTO].note}" for key, row in cells.items() if AUTO in row and row[AUTO].note
    ]
    if notes:
        print("\nauto chose: " + "; ".join(notes))
    errors = [
        f"{tool} on {key}: {cell.error}"
        for key, row in cells.items()
        for tool, cell in row.items()
        if cell.error
    ]
    if errors:
        print("\nerrors: " + "; ".join(errors))
    if latency:
        print()
        print("\n".join(latency_lines(latency)))
    if LEFTOVERS:
        print(
            "\nprocesses still alive 1 s after their cell's program ended (then killed): "
            + ", ".join(f"{tool}: {count}" for tool, count in LEFTOVERS.items())
        )
    targets = target_lines(cells, latency, ceiling)
    if targets:
        print("\nTargets (issue 10):")
        print("\n".join(targets))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
