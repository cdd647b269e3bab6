"""Two threads hash a buffer with hashlib (the GIL released) while the main thread, after a
little preparation of its own, joins them.

True verdict: native-parallel (the main thread's join is not lock contention).
"""

import hashlib
import threading

BLOCK = bytes(range(256)) * 4096 * 8  # 8 MiB


def digest_blocks(rounds: int) -> None:
    for _ in range(rounds):
        hashlib.sha256(BLOCK).digest()


def prepare() -> int:
    # The main thread's own share of the work (about a tenth of the run), in Python.
    return sum(index % 7 for index in range(300_000))


if __name__ == "__main__":
    prepare()
    workers = [threading.Thread(target=digest_blocks, args=(8,)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
