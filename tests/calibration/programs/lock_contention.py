"""Three threads update one shared table, each holding a lock for pure-Python work.

True verdict: lock-contention (the lock, not the GIL, serialises them).
"""

import threading

TABLE_LOCK = threading.Lock()
TABLE: dict = {}


def update_table(rounds: int) -> None:
    for _ in range(rounds):
        with TABLE_LOCK:
            for key in range(20_000):
                TABLE[key % 512] = TABLE.get(key % 512, 0) + 1


if __name__ == "__main__":
    threads = [threading.Thread(target=update_table, args=(8,)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
