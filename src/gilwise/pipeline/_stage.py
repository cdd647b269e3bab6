"""A running stage: two threads between an inbox and an outbox channel.

The submitter takes items from the inbox while the stage has a free in-flight slot and hands
them to the stage's backend; the collector takes finished futures, applies the error policy
(retry, skip, collect, raise), restores the input order when asked, and puts the results in
the outbox. A slot is freed only when its item's results are in the outbox, so a stage holds
at most ``max_in_flight(workers, chunksize)`` items however slow its neighbours are.

A stage that runs inline does all of this in its submitter thread; a stage on a process pool
may send several items per task (a chunk) to pay for the round trip once.

Under backend="auto" the submitter first hands items to measured calls (one alone, or two
started together), each on a helper thread, and waits while they run; the measuring driver
(gilwise._measuring, shared with the Executor) peeks at them, and once the Chooser can tell
(they clearly wait, or a pair clearly takes turns) it decides early and the submitter goes
on with the chosen backend while the measured calls finish; the last of them to finish
files the samples and confirms (or redoes) the decision. Both threads decide, so the
Chooser and the switch of backend are guarded by ``_choosing``.
"""

from __future__ import annotations

import heapq
import queue
import reprlib
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol

from .. import backends
from .._chooser import REMOTE_BACKENDS, Chooser
from .._chunks import Failure, submit_chunk
from .._decide import MAX_IO_TASK_WORKERS, Decision
from .._measuring import Measuring, run_measured
from ..errors import NotPicklableError, StageError
from ._calls import StageCall, outputs_of
from ._channel import END, POLL_S, STOPPED, TIMEOUT, Channel, Failed
from ._policy import DeadLetter, ErrorPolicy, Retry, final_action
from ._stats import StageCounters

# Items a stage may hold per worker: one running, one queued so no worker waits for the next.
IN_FLIGHT_PER_WORKER = 2
# While backend="auto" measures, it holds the first call's item and the two of the pair.
PROBE_IN_FLIGHT = 3
# How long auto holds an item for a partner to measure a pair with, on a slow stream.
PAIR_PARTNER_WAIT_S = 0.1
# Backends whose workers wait for I/O: an early judgement may ask for more of them than the
# finished calls do; the stage keeps the larger pool and runs fewer calls on it.
IO_BACKENDS = frozenset({"thread", "asyncio"})
# Most calls at a time of an I/O stage decided early (from a peek at a first call still
# waiting) until its finished calls size it. A call waiting on the network used no CPU since
# the previous peek, so the early judgement asks for the 128-thread maximum; 128 fetches of
# 250 KB pages that then arrive at once hold this process's GIL in a convoy that starves the
# run's other threads (bench_pipeline: the next stage's submitter did not peek for ~100 ms,
# and that stage decided at 0.40-0.49 s instead of 0.29-0.33 s with this cap). 32,
# ThreadPoolExecutor's own cap; the finished calls may ask for more.
EARLY_IO_WORKERS = 32
# Most items one task carries to a worker process (auto picks fewer for longer calls).
MAX_CHUNK = 64


def max_in_flight(workers: int, chunksize: int = 1) -> int:
    """How many items a stage with ``workers`` workers holds at most (running or waiting)."""
    return max(workers * IN_FLIGHT_PER_WORKER * chunksize, PROBE_IN_FLIGHT)


_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60


@dataclass(frozen=True)
class StageSpec:
    """What the user asked a stage to do (built by Pipeline.map/filter/flat_map/batch)."""

    name: str
    kind: str
    fn: Optional[Callable[[Any], Any]] = None
    backend: str = "auto"
    workers: Optional[int] = None
    ordered: bool = True
    on_error: ErrorPolicy = "raise"
    backend_options: dict[str, Any] = field(default_factory=dict)
    chunksize: Optional[int] = None
    batch_size: int = 0
    batch_timeout_s: Optional[float] = None


class RunControl(Protocol):
    """What a stage may tell the run it belongs to."""

    stop: threading.Event
    # Held while a stage measures its first calls, so two stages measuring at once do not
    # take each other's GIL time for waiting (and call CPU work I/O-bound).
    measure_lock: threading.Lock

    def fail(self, error: BaseException) -> None: ...

    def cut_upstream(self, inbox: Channel, error: BaseException) -> None: ...

    def add_dead_letter(self, letter: DeadLetter) -> None: ...


class _Slots:
    """A counting limit whose size can change (auto decides the worker count late)."""

    def __init__(self, limit: int) -> None:
        self._cond = threading.Condition()
        self._used = 0
        self._limit = limit

    def try_acquire(self) -> bool:
        with self._cond:
            if self._used >= self._limit:
                return False
            self._used += 1
            return True

    def acquire(self, stopped: Callable[[], bool]) -> bool:
        with self._cond:
            while self._used >= self._limit:
                if stopped():
                    return False
                self._cond.wait(POLL_S)
            self._used += 1
            return True

    def release(self) -> None:
        with self._cond:
            self._used -= 1
            self._cond.notify()

    def set_limit(self, limit: int) -> None:
        with self._cond:
            self._limit = limit
            self._cond.notify_all()


class _OnceLock:
    """A lock acquired once and released once, by whichever thread comes first."""

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self._held = False
        self._guard = threading.Lock()

    def acquire(self) -> None:
        self._lock.acquire()
        self._held = True

    def release(self) -> None:
        with self._guard:
            if self._held:
                self._held = False
                self._lock.release()


class _Task:
    __slots__ = ("attempts", "item", "seq")

    def __init__(self, seq: int, item: Any) -> None:
        self.seq = seq
        self.item = item
        self.attempts = 1


class _EndOfInput:
    """From submitter to collector: ``total`` tasks were handed over; with ``hand_over`` the
    submitter carries on alone (an inline stage), so the collector must not end the stream;
    ``end`` is what to pass on once all is emitted: END, or an upstream failure."""

    __slots__ = ("end", "hand_over", "total")

    def __init__(self, total: int, hand_over: bool = False, end: Any = END) -> None:
        self.total = total
        self.hand_over = hand_over
        self.end = end


class StageRunner:
    """A map, filter or flat_map stage while it runs.

    On the inline backend (chosen, or picked by auto for tiny calls) the submitter runs each
    call itself and emits the results; the collector only drains what auto measured before.
    Skipping the futures and the hand-over between two threads makes such a stage several
    times cheaper per item.
    """

    def __init__(self, spec: StageSpec, control: RunControl, inbox: Channel, outbox: Channel):
        self.spec = spec
        self.counters = StageCounters(spec.name, spec.kind)
        self._control = control
        self._inbox = inbox
        self._outbox = outbox
        self._call = StageCall(spec.fn, spec.kind)  # type: ignore[arg-type]
        self._backend: Optional[backends.Backend] = None
        # Backends replaced after an early decision was redone: shut down with the stage.
        self._retired: list[backends.Backend] = []
        # Guards the Chooser and the switch of backend: the submitter, and the helper thread
        # of a measured call that finishes after an early decision, both decide.
        self._choosing = threading.RLock()
        self._validated = False
        self._inline = False
        self._done: queue.SimpleQueue = queue.SimpleQueue()
        self._handed_over = threading.Event()
        self._slots = _Slots(PROBE_IN_FLIGHT)
        self._chooser = Chooser(
            getattr(spec.fn, "__qualname__", spec.name), max_workers=spec.workers, pair_first=False
        )
        self._measuring = Measuring(
            self._chooser, self._choosing, self._open_decided, self._decided
        )
        self._chunk = 1
        self._ready: dict[int, Any] = {}  # collector: outputs waiting for their turn
        self._next_seq = 0
        self.threads = [
            # Daemon threads: after Ctrl-C one busy in a user's call is abandoned, not joined.
            threading.Thread(
                target=self._submit_loop, name=f"gilwise-stage-{spec.name}-submit", daemon=True
            ),
            threading.Thread(
                target=self._collect_loop, name=f"gilwise-stage-{spec.name}-collect", daemon=True
            ),
        ]

    # -- life cycle ----------------------------------------------------------------------

    def prepare(self) -> None:
        """Create an explicitly named backend now, so a bad name or option raises at once."""
        if self.spec.backend != "auto":
            self._use(self.spec.backend, self.spec.workers, "chosen by the caller")

    def start(self) -> None:
        self.counters.started_at = time.perf_counter()
        for thread in self.threads:
            thread.start()

    def _backends(self) -> list[backends.Backend]:
        with self._choosing:
            current = [] if self._backend is None else [self._backend]
            return self._retired + current

    def shutdown(self) -> None:
        """After the threads are joined: free the backends' workers."""
        for backend in self._backends():
            backend.shutdown(wait=True)

    def interrupt(self) -> None:
        """Ctrl-C: stop the backends' running calls where they can, without waiting."""
        for backend in self._backends():
            try:
                backend.shutdown(wait=False, interrupt=True)
            except TypeError:  # a backend still on protocol v1
                backend.shutdown(wait=False)

    def _use(
        self, name: str, workers: Optional[int], reason: str, *, at_most: Optional[int] = None
    ) -> backends.Backend:
        """Run the stage on ``name`` with ``workers`` from now on: the current backend if it
        is that already (an early decision confirmed), else a new one.

        The stage runs ``workers`` calls at a time, or ``at_most`` for now, also on a larger
        pool: there it holds no queued items (a thread pool starts a thread for each item
        while it has fewer than its maximum), so it never starts the threads it does not
        need."""
        current = self._backend
        if (
            current is not None
            and current.name == name
            and (
                workers == current.max_workers
                # An early look at waiting calls may ask for more threads than the finished
                # calls do: keep the pool (its threads started already) and run fewer.
                or (name in IO_BACKENDS and workers is not None and workers <= current.max_workers)
            )
        ):
            backend = current
        else:
            backend = backends.create(name, workers, **self.spec.backend_options)
            if current is not None:
                self._retired.append(current)  # its calls in flight still finish
            self._backend = backend
            self._validated = False
        if self.spec.chunksize is not None:
            self._chunk = self.spec.chunksize
        elif name in REMOTE_BACKENDS:
            self._chunk = max(1, min(self._chooser.chunksize(name), MAX_CHUNK))
        else:
            self._chunk = 1
        running = backend.max_workers if workers is None else min(workers, backend.max_workers)
        if at_most is not None:
            running = min(running, at_most)
        self.counters.backend = name
        self.counters.workers = running
        self.counters.reason = reason
        if running < backend.max_workers:
            self._slots.set_limit(max(running, PROBE_IN_FLIGHT))
        else:
            self._slots.set_limit(max_in_flight(running, self._chunk))
        return backend

    # -- submitter -----------------------------------------------------------------------

    def _submit_loop(self) -> None:
        try:
            self._submit_all()
        except BaseException as exc:  # stop the whole run: nothing may hang on this stage
            self._control.fail(
                exc if isinstance(exc, NotPicklableError) else self._error(None, exc)
            )
        finally:
            if self._inline:
                self.counters.finished_at = time.perf_counter()

    def _submit_all(self) -> None:
        seq = 0
        pending: Optional[_Task] = None
        counters = self.counters
        if self.counters.backend == "inline" and not self._go_inline(0):
            return
        while True:
            if not self._inline and not self._slots.acquire(self._inbox.stopped):
                return
            waited_from = time.perf_counter()
            value = self._inbox.get(None if pending is None else PAIR_PARTNER_WAIT_S)
            counters.input_wait_s += time.perf_counter() - waited_from
            if value is STOPPED:
                return
            if value is TIMEOUT:  # no partner for the held item yet: measure it alone
                self._slots.release()
                self._run_held(pending)  # type: ignore[arg-type]
                pending = None
                if self.counters.backend == "inline" and not self._go_inline(seq):
                    return
                continue
            if value is END or isinstance(value, Failed):
                if self._inline:
                    self._outbox.put(value)
                    return
                if pending is not None:
                    self._run_held(pending)
                if self._backend is None and self._chooser.probe.calls:
                    with self._choosing:  # so the stats say what the stage would have used
                        self._measuring.decide()
                self._done.put(_EndOfInput(seq, end=value))
                return
            task = _Task(seq, value)
            seq += 1
            counters.items_in += 1
            if self._inline:
                if not self._run_inline(task):
                    return
                continue
            if self._backend is not None:
                if pending is not None:
                    self._run_held(pending)
                    pending = None
                if self._chunk == 1:
                    self._submit(task)
                    continue
                tasks, end = self._gather(task, seq)
                seq += len(tasks) - 1
                self._submit_chunk(tasks)
                if end is None:
                    continue
                if end is STOPPED:
                    return
                self._done.put(_EndOfInput(seq, end=end))
                return
            with self._choosing:
                step = self._measuring.next_step()
            if step == "single":
                self._measure([task])
            elif pending is None:
                pending = task
            else:
                self._measure([pending, task])
                pending = None
            if self.counters.backend == "inline" and not self._go_inline(seq):
                return

    def _gather(self, first: _Task, seq: int) -> tuple[list[_Task], Any]:
        """``first`` and the items already waiting, up to a chunk (never waits for more);
        also END, a Failed or STOPPED if that came next, else None."""
        tasks = [first]
        while len(tasks) < self._chunk and self._slots.try_acquire():
            value = self._inbox.get_nowait()
            if value is TIMEOUT or value is END or value is STOPPED or isinstance(value, Failed):
                self._slots.release()
                return tasks, (None if value is TIMEOUT else value)
            tasks.append(_Task(seq, value))
            seq += 1
            self.counters.items_in += 1
        return tasks, None

    def _submit_chunk(self, tasks: list[_Task]) -> None:
        if len(tasks) == 1:
            self._submit(tasks[0])
            return
        backend = self._current_backend(tasks[0].item)
        items = [task.item for task in tasks]
        try:
            remote = backend.name in REMOTE_BACKENDS
            future = submit_chunk(backend, remote, self._call, items, False)
        except Exception as exc:
            future = Future()
            future.set_exception(exc)
        done = self._done
        future.add_done_callback(lambda finished: done.put((tasks, finished)))

    def _validate(self, backend: backends.Backend, item: Any) -> None:
        """NotPicklableError naming the user's function (not the stage's wrapper)."""
        if not self._validated:
            backend.validate(self.spec.fn, (item,), {})  # type: ignore[arg-type]
            backend.validate(self._call, (item,), {})
            self._validated = True

    def _go_inline(self, handed: int) -> bool:
        """Let the collector finish the ``handed`` tasks it has, then run calls here."""
        self._done.put(_EndOfInput(handed, hand_over=True))
        while not self._handed_over.wait(POLL_S):
            if self._inbox.stopped():
                return False
        self._inline = True
        return True

    def _run_inline(self, task: _Task) -> bool:
        """Call, apply the error policy, emit; False once the run stopped."""
        while True:
            try:
                value, busy_s = self._call(task.item)
            except Exception as error:
                outcome = self._failure(task, error)
                if isinstance(outcome, float):
                    if self._control.stop.wait(outcome):
                        return False
                    continue
                if isinstance(outcome, Failed):
                    self._fail_here(outcome)
                    return False
                return self._emit(outcome)
            self.counters.busy_s += busy_s
            return self._emit(outputs_of(self.spec.kind, task.item, value))

    def _run_held(self, task: _Task) -> None:
        """An item held for a measured pair that got no partner: measure it alone, or hand it
        to the backend if the stage decided meanwhile."""
        if self._backend is None:
            self._measure([task])
        else:
            self._submit(task)

    def _measure(self, tasks: list[_Task]) -> None:
        """Measure one call, or two started together, each on a helper thread, and wait.

        While they run, peek: once they clearly wait (or a pair clearly takes turns), decide
        at once and return, so the next items go to the chosen backend while the measured
        calls finish (a fetch taking 100 ms is known to wait after a few ms). The measured
        calls' outcomes are delivered after the stage decided from them, so a retry of a
        measured failure always has a backend. Returns early only once decided or stopped.
        """
        measuring = self._measuring
        with self._choosing:
            measures = measuring.start([self._call] * len(tasks))
        lock = _OnceLock(self._control.measure_lock)
        outcomes: list[Optional[Future]] = [None] * len(tasks)
        running = [len(tasks)]
        finished = threading.Event()

        def run(index: int) -> None:
            outcome = outcomes[index] = run_measured(measures[index], tasks[index].item)
            with self._choosing:
                # Exactly one helper, the last to file its call, decides and delivers.
                measuring.finished(measures[index], ok=outcome.exception() is None)
                running[0] -= 1
                last = running[0] == 0
            if last:
                lock.release()
                for task, done in zip(tasks, outcomes):
                    self._deliver(task, done)  # type: ignore[arg-type]
                finished.set()

        lock.acquire()
        started_s = time.perf_counter()
        for index in range(len(tasks)):
            helper = threading.Thread(
                target=run, args=(index,), name="gilwise-pipeline-measure", daemon=True
            )
            self.threads.append(helper)  # the run joins it at close, as the stage's own
            helper.start()
        if measuring.watch(measures, finished, started_s):
            lock.release()  # decided: the other stages may measure while these calls finish
            return
        while not finished.wait(POLL_S):
            if self._inbox.stopped():
                return

    def _open_decided(self, name: str, workers: int, early: bool) -> backends.Backend:
        """Under ``_choosing``: the backend a decision asks for (see Measuring)."""
        if early and self.spec.workers is None and name in IO_BACKENDS:
            # An I/O pool sized from a call still waiting: opened as large as any later
            # decision may ask (threads start on demand), so the finished calls resize what
            # runs on it, never open a second pool.
            return self._use(name, MAX_IO_TASK_WORKERS, "", at_most=min(workers, EARLY_IO_WORKERS))
        return self._use(name, self.spec.workers or workers, "")

    def _decided(self, decision: Decision, backend: Any, early: bool) -> None:
        """Under ``_choosing``: the stage was decided and runs on ``backend`` from now on
        (None: an early decision confirmed, nothing new opened). Decided before any
        measured failure is delivered, so a retry always has a backend. A function that
        cannot be sent to the chosen processes runs on threads instead."""
        if backend is None:
            return
        self.counters.reason = decision.reason
        if early and self.spec.workers is None and self.counters.workers < decision.workers:
            self.counters.reason += (
                f" At most {self.counters.workers} at a time until its first calls "
                f"finish and size the pool."
            )
        if decision.backend != self.counters.backend:  # fell back (unavailable here)
            self.counters.backend = decision.backend
        if decision.backend in REMOTE_BACKENDS:
            try:
                self._validate(backend, None)
            except NotPicklableError as exc:
                self._chooser.fall_back_to_threads(str(exc))
                self._use(
                    "thread",
                    self.spec.workers or decision.workers,
                    f"{decision.reason} But the function cannot be "
                    f"sent to another process ({exc}), so threads run it instead.",
                )
        self._validated = True

    def _current_backend(self, item: Any) -> backends.Backend:
        """The backend to hand ``item`` to, its function validated for it. Read under the
        chooser's lock: a helper thread that decides (processes, say) opens the backend and,
        if the function cannot be sent there, falls back to threads, all under that lock; read
        in between, the stage would hand the item to the processes and stop the run with
        NotPicklableError (seen: a local function decided for processes while its stage ran
        on threads from an early decision)."""
        with self._choosing:
            backend = self._backend
            assert backend is not None
            self._validate(backend, item)  # NotPicklableError stops the run
            return backend

    def _submit(self, task: _Task) -> None:
        backend = self._current_backend(task.item)
        try:
            future = backend.submit(self._call, (task.item,), {})
        except Exception as exc:  # e.g. a dead pool: the item fails, its policy decides
            future = Future()
            future.set_exception(exc)
        self._deliver(task, future)

    def _deliver(self, task: _Task, future: Future) -> None:
        done = self._done
        future.add_done_callback(lambda finished: done.put((task, finished)))

    # -- collector -----------------------------------------------------------------------

    def _collect_loop(self) -> None:
        try:
            self._collect_all()
        except BaseException as exc:
            self._control.fail(
                exc if isinstance(exc, NotPicklableError) else self._error(None, exc)
            )
        finally:
            if not self._handed_over.is_set():
                self.counters.finished_at = time.perf_counter()

    def _collect_all(self) -> None:
        total: Optional[int] = None
        hand_over = False
        end: Any = END
        finished = 0
        retries: list[tuple[float, int, _Task]] = []
        stop = self._control.stop
        while total is None or finished < total:
            if stop.is_set() or self._outbox.stopped():
                return
            timeout = POLL_S
            if retries:
                timeout = max(0.0, min(timeout, retries[0][0] - time.perf_counter()))
            try:
                message = self._done.get(timeout=timeout)
            except queue.Empty:
                message = None
            while retries and retries[0][0] <= time.perf_counter():
                self._submit(heapq.heappop(retries)[2])
            if message is None:
                continue
            if isinstance(message, _EndOfInput):
                total, hand_over, end = message.total, message.hand_over, message.end
                continue
            for task, outputs in self._outcomes(*message):
                if isinstance(outputs, float):
                    heapq.heappush(retries, (time.perf_counter() + outputs, task.seq, task))
                    continue
                emitted = self._place(task, outputs)
                if emitted is None:
                    return
                finished += emitted
        if hand_over:
            self._handed_over.set()
        else:
            self._outbox.put(end)

    def _outcomes(self, tasks: Any, future: Future) -> list[tuple[_Task, Any]]:
        """(task, outputs or retry delay or Failed) for a single task or a chunk's tasks."""
        if isinstance(tasks, _Task):
            return [(tasks, self._outcome(tasks, future))]
        error = future.exception()
        if error is not None:  # the chunk could not run at all (e.g. the pool is gone)
            return [(task, self._failure(task, error)) for task in tasks]
        results = []
        for task, outcome in zip(tasks, future.result()):
            if type(outcome) is Failure:  # this item failed on its own: only it does
                results.append((task, self._failure(task, outcome.error())))
            else:
                value, busy_s = outcome
                self.counters.busy_s += busy_s
                results.append((task, outputs_of(self.spec.kind, task.item, value)))
        return results

    def _place(self, task: _Task, outputs: Any) -> Optional[int]:
        """Emit what is due: this task's outputs (unordered) or every task next in line
        (ordered). Returns how many tasks were finished; None once the stage must stop."""
        if not self.spec.ordered:
            if isinstance(outputs, Failed):
                self._fail_here(outputs)
                return None
            return 1 if self._emit(outputs) else None
        # A failure waits its turn, so everything before it is delivered first.
        ready = self._ready
        ready[task.seq] = outputs
        emitted = 0
        while self._next_seq in ready:
            outputs = ready.pop(self._next_seq)
            if isinstance(outputs, Failed):
                self._fail_here(outputs)
                return None
            if not self._emit(outputs):
                return None
            self._next_seq += 1
            emitted += 1
        return emitted

    def _outcome(self, task: _Task, future: Future) -> Any:
        """The task's outputs, a retry delay in seconds, or Failed."""
        error = future.exception()
        if error is None:
            value, busy_s = future.result()
            self.counters.busy_s += busy_s
            return outputs_of(self.spec.kind, task.item, value)
        return self._failure(task, error)

    def _failure(self, task: _Task, error: BaseException) -> Any:
        """Apply the error policy: a delay (float) to retry after, () to drop, or Failed."""
        policy = self.spec.on_error
        if isinstance(policy, Retry) and policy.retries(error, task.attempts):
            delay_s = float(policy.delay_s(task.attempts))
            task.attempts += 1
            self.counters.retried += 1
            return delay_s
        self.counters.failed += 1
        action = final_action(policy) if isinstance(error, Exception) else "raise"
        if action == "skip":
            return ()
        if action == "collect":
            self._control.add_dead_letter(
                DeadLetter(self.spec.name, task.item, error, task.attempts)
            )
            return ()
        return Failed(self._error(task, error))

    def _fail_here(self, failed: Failed) -> None:
        """Stop this stage and everything before it; let the stages after it finish."""
        self._control.cut_upstream(self._inbox, failed.error)
        self._outbox.put(failed)

    def _emit(self, outputs: Any) -> bool:
        started = time.perf_counter()
        for value in outputs:
            if not self._outbox.put(value):
                return False
            self.counters.items_out += 1
        self.counters.output_wait_s += time.perf_counter() - started
        if not self._inline:
            self._slots.release()
        return True

    def _error(self, task: Optional[_Task], error: BaseException) -> StageError:
        name = self.spec.name
        if task is None:
            message = (
                f"stage {name!r} stopped: {type(error).__name__}: {error} (this is a bug in "
                f"gilwise or a fatal error in the stage; the cause's traceback is above)"
            )
            result = StageError(message, stage=name)
        else:
            tries = f" after {task.attempts} tries" if task.attempts > 1 else ""
            message = (
                f"stage {name!r} failed on item {_repr.repr(task.item)}{tries}: "
                f"{type(error).__name__}: {error}. The original traceback is above. To carry "
                f"on past failing items pass on_error='skip', 'collect' (then read "
                f"pipe.dead_letters) or gilwise.pipeline.Retry(times=3, backoff_s=0.1)"
            )
            result = StageError(message, stage=name, item=task.item)
        result.__cause__ = error
        return result


class BatchRunner:
    """A batch stage: groups items into lists of ``size``, or fewer after ``timeout_s``."""

    def __init__(self, spec: StageSpec, control: RunControl, inbox: Channel, outbox: Channel):
        self.spec = spec
        self.counters = StageCounters(spec.name, spec.kind, backend="batch", workers=1)
        self._control = control
        self._inbox = inbox
        self._outbox = outbox
        self.threads = [
            threading.Thread(target=self._loop, name=f"gilwise-stage-{spec.name}", daemon=True)
        ]

    def prepare(self) -> None:
        pass

    def start(self) -> None:
        self.counters.started_at = time.perf_counter()
        self.threads[0].start()

    def shutdown(self) -> None:
        pass

    def interrupt(self) -> None:
        pass

    def _loop(self) -> None:
        try:
            self._batch_all()
        finally:
            self.counters.finished_at = time.perf_counter()

    def _batch_all(self) -> None:
        size, timeout_s = self.spec.batch_size, self.spec.batch_timeout_s
        counters = self.counters
        batch: list[Any] = []
        deadline: Optional[float] = None
        while True:
            wait_s = None if deadline is None else max(0.0, deadline - time.perf_counter())
            waited_from = time.perf_counter()
            value = self._inbox.get(wait_s)
            counters.input_wait_s += time.perf_counter() - waited_from
            if value is STOPPED:
                return
            if value is END or isinstance(value, Failed):
                if batch and not self._flush(batch):
                    return
                self._outbox.put(value)
                return
            if value is not TIMEOUT:
                counters.items_in += 1
                batch.append(value)
                if len(batch) == 1 and timeout_s is not None:
                    deadline = time.perf_counter() + timeout_s
                if len(batch) < size:
                    continue
            if batch and not self._flush(batch):
                return
            batch = []
            deadline = None

    def _flush(self, batch: list[Any]) -> bool:
        started = time.perf_counter()
        ok = self._outbox.put(batch)
        self.counters.output_wait_s += time.perf_counter() - started
        if ok:
            self.counters.items_out += 1
        return ok
