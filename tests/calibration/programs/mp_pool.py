"""A CPU job moved to multiprocessing.Pool: the parent only waits, the children do the work.

True verdict: with --subprocesses, the whole program is GIL-bound work already parallel on
processes; without it, the parent is waiting on results (idle), never contention.

The work (8 chunks of ~40 ms) is large next to a worker's start: with 6 calls of ~25 ms, one
worker starting a call late left the other running 4 of the 6, and a true "overlapped only
partly" (1.4 of 2 cores) was the verdict on a loaded CI machine.
"""

import multiprocessing


def count_squares(limit: int) -> int:
    total = 0
    for number in range(limit):
        total += number * number
    return total


if __name__ == "__main__":
    with multiprocessing.Pool(2) as pool:
        print(sum(pool.map(count_squares, [1_000_000] * 8)))
