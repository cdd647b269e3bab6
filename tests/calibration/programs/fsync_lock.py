"""Four threads append records to one journal file, each write + fsync under one lock.

True verdict: lock-held-across-io: the lock serialises the fsyncs, so more threads cannot
help; the fix is a smaller critical section.
"""

import os
import sys
import tempfile
import threading

JOURNAL_LOCK = threading.Lock()
RECORD = b"r" * (256 << 10)


def write_record(journal) -> None:
    with JOURNAL_LOCK:
        journal.write(RECORD)
        journal.flush()
        os.fsync(journal.fileno())


def writer(journal, records: int) -> None:
    for _ in range(records):
        write_record(journal)


if __name__ == "__main__":
    folder = sys.argv[1] if len(sys.argv) > 1 else None
    with tempfile.TemporaryFile(dir=folder) as journal:
        threads = [threading.Thread(target=writer, args=(journal, 15)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
