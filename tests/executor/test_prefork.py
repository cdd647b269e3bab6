"""When auto forks the worker service's zygote (Executor._prefork).

A fork makes the caller copy each page it writes afterwards (~1 ms per MB) and imports the
process machinery (~15 ms): work that stays in the caller must not pay that. So auto forks
at its first task, not at Executor(); Executor.map and gilwise.map first run one call in the
caller (while the program has one thread) and fork only if processes may pay: a call of at
least 50 us, and, for a sized input, work left that processes would shorten by more than
~50 ms. Each case runs in a fresh interpreter, a program with one thread as a script is.
"""

from __future__ import annotations

import textwrap

import fresh_python
import pytest
from interrupted_child import interrupt_when_it_says

import gilwise

GUARD_S = 120

SPIN = """
import sys, threading, time, gilwise
from gilwise._executor import _core

def spin(x, seconds=0.002):
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass
    return x

def loaded():
    return "gilwise.backends._process" in sys.modules

def forked():
    service = sys.modules.get("gilwise.backends._service")
    return service is not None and service.current() is not None
"""


def _fresh(code: str) -> list[str]:
    return " ".join(fresh_python.run(SPIN + textwrap.dedent(code))).split()


def test_an_auto_executor_forks_nothing_until_it_has_work():
    out = _fresh(
        """
        executor = gilwise.Executor()
        print(loaded(), forked())
        executor.shutdown()
        with gilwise.Executor("process") as chosen:  # processes chosen: ready at once
            print(forked())
        """
    )
    assert out == ["False", "False", "True"]


def test_tiny_calls_never_start_the_process_machinery():
    # x + 1 needs no worker process: forking the zygote would make the caller copy every
    # page of its data it writes later (copy-on-write), and import the process machinery.
    out = _fresh(
        """
        items = list(range(-50_000, 0))
        assert sum(gilwise.map(abs, items)) == sum(range(1, 50_001))
        with gilwise.Executor() as executor:
            assert list(executor.map(abs, items)) == [abs(x) for x in items]
        print(loaded())
        """
    )
    assert out == ["False"]


def test_small_sized_work_is_not_worth_a_fork():
    # 3 calls of 2 ms: processes would save ~2 ms, far less than a worker's start.
    out = _fresh(
        """
        assert list(gilwise.map(spin, range(3))) == [0, 1, 2]
        with gilwise.Executor() as executor:
            assert list(executor.map(spin, range(3))) == [0, 1, 2]
        print(forked())
        """
    )
    assert out == ["False"]


@pytest.mark.parametrize("api", ["gilwise.map", "Executor.map"])
def test_a_first_call_that_may_pay_forks_the_zygote_from_the_program(api):
    # An input without a length: nothing says the work is small.
    run = (
        "list(gilwise.map(spin, iter(range(3))))"
        if api == "gilwise.map"
        else "list(gilwise.Executor().map(spin, iter(range(3))))"
    )
    out = _fresh(
        f"""
        assert {run} == [0, 1, 2]
        from gilwise.backends import _service
        print(forked(), _service.current().zygote.forked)
        """
    )
    assert out == ["True", "True"]


def test_a_big_sized_map_forks_the_zygote():
    # 100 calls of 2 ms left: processes may save ~100 ms.
    out = _fresh(
        """
        with gilwise.Executor(max_workers=2) as executor:
            results = executor.map(spin, range(101))
            print(forked())
            assert list(results) == list(range(101))
        """
    )
    assert out == ["True"]


def test_submit_forks_at_the_first_task_while_the_program_has_one_thread():
    out = _fresh(
        """
        with gilwise.Executor() as executor:
            print(forked())
            future = executor.submit(spin, 7)
            print(forked(), future.result(60))
        """
    )
    assert out == ["False", "True", "7"]


def test_executor_map_runs_its_first_call_in_the_caller_once(tmp_path):
    # The first call's duration decides the fork: it runs in the caller, inside map(), and
    # its result is the map's first; no call runs twice (wherever the others ran: processes).
    log = tmp_path / "calls.log"
    out = _fresh(
        f"""
        import os
        CALLER = os.getpid()
        def note(x):
            here = os.getpid() == CALLER and threading.current_thread() is threading.main_thread()
            with open({str(log)!r}, "a") as f:
                f.write(f"{{x}} {{here}}\\n")
            return spin(x)
        with gilwise.Executor() as executor:
            results = executor.map(note, iter(range(40)))
            print(open({str(log)!r}).readline())
            assert list(results) == list(range(40))
        """
    )
    assert out == ["0", "True"]
    calls = [int(line.split()[0]) for line in log.read_text().splitlines()]
    assert sorted(calls) == list(range(40))


def test_a_failing_first_call_is_raised_by_the_iterator_as_input_0():
    out = _fresh(
        """
        def fail_first(x):
            if x == 0:
                raise KeyError("first")
            return x
        with gilwise.Executor() as executor:
            results = executor.map(fail_first, range(5))  # map() itself does not raise
            try:
                next(results)
            except KeyError as error:
                print(error.gilwise_index, error.args[0])
        """
    )
    assert out == ["0", "first"]


def test_map_after_shutdown_runs_no_call():
    calls = []
    executor = gilwise.Executor()
    executor.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.map(calls.append, [1, 2])
    assert calls == []


def test_a_program_with_threads_hands_every_call_to_the_executor():
    # No fork can be made from it: map() runs no call in the caller; input #0 is measured on
    # one of the executor's threads like the others.
    out = _fresh(
        """
        stop = threading.Event()
        other = threading.Thread(target=stop.wait)
        other.start()
        ran_on = {}
        def note(x):
            ran_on[x] = threading.current_thread() is threading.main_thread()
            return x
        with gilwise.Executor() as executor:
            assert list(executor.map(note, range(3))) == [0, 1, 2]
        stop.set()
        other.join()
        print(ran_on[0], forked())
        """
    )
    assert out == ["False", "False"]


def test_weighing_a_start_imports_no_process_machinery():
    # The small-work rule asks what a start costs: with no worker service in the program, an
    # estimate, without importing the service (~15 ms on a decision's critical path): a fork
    # of the program while it has one thread, else the cold start of a fresh interpreter.
    out = _fresh(
        """
        import threading
        from gilwise import _chooser
        cost_s, how = _chooser.process_start_cost_s(2)
        print(cost_s == _chooser.WARM_ZYGOTE_START_S, how.replace(" ", "_"), loaded())
        stop = threading.Event()
        other = threading.Thread(target=stop.wait)
        other.start()
        cost_s, how = _chooser.process_start_cost_s(2)
        stop.set()
        other.join()
        print(cost_s == _chooser.COLD_PROCESS_START_S, how.replace(" ", "_"), loaded())
        """
    )
    assert out == [
        "True",
        "the_worker_service_to_fork_from_this_program,_estimated",
        "False",
        "True",
        "the_worker_service_to_start,_estimated",
        "False",
    ]


def test_calls_found_long_after_running_inline_fork_the_zygote_from_the_program():
    # bench_peers' "mixed" row: the first call (0.3 ms) says processes would not pay, so no
    # zygote is forked (on an idle machine; under load its wall time may say otherwise); the
    # calls run inline, until every tenth one takes 20 ms. By then the measuring threads have
    # ended, so the zygote is still a fork of the program.
    out = _fresh(
        """
        def mixed(i):
            return spin(i, 0.02 if i % 10 == 9 else 0.0003)

        with gilwise.Executor() as executor:
            assert list(executor.map(mixed, range(80))) == list(range(80))
            explained = executor.explain(mixed)
        from gilwise.backends import _service
        print(forked(), _service.current().zygote.forked)
        print("decided_again" if "decided again after" in explained else explained)
        """
    )
    assert out == ["True", "True", "decided_again"]


def test_running_work_does_not_import_the_profile_model():
    # The executor and the pipeline decide with gilwise._decide; the profile's model,
    # evidence and verdict (~18 ms of imports) are for profiles only.
    out = _fresh(
        """
        from gilwise import Pipeline
        with gilwise.Executor() as executor:
            assert list(executor.map(abs, range(-3, 0))) == [3, 2, 1]
        print(sorted(m for m in ("gilwise._model", "gilwise._evidence", "gilwise._verdict")
                     if m in sys.modules))
        """
    )
    assert out == ["[]"]


def test_a_first_call_that_mostly_waits_forks_nothing():
    # A download or a sleep: threads suit it, processes do not; its thread's CPU says so.
    out = _fresh(
        """
        def nap(x):
            time.sleep(0.01)
            return x
        assert list(gilwise.map(nap, iter(range(3)))) == [0, 1, 2]
        with gilwise.Executor() as executor:
            assert list(executor.map(nap, iter(range(3)))) == [0, 1, 2]
        print(loaded())
        """
    )
    assert out == ["False"]


def test_a_fork_for_a_pool_of_two_starts_both_workers():
    # Both workers of a 2-process pool start at the fork, not the second after the decision.
    out = _fresh(
        """
        from gilwise.backends import _service
        from gilwise.backends._process import prepare_workers
        assert prepare_workers(2)
        service = _service.current()
        deadline = time.monotonic() + 60  # a guard against a hang only
        while sum(w.ready for w in service.workers) < 2 and time.monotonic() < deadline:
            time.sleep(0.001)
        print(len(service.workers), sum(w.ready for w in service.workers))
        """
    )
    assert out == ["2", "2"]


def test_ctrl_c_during_the_first_call_in_the_caller_ends_the_program_at_once():
    # The first call runs inside map(), in the caller: Ctrl-C there is a KeyboardInterrupt
    # out of map(), the with-block interrupts the Executor, and nothing is left behind.
    code = SPIN + textwrap.dedent(
        """
        def slow(x):
            print("in the call", flush=True)
            time.sleep(GUARD)
            return x
        with gilwise.Executor() as executor:
            print(list(executor.map(slow, range(4))))
        """
    ).replace("GUARD", str(GUARD_S))
    interrupt_when_it_says(code, "in the call", GUARD_S)


def test_ctrl_c_during_a_later_first_call_in_the_caller_ends_the_program_at_once():
    # When the probe cannot tell from the first call, the caller runs the next one too
    # (_chooser.probe_more): Ctrl-C in that second call is a KeyboardInterrupt out of map()
    # as well, the Executor is interrupted and nothing is left behind.
    code = SPIN + textwrap.dedent(
        """
        from gilwise import _first_call
        from gilwise._executor import _map
        real = _first_call.run_first_call
        def one_held_wake(fn, args, *, probe=True):  # too few wake-ups: probe on
            first = real(fn, args, probe=probe)
            first.gil = _first_call._reading([0.00045], 0.003, 0.003)
            return first
        _map.run_first_call = one_held_wake

        def busy_then_slow(x):
            if x == 0:
                return spin(x, 0.003)
            here = threading.current_thread() is threading.main_thread()
            print("in the second call" + (", in the caller" if here else ""), flush=True)
            time.sleep(GUARD)
            return x
        with gilwise.Executor() as executor:
            print(list(executor.map(busy_then_slow, range(4))))
        """
    ).replace("GUARD", str(GUARD_S))
    interrupt_when_it_says(code, "in the second call, in the caller", GUARD_S)
