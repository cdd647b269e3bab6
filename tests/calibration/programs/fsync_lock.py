"""Four threads append records to one journal for 0.4 s, each write + fsync under one lock.

True verdict: lock-held-across-io: the lock serialises the fsyncs, so more threads cannot
help; the fix is a smaller critical section.
"""

import os
import sys
import tempfile
import threading
import time

JOURNAL_LOCK = threading.Lock()
RECORD = b"r" * (256 << 10)
JOURNAL_LIMIT = 4 << 20  # then checkpointed: the journal starts over


def write_record(journal) -> None:
    with JOURNAL_LOCK:
        if journal.tell() >= JOURNAL_LIMIT:
            journal.seek(0)
            journal.truncate()
        journal.write(RECORD)
        journal.flush()
        os.fsync(journal.fileno())


def writer(journal, until: float) -> None:
    # Journal for a fixed time, not a fixed number of records: how fast fsync is depends
    # on the disk and how busy it is, and the run must be long enough to judge either way.
    while time.monotonic() < until:
        write_record(journal)


if __name__ == "__main__":
    folder = sys.argv[1] if len(sys.argv) > 1 else None
    with tempfile.TemporaryFile(dir=folder) as journal:
        until = time.monotonic() + 0.4
        threads = [threading.Thread(target=writer, args=(journal, until)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
