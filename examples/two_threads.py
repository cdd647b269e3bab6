"""The seed's experiment: two threads each run a pure-Python loop. They take turns on the GIL."""

import threading


def count(n: int = 10_000_000) -> None:
    for _ in range(n):
        pass


threads = [threading.Thread(target=count, name=f"counter-{i}") for i in range(2)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
