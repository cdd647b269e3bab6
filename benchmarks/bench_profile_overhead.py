"""How much gilwise's profiler slows a program, and how its GIL numbers compare with peers.

    python benchmarks/bench_profile_overhead.py [--reps 40] [--work 5000000] [--seconds 2]
        [--starts 30] [--only-start]

Part 0 (start + stop): ``with gilwise.monitor(): pass`` repeated in one process, medians,
for each way the sampler process starts (forked, the default where safe, or a fresh
interpreter), and the first monitor of a fresh process (which also finds the frame layout).

Part 1 (overhead): 2 pure-Python CPU threads doing a fixed amount of work, in rounds: each
round runs the workload unprofiled, unprofiled again (the A/A noise floor), and under
``gilwise.monitor()`` with its defaults and other stack settings, in a shuffled order, in one
process. Each setting's figure is the median over rounds of its wall time divided by the
same round's unprofiled time, with a bootstrap interval. The start-up and stop costs of the
monitor are reported separately: they are paid once per run, not per second.

Part 2 (agreement): the same known workloads measured by gilwise (held fraction), py-spy
(``py-spy record --gil``: share of samples with a thread holding the GIL) and gilknocker
(its contention metric, which is 0 when nothing waits for the GIL), where installed (the
``[bench]`` extra). Prints markdown tables; every number is a ratio, measured side by side.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

import gilwise

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import workloads


def count_down(iterations: int) -> None:
    while iterations:
        iterations -= 1


def two_threads(iterations: int) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) for two threads each counting down
    ``iterations``. The CPU figure includes gilwise's in-process stack thread and is immune
    to other programs competing for the cores."""
    threads = [threading.Thread(target=count_down, args=(iterations,)) for _ in range(2)]
    start, start_cpu = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start, time.process_time() - start_cpu


# The settings compared, each against the unprofiled run of the same round.
SETTINGS: dict[str, Optional[dict]] = {
    "unprofiled again (the noise floor)": None,
    "`gilwise.monitor()` defaults: 1 kHz states, stacks read remotely at 250 Hz": {},
    "no stacks (`stack_rate_hz=None`)": {"stack_rate_hz": None},
    "in-process stacks at 50 Hz (`stack_source='in-process'`)": {"stack_source": "in-process"},
    "in-process stacks at 100 Hz (gilwise 0.1.0's default)": {
        "stack_source": "in-process",
        "stack_rate_hz": 100,
    },
}


def _median_ci(values: list[float], rounds: int = 2000) -> tuple[float, float]:
    """A 95% bootstrap interval of the median (seeded: the same data gives the same text)."""
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(rounds))
    return medians[int(0.025 * rounds)], medians[int(0.975 * rounds) - 1]


def overhead(reps: int, iterations: int) -> None:
    two_threads(iterations // 10)  # warm up
    names = ["unprofiled", *SETTINGS]
    walls: dict[str, list[float]] = {name: [] for name in names}
    starts_s, stops_s, sampler_share = [], [], []
    shuffle = random.Random(1)
    for _ in range(reps):
        order = names[:]
        shuffle.shuffle(order)  # no setting always runs first or after another
        for name in order:
            options = SETTINGS.get(name)
            if options is None:
                walls[name].append(two_threads(iterations)[0])
                continue
            begin = time.perf_counter()
            mon = gilwise.monitor(**options)
            mon.start()
            started = time.perf_counter()
            walls[name].append(two_threads(iterations)[0])
            stop_begin = time.perf_counter()
            profile = mon.stop()
            if not options:
                stops_s.append(time.perf_counter() - stop_begin)
                starts_s.append(started - begin)
                sampler_share.append(profile.extra["sampler_cpu_s"] / profile.wall_s)
    plain = walls["unprofiled"]
    print("## Overhead of `gilwise.monitor()` on 2 pure-Python CPU threads\n")
    print(
        f"{reps} rounds; each round runs every setting once in a shuffled order "
        f"({statistics.median(plain):.2f} s unprofiled, median). A setting's figure is the "
        "median over rounds of its wall time / the unprofiled wall time of the same round, "
        "with a 95% bootstrap interval. Monitor start and stop are outside the timed region "
        "(below: paid once per run, not per second).\n"
    )
    print("| setting | profiled / unprofiled (median) | 95% interval |")
    print("|---|---|---|")
    for name in SETTINGS:
        ratios = [run / base for run, base in zip(walls[name], plain)]
        low, high = _median_ci(ratios)
        print(f"| {name} | {statistics.median(ratios):.3f} | {low:.3f} - {high:.3f} |")
    start_ms = statistics.median(starts_s) * 1000
    stop_ms = statistics.median(stops_s) * 1000
    print()
    print("| once per run (defaults) | median |")
    print("|---|---|")
    print(f"| monitor start (sampler process; GIL, frame layout found once) | {start_ms:.0f} ms |")
    print(f"| monitor stop + build the profile | {stop_ms:.0f} ms |")
    print(f"| sampler child CPU, share of one core | {statistics.median(sampler_share):.1%} |")
    print()


FIRST_MONITOR = """
import time
begin = time.perf_counter()
import gilwise
monitor = gilwise.monitor  # loads the profiler's modules
imported = time.perf_counter()
mon = monitor(); mon.start()
started = time.perf_counter()
mon.stop()
print(imported - begin, started - imported, time.perf_counter() - started)
"""


def start_stop(reps: int) -> None:
    from gilwise.probe import _child

    print("## Monitor start + stop (`with gilwise.monitor(): pass`)\n")
    print(
        f"Medians of {reps} in one process (after one warm-up), and of 5 fresh processes "
        "timing their first monitor. The sampler is forked when the process has one thread "
        f"and <= {_child.FORK_MAX_RSS_BYTES >> 20} MiB resident, else a fresh interpreter.\n"
    )
    print("| sampler start | start | stop | start + stop |")
    print("|---|---|---|---|")
    saved = _child.start_method
    try:
        for method, label in (
            ("auto", f"default (this process: {'fork' if _child.fork_is_safe() else 'spawn'})"),
            ("fork", "forked"),
            ("spawn", "fresh interpreter"),
        ):
            _child.start_method = method
            starts, stops = [], []
            for _ in range(reps + 1):
                begin = time.perf_counter()
                mon = gilwise.monitor()
                mon.start()
                started = time.perf_counter()
                mon.stop()
                starts.append(started - begin)
                stops.append(time.perf_counter() - started)
            starts, stops = starts[1:], stops[1:]
            both = [a + b for a, b in zip(starts, stops)]
            print(
                f"| {label} | {statistics.median(starts) * 1000:.1f} ms "
                f"| {statistics.median(stops) * 1000:.1f} ms "
                f"| {statistics.median(both) * 1000:.1f} ms |"
            )
    finally:
        _child.start_method = saved
    firsts = []
    for _ in range(5):
        out = subprocess.run(
            [sys.executable, "-c", FIRST_MONITOR], capture_output=True, text=True, check=True
        ).stdout.split()
        firsts.append([float(value) for value in out])
    import_s, start_s, stop_s = (statistics.median(column) for column in zip(*firsts))
    both_s = statistics.median(first[1] + first[2] for first in firsts)
    print(
        f"| first monitor of a process (default) | {start_s * 1000:.1f} ms "
        f"| {stop_s * 1000:.1f} ms | {both_s * 1000:.1f} ms |"
    )
    print(
        f"\nBefore its first monitor a process imports gilwise and the profiler's modules: "
        f"{import_s * 1000:.0f} ms (median; compiled from source when no .pyc can be written)."
    )
    print()


VICTIM = """
import sys
sys.path.insert(0, {tests!r})
import workloads
kind, seconds = sys.argv[1], float(sys.argv[2])
if kind == "gilwise":
    import gilwise
    mon = gilwise.monitor(); mon.start()
elif kind == "gilknocker":
    from gilknocker import KnockKnock
    knocker = KnockKnock(polling_interval_micros=1000, sampling_interval_micros=None,
                         sleeping_interval_micros=None)
    knocker.start()
result = {run}
truth = result if isinstance(result, float) else None
if kind == "gilwise":
    print(mon.stop().held_fraction, truth)
elif kind == "gilknocker":
    knocker.stop(); print(knocker.contention_metric, truth)
"""

SCENARIOS = {
    "1 spinner": "workloads.spinner(seconds)",
    "2 spinners": "workloads.run_threads(workloads.spinner, 2, seconds)",
    "spinner at 30% duty": "workloads.duty_spinner(seconds, 0.3)",
    "2 sha256 threads": "workloads.run_threads(workloads.hasher, 2, seconds)",
    "2 sleeping threads": "workloads.run_threads(workloads.sleeper, 2, seconds)",
}


def _victim(tmp: Path, name: str) -> Path:
    path = tmp / f"victim_{abs(hash(name))}.py"
    tests_dir = str(Path(workloads.__file__).resolve().parent)
    path.write_text(VICTIM.format(tests=tests_dir, run=SCENARIOS[name]))
    return path


def _run(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        return f"error: {done.stderr.strip().splitlines()[-1:] or done.returncode}"
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def _pyspy_held(py_spy: str, victim: Path, seconds: float, rate_hz: int = 200) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "raw.txt"
        argv = [py_spy, "record", "--gil", "--format", "raw", "-r", str(rate_hz), "-o", str(out)]
        start = time.perf_counter()
        done = subprocess.run(
            [*argv, "--", sys.executable, str(victim), "py-spy", str(seconds)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        wall = time.perf_counter() - start
        if done.returncode != 0 or not out.exists():
            return f"error: {done.stderr.strip().splitlines()[-1:]}"
        samples = sum(int(line.rsplit(" ", 1)[1]) for line in out.read_text().splitlines() if line)
    # Samples taken while some thread held the GIL, out of all sampling instants.
    return f"{min(1.0, samples / (rate_hz * wall)):.2f}"


def agreement(seconds: float) -> None:
    py_spy = shutil.which("py-spy") or (
        str(Path(sys.executable).parent / "py-spy")
        if (Path(sys.executable).parent / "py-spy").exists()
        else None
    )
    try:
        import gilknocker  # noqa: F401

        have_knocker = True
    except ImportError:
        have_knocker = False
    print("## GIL held fraction: gilwise beside py-spy and gilknocker\n")
    print(
        "py-spy: share of its samples (200 Hz, `record --gil`) in which a thread held the GIL, "
        "over the victim's whole life including interpreter start-up. gilknocker: its "
        "contention metric (share of time a knocking thread waited for the GIL), a different "
        "quantity: high when threads wait, 0 for a single spinner.\n"
    )
    print(
        "| workload | truth (held) | gilwise held_fraction | py-spy --gil share "
        "| gilknocker contention |"
    )
    print("|---|---|---|---|---|")
    truths = {
        "1 spinner": "1.00",
        "2 spinners": "1.00",
        "spinner at 30% duty": "0.30",
        "2 sha256 threads": "~0",
        "2 sleeping threads": "0.00",
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name in SCENARIOS:
            victim = _victim(Path(tmp), name)
            ours = _run([sys.executable, str(victim), "gilwise", str(seconds)])
            truth = truths[name]
            if ours and not ours.startswith("error"):
                held, real_duty = ours.split()
                ours = f"{float(held):.2f}"
                if real_duty != "None":
                    truth = f"{float(real_duty):.2f} (its real duty)"
            spy = _pyspy_held(py_spy, victim, seconds) if py_spy else "not installed"
            knock = (
                _run([sys.executable, str(victim), "gilknocker", str(seconds)])
                if have_knocker
                else "not installed"
            )
            if knock and not knock.startswith(("error", "not")):
                knock = f"{float(knock.split()[0]):.2f}"
            print(f"| {name} | {truth} | {ours} | {spy} | {knock} |")
    print()


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=40, help="rounds of the overhead part")
    parser.add_argument("--work", type=int, default=5_000_000, help="iterations per thread")
    parser.add_argument("--seconds", type=float, default=2.0, help="per agreement workload")
    parser.add_argument("--skip-agreement", action="store_true")
    parser.add_argument("--starts", type=int, default=30, help="monitors per start method")
    parser.add_argument("--only-start", action="store_true", help="part 0 only")
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]} on {os.cpu_count()} cores, load {_load()}\n")
    start_stop(args.starts)
    if args.only_start:
        return
    overhead(args.reps, args.work)
    if not args.skip_agreement:
        agreement(args.seconds)


if __name__ == "__main__":
    main()
