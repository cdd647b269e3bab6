"""A pipeline: 45 pool threads wait in Condition.wait (queue.get) for work that never comes,
while one CPU stage thread (pure Python) is saturated.

True verdict: serial (the CPU stage is the saturated part), not lock contention.
"""

import queue
import threading

STOP = object()


def pool_worker(jobs: "queue.Queue[object]") -> None:
    while jobs.get() is not STOP:
        pass


def crunch_stage(items: "queue.Queue[object]") -> None:
    while True:
        item = items.get()
        if item is STOP:
            return
        total = 0
        for number in range(item):  # type: ignore[arg-type]
            total += number % 13


if __name__ == "__main__":
    jobs: "queue.Queue[object]" = queue.Queue()
    items: "queue.Queue[object]" = queue.Queue(maxsize=4)
    pool = [threading.Thread(target=pool_worker, args=(jobs,)) for _ in range(45)]
    stage = threading.Thread(target=crunch_stage, args=(items,), name="crunch-stage")
    for thread in [*pool, stage]:
        thread.start()
    for _ in range(40):
        items.put(60_000)
    items.put(STOP)
    stage.join()
    for _ in pool:
        jobs.put(STOP)
    for thread in pool:
        thread.join()
