"""How stable `gilwise demo`'s speedups are: the demo run several times in one process.

    python benchmarks/bench_demo.py [--runs 5] [--scale 1.0] [--experiments cpu io native]

Each run is a full `gilwise demo` measurement (ways run in turn, fastest of 3 each). Prints
a markdown table with, per experiment and way, the median, min and max speedup over the
runs, plus how many cores other programs used during each run (from /proc via psutil): a
run on a busy machine is not a run of the GIL. Every number is a ratio within one run.
"""

from __future__ import annotations

import argparse
import statistics

import psutil

from gilwise.demo._load import OtherLoad
from gilwise.demo._runner import run_demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--experiments", nargs="*", default=["all"])
    args = parser.parse_args()

    speedups: dict[tuple[str, str, str], list[float]] = {}
    other_cores = []
    for _ in range(args.runs):
        with OtherLoad() as load:
            result = run_demo(args.experiments, scale=args.scale, measure_gil=False)
        other_cores.append(load.cores or 0.0)
        for experiment in result.experiments:
            for row in experiment.rows:
                if row.speedup_vs_sequential is not None and not row.is_sequential:
                    key = (experiment.name, row.workload, row.way)
                    speedups.setdefault(key, []).append(row.speedup_vs_sequential)

    print(
        f"`gilwise demo` speedups over {args.runs} runs, scale {args.scale:g}, "
        f"{psutil.cpu_count()} CPUs; other programs used "
        f"{', '.join(f'{cores:.2f}' for cores in other_cores)} cores during the runs\n"
    )
    print("| experiment | work | way | median | min | max |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for (experiment, workload, way), values in speedups.items():
        print(
            f"| {experiment} | {workload} | {way} | {statistics.median(values):.2f}x "
            f"| {min(values):.2f}x | {max(values):.2f}x |"
        )


if __name__ == "__main__":
    main()
