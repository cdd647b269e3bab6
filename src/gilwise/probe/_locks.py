"""Contended locks as first-class objects: lock waits grouped by the lock they wait for.

A thread blocked acquiring a lock sleeps on the lock's futex, whose address the sampler
reads from /proc/<pid>/task/<tid>/syscall; threads waiting on one lock share the address
(one sem_t per ``threading.Lock`` on 3.9-3.13). From the build's pieces (a thread's time
split by state and stack) this module makes one LockStats per address: who waited, how
long in total and in the longest uninterrupted wait, in which functions, and what the
other threads did meanwhile. The holder is not read from memory; it is inferred: while a
lock has waiters, a thread that is neither waiting on it nor quiet (idle, joining, waiting
for a result) is a candidate. One candidate is the holder; among several, the one whose
own wait on that lock ended last (it got the lock then: a convoy passes the lock from
waiter to waiter) is, and when none of them has waited on it yet the moment is not told.
``held_across`` names
the holder's function when it accounts for at least half of the time the holder could be
told, with the holder's most common state in it: "io_wait in write_record (app.py:12)".

A lock is listed when its waits add up to at least MIN_WAIT_S (and at least five samples):
one short wait is the normal cost of a lock, not contention worth a line.
"""

from __future__ import annotations

import os
from bisect import bisect_right
from collections import defaultdict
from typing import Optional

from gilwise._model import LockStats
from gilwise.probe._frames import FunctionKey
from gilwise.probe._procfs import IDLE, JOIN_WAIT, LOCK_WAIT, RESULT_WAIT, STATE_NAMES

#: A lock whose waits add up to less than this is not listed.
MIN_WAIT_S = 0.01
#: At most this many locks (those with the most waiting) are listed.
MAX_LOCKS = 20
#: The holder's state and function must cover this share of the told time to be named.
HELD_ACROSS_SHARE = 0.5

_QUIET = (IDLE, JOIN_WAIT, RESULT_WAIT)

# (begin_s, end_s, state code, lock address, innermost function or None)
Piece = tuple[float, float, int, int, Optional[FunctionKey]]


def site(key: Optional[FunctionKey]) -> str:
    """ "name (file.py:line)" of a function key; "?" for none."""
    if key is None:
        return "?"
    name, filename, line = key
    return f"{name} ({os.path.basename(filename) or filename}:{line})"


def _merge(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for begin, end in sorted(intervals):
        if merged and begin <= merged[-1][1] + 1e-9:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((begin, end))
    return merged


def lock_stats(
    pieces: dict[int, list[Piece]], names: dict[int, str], interval_s: float
) -> tuple[LockStats, ...]:
    """The contended locks, most waited first; ``pieces`` per thread id, sorted by time."""
    waits: dict[int, dict[int, list[Piece]]] = defaultdict(lambda: defaultdict(list))
    for tid, own in pieces.items():
        for piece in own:
            if piece[2] == LOCK_WAIT and piece[3]:
                waits[piece[3]][tid].append(piece)
    threshold = max(MIN_WAIT_S, 5 * interval_s)
    totals = {
        address: sum(p[1] - p[0] for own in by_thread.values() for p in own)
        for address, by_thread in waits.items()
    }
    chosen = sorted(
        (a for a, total in totals.items() if total >= threshold), key=totals.__getitem__
    )
    chosen.reverse()
    index = _Index(pieces)
    return tuple(_one_lock(address, waits[address], index, names) for address in chosen[:MAX_LOCKS])


class _Index:
    """Every thread's pieces with their start and end times, for lookups by time."""

    def __init__(self, pieces: dict[int, list[Piece]]) -> None:
        self.pieces = pieces
        self.begins = {tid: [p[0] for p in own] for tid, own in pieces.items()}
        self.ends = {tid: [p[1] for p in own] for tid, own in pieces.items()}

    def at(self, tid: int, time_s: float) -> Optional[Piece]:
        own = self.pieces[tid]
        index = bisect_right(self.begins[tid], time_s) - 1
        if index < 0 or own[index][1] <= time_s:
            return None
        return own[index]

    def edges(self, start: float, stop: float) -> list[float]:
        """Every piece boundary inside [start, stop], with both ends."""
        cuts = {start, stop}
        for tid, own in self.pieces.items():
            for piece in own[bisect_right(self.ends[tid], start) :]:
                if piece[0] >= stop:
                    break
                cuts.update(t for t in (piece[0], piece[1]) if start < t < stop)
        return sorted(cuts)


def _one_lock(
    address: int,
    by_thread: dict[int, list[Piece]],
    index: _Index,
    names: dict[int, str],
) -> LockStats:
    per_thread: dict[int, float] = {}
    per_function: dict[Optional[FunctionKey], float] = defaultdict(float)
    longest = 0.0
    for tid, own in by_thread.items():
        per_thread[tid] = sum(p[1] - p[0] for p in own)
        run_begin, run_end = own[0][0], own[0][1]
        for begin, end, _state, _lock, key in own:
            per_function[key] += end - begin
            if begin > run_end + 1e-9:  # a gap: the previous uninterrupted wait ended
                longest = max(longest, run_end - run_begin)
                run_begin = begin
            run_end = end
        longest = max(longest, run_end - run_begin)
    functions = sorted(per_function, key=lambda k: per_function[k], reverse=True)
    waiters = sorted(per_thread, key=lambda t: per_thread[t], reverse=True)
    union = _merge([(p[0], p[1]) for own in by_thread.values() for p in own])
    # When each waiter's waits on this lock ended (it got the lock then).
    got_lock = {
        tid: [end for _, end in _merge([(p[0], p[1]) for p in own])]
        for tid, own in by_thread.items()
    }
    holder_states, held_across = _holders(address, union, got_lock, index)
    return LockStats(
        address=address,
        label=site(functions[0]),
        waiters=tuple(names.get(tid, f"thread-{tid}") for tid in waiters),
        wait_s=sum(per_thread.values()),
        longest_wait_s=longest,
        waiting_functions=tuple(site(key) for key in functions if key is not None),
        holder_states=holder_states,
        held_across=held_across,
    )


def _holders(
    address: int,
    union: list[tuple[float, float]],
    got_lock: dict[int, list[float]],
    index: _Index,
) -> tuple[dict[str, float], Optional[str]]:
    """(seconds per state of the other threads while the lock had waiters, what the
    inferred holder was doing)."""
    holder_states: dict[str, float] = defaultdict(float)
    held: dict[tuple[int, Optional[FunctionKey]], float] = defaultdict(float)
    told = 0.0
    for start, stop in union:
        edges = index.edges(start, stop)
        for begin, end in zip(edges, edges[1:]):
            middle = (begin + end) / 2
            candidates: list[tuple[int, Piece]] = []
            for tid in index.pieces:
                piece = index.at(tid, middle)
                if piece is None or (piece[2] == LOCK_WAIT and piece[3] == address):
                    continue
                holder_states[STATE_NAMES[piece[2]]] += end - begin
                if piece[2] not in _QUIET:
                    candidates.append((tid, piece))
            if len(candidates) > 1:
                candidates = _latest_to_get(candidates, got_lock, middle)
            if len(candidates) == 1:
                piece = candidates[0][1]
                held[(piece[2], piece[4])] += end - begin
                told += end - begin
    return dict(holder_states), _held_across(held, told)


def _held_across(
    held: dict[tuple[int, Optional[FunctionKey]], float], told: float
) -> Optional[str]:
    """ "<state> in <function>": the function the holder spent most of the told time in (at
    least HELD_ACROSS_SHARE of it), with its most common state there. The function first: a
    holder inside fsync is by turns waiting for the disk, flushing on its own CPU and waiting
    for a CPU (both "native" to the kernel), so no single state need reach the share (seen:
    io_wait 48%, native 40%, all of it in the one function)."""
    per_function: dict[Optional[FunctionKey], float] = defaultdict(float)
    for (_state, key), seconds in held.items():
        per_function[key] += seconds
    if not per_function:
        return None
    key, seconds = max(per_function.items(), key=lambda item: item[1])
    if seconds < HELD_ACROSS_SHARE * told:
        return None
    state = max((s for s, k in held if k == key), key=lambda s: held[(s, key)])
    return f"{STATE_NAMES[state]} in {site(key)}"


def _latest_to_get(
    candidates: list[tuple[int, Piece]], got_lock: dict[int, list[float]], time_s: float
) -> list[tuple[int, Piece]]:
    """The candidate whose last wait on the lock ended latest before ``time_s`` (as a
    one-item list); empty when no candidate has waited on it yet."""
    best: list[tuple[int, Piece]] = []
    best_end = float("-inf")
    for tid, piece in candidates:
        ends = got_lock.get(tid, [])
        index = bisect_right(ends, time_s) - 1
        if index >= 0 and ends[index] > best_end:
            best, best_end = [(tid, piece)], ends[index]
    return best
