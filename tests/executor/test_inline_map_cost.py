"""What a map whose calls run inline (tiny calls: x + 1) costs beside a plain loop (issue 10:
``gilwise.map(lambda x: x + 1, range(10**6))`` <= 1.3x the loop). Behaviour, not timing:
lazy chunks of a list or tuple copy none of its items, auto's first lazy chunks start small
(a guess from microsecond first calls must not run thousands of long calls in the caller),
and timing a lazy chunk imports nothing.
"""

from __future__ import annotations

import itertools
import threading
import time
import tracemalloc

import fresh_python
import pytest
from interrupted_child import interrupt_when_it_says

import gilwise
from gilwise import _chooser
from gilwise._decide import TaskMeasurement
from gilwise._executor import _map


def inc(x):
    return x + 1


@pytest.mark.parametrize("kind", [list, tuple, iter, lambda items: items])
@pytest.mark.parametrize("backend", ["auto", "inline"])
@pytest.mark.parametrize("count", [50_000, _map.MAX_SEQUENCE_LAZY_CHUNKSIZE + 1])
def test_every_input_kind_maps_each_item_once_in_order(kind, backend, count):
    # (one more than a chunk: the last chunk of a fixed inline map is a single call)
    expected = list(range(1, count + 1))
    with gilwise.Executor(backend) as executor:
        assert list(executor.map(inc, kind(range(count)))) == expected
    assert list(gilwise.map(inc, kind(range(count)), backend=backend)) == expected


@pytest.mark.parametrize("backend", ["auto", "inline"])
def test_a_range_longer_than_sys_maxsize_is_read_as_a_stream(backend):
    # len() of such a range raises OverflowError; builtins.map reads it all the same.
    huge = range(10**20)
    assert list(itertools.islice(gilwise.map(inc, huge, backend=backend), 5)) == [1, 2, 3, 4, 5]
    with gilwise.Executor(backend) as executor:
        results = executor.map(inc, huge)
        assert list(itertools.islice(results, 3)) == [1, 2, 3]
        results.close()


def test_a_list_is_read_as_its_lazy_chunks_run_like_builtin_map():
    # Chunks of a list are ranges of its indices, read when they run: a call that changes a
    # later item is seen by the later call, as with builtins.map over the list (a copied
    # chunk would hand the later call the old item).
    items = list(range(20_000))

    def bump_next(x):
        index = x if x < 20_000 else x - 1_000_000
        if index + 1 < len(items):
            items[index + 1] += 1_000_000
        return x

    results = list(gilwise.map(bump_next, items, backend="inline"))
    assert results[0] == 0
    assert results[1:] == [index + 1_000_000 for index in range(1, 20_000)]


@pytest.mark.parametrize("kind", [list, tuple, lambda items: items])
def test_an_inline_map_over_a_list_tuple_or_range_holds_no_copy_of_it(kind):
    # Lazy chunks read ahead (up to four, of up to 65536 calls) once held copies of their
    # items: 0.5-2 MB for a big list, and a per-item copy loop. Now a range each.
    items = kind(range(300_000))
    with gilwise.Executor("inline") as executor:
        results = executor.map(inc, items)
        tracemalloc.start()
        try:
            total = 0
            for value in results:
                total += value
            _, peak_bytes = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert total == sum(range(1, 300_001))
    assert peak_bytes < 64 * 1024, f"{peak_bytes} bytes held while mapping"


CALLS = 200


def long_call(item):
    """10 ms of waiting; says which thread ran it."""
    time.sleep(0.01)
    return item, threading.current_thread().name


def test_first_lazy_chunks_start_small_when_later_calls_are_long(no_leaks):
    # Decided inline from microsecond first calls, the first lazy chunk used to be sized
    # from them (10 ms of such calls: thousands), so all 200 calls of 10 ms ran inline. The
    # chunks now start at LAZY_FIRST_CALLS and grow LAZY_GROWTH-fold: the second chunk (its
    # calls timed, as the first said they are long) shows it, and the rest moves to threads.
    with gilwise.Executor() as executor:
        plan_key = _chooser.key(long_call)
        executor._expect_calls(plan_key, long_call, 0)
        plan = executor._plans[plan_key]
        with executor._lock:  # as if its first calls had taken a microsecond
            executor._decide(plan, TaskMeasurement(wall_s=1e-6, cpu_s=1e-6, calls=0))
        assert plan.lane.name == "inline"
        outcomes = list(executor.map(long_call, range(CALLS)))
        decision = executor.decisions.get(f"{__name__}.long_call")
    assert [item for item, _ in outcomes] == list(range(CALLS))
    here = sum(1 for _, ran_on in outcomes if ran_on == threading.current_thread().name)
    first, growth = _map.LAZY_FIRST_CALLS, _map.LAZY_GROWTH
    # the first call (run here to decide whether to fork), then two ramped chunks
    assert here <= 1 + first + first * growth, (here, decision)
    assert decision is not None and decision.backend == "thread", decision


def test_the_ramp_caps_lazy_chunks_then_lets_them_grow():
    window = _map._Window(inc, iter(()), False, None, "auto", "auto", True)
    sizes = [window._ramped(1_000_000) for _ in range(9)]
    first, growth = _map.LAZY_FIRST_CALLS, _map.LAZY_GROWTH
    assert sizes == [first * growth**n for n in range(9)]
    assert window._ramped(100) == 100  # never more than the chunk's own size


def test_timing_a_lazy_chunk_imports_nothing():
    # The run-queue reader that holds the GIL imports ctypes (3-14 ms in a fresh process):
    # measured pairs need it, a lazy chunk's span does not.
    code = (
        "import sys\n"
        "from gilwise._measure import span_since, span_start\n"
        "before = set(sys.modules)\n"
        "span = span_since(span_start())\n"
        "assert span[0] >= 0 and span[2] >= 0, span\n"
        "print(sorted(set(sys.modules) - before))\n"
    )
    assert fresh_python.run(code) == ["[]"]


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("kind", [list, tuple])
def test_unordered_maps_of_a_list_or_tuple_run_each_call_once(kind, ordered):
    seen = []

    def record(x):
        seen.append(x)
        return x + 1

    results = list(gilwise.map(record, kind(range(100_000)), ordered=ordered))
    assert sorted(results) == list(range(1, 100_001))
    assert sorted(seen) == list(range(100_000))


@pytest.mark.parametrize("api", ["gilwise.map", "Executor.map"])
def test_ctrl_c_inside_a_lazy_inline_chunk_ends_the_program_at_once(api):
    # Tiny calls run inline in the consumer's thread: Ctrl-C in one of them is a
    # KeyboardInterrupt out of the consumer's next(), and nothing is left behind.
    guard_s = 120
    consume = (
        "list(gilwise.map(call, range(200_000)))"
        if api == "gilwise.map"
        else "with gilwise.Executor() as executor:\n    list(executor.map(call, range(200_000)))"
    )
    code = (
        "import threading, time, gilwise\n"
        "def call(x):\n"
        "    if x == 150_000:\n"
        "        print('in the call', threading.current_thread().name, flush=True)\n"
        f"        time.sleep({guard_s})\n"
        "    return x + 1\n"
        f"{consume}\n"
    )
    interrupt_when_it_says(code, "in the call MainThread", guard_s)


def test_a_tiny_map_starts_no_thread_imports_nothing_and_times_few_chunks():
    # x + 1 over a million items: decided inline from its first call, no measuring or timer
    # thread is started (the first call's GIL probe is a bare thread, joined before the call
    # returns), and the lazy chunks are few (the ramp, then ~10 ms or 65536 calls each), none
    # of them timed call by call (0.3 us per call would add ~4x x + 1's own time).
    code = (
        "import threading, gilwise\n"
        "from gilwise._executor import _core\n"
        "started, chunks = [], []\n"
        "start = threading.Thread.start\n"
        "def record_start(thread):\n"
        "    started.append(thread.name)\n"
        "    start(thread)\n"
        "threading.Thread.start = record_start\n"
        "ran_inline = _core.Executor._ran_inline\n"
        "def record_chunk(self, key, calls, *args, timed):\n"
        "    chunks.append((calls, timed))\n"
        "    ran_inline(self, key, calls, *args, timed=timed)\n"
        "_core.Executor._ran_inline = record_chunk\n"
        "def inc(x):\n"
        "    return x + 1\n"
        "import sys\n"
        "before = set(sys.modules)\n"
        "with gilwise.Executor() as executor:\n"
        "    assert list(executor.map(inc, list(range(10**6)))) == list(range(1, 10**6 + 1))\n"
        "    print('decided from its first call' in executor.explain(inc))\n"
        "print(sorted(set(sys.modules) - before))\n"
        "print(started, threading.active_count(), len(chunks), sum(c for c, _ in chunks),\n"
        "      any(timed for _, timed in chunks))\n"
    )
    from_first_call, imported, out = fresh_python.run(code)
    if from_first_call != "True":
        # Preempted on a busy machine, the 3 us call read longer than a hand-over (or not
        # busy): auto then measures calls on threads, as it should for a call it cannot judge.
        pytest.skip("the first call did not read as tiny here (a busy machine)")
    # nothing but the inline backend: no ctypes (run-queue reader), no process machinery
    assert imported == "['gilwise.backends._inline']", imported
    started, threads, chunks, calls, timed = out.rsplit(maxsplit=4)
    assert (started, threads, timed) == ("[]", "1", "False"), out
    assert int(calls) == 10**6 - 1  # all but the first call, which ran alone
    assert int(chunks) <= 30, out  # 2 ms chunks of <= 16384 calls: 70 or more
