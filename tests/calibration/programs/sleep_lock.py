"""Three threads each sleep (a stand-in for a slow call) while holding one lock.

True verdict: lock-held-across-io: only one thread sleeps at a time.
"""

import threading
import time

LOCK = threading.Lock()


def slow_call_under_lock(rounds: int) -> None:
    for _ in range(rounds):
        with LOCK:
            time.sleep(0.02)


if __name__ == "__main__":
    threads = [threading.Thread(target=slow_call_under_lock, args=(6,)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
