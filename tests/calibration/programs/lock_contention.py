"""Three workers each read a record (a short wait) and then update one shared table while
holding a lock, in pure Python, for about 20 ms (longer than the GIL switch interval).

True verdict: lock-contention: the lock, not the GIL, serialises the workers (while one
updates, the others wait on the lock, not for the GIL).
"""

import threading
import time

TABLE_LOCK = threading.Lock()
TABLE: dict = {}


def read_record(index: int) -> int:
    time.sleep(0.001)  # stands in for reading the next record
    return index


def update_table(record: int) -> None:
    with TABLE_LOCK:
        for key in range(60_000):
            slot = (key + record) % 512
            TABLE[slot] = TABLE.get(slot, 0) + 1


def worker(start: threading.Barrier, records: int) -> None:
    start.wait()
    for index in range(records):
        update_table(read_record(index))


if __name__ == "__main__":
    start = threading.Barrier(3)
    threads = [threading.Thread(target=worker, args=(start, 8)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
