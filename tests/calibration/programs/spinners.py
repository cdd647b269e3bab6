"""Two threads spin in pure Python; the main thread joins them.

True verdict: gil-bound, expected speedup at most 2x on 2 cores and within what the
program's parallel part allows.
"""

import threading


def spin(limit: int) -> int:
    total = 0
    for number in range(limit):
        total += number
    return total


if __name__ == "__main__":
    threads = [threading.Thread(target=spin, args=(1_500_000,)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
