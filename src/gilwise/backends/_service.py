"""The worker service: one set of warm worker processes shared by the whole program.

Every process backend (each Executor, gilwise.map call and Pipeline process stage has one)
holds a *lease* on the one service of the program, which is started at the first task and
stopped idle_timeout_s after the last lease is released, or at interpreter exit.

How a call travels::

    caller threads                 manager thread            zygote          workers
    --------------                 (daemon, selector)        (1 thread)      (1 task at a time)

    ProcessBackend.submit(fn, ..)
      pickle -> Job ----> lease.pending --+
      (one Job per submit, or per         |  _schedule():
       submit_batch: fn pickled once)     +-> idle worker of the lease's  +--> run the call(s)
                                          |   flavor; or, when its jobs   |    outcome(s) back
                                          |   are short, the next job     |    (a batch's are
                                          |   queued on a busy worker     |     streamed every
                                          |   (prefetch)                  |     <= 5 ms)
                                          |                               |
                                          +-- no idle worker: FORK -----> fork() ---+
                                          |   (or spawn a fresh one)
      Future.result() <------ settle <----+-- outcome / EOF / "exited" / timeout
                                              crash: the call fails (WorkerCrashedError);
                                              a batch's undelivered calls run again alone;
                                              prefetched jobs are queued again

A worker belongs to no lease while idle: any lease of the same *flavor* (start method,
initializer and its arguments, max_tasks_per_child) takes it, the most recently used first,
so a second Executor reuses the first one's warm workers. A lease runs at most its
``max_workers`` workers at once. The manager thread is the only one that touches workers;
other threads only queue jobs and flags under ``Service.lock`` and wake it through a pipe.

No thread of the service blocks interpreter exit (the manager is a daemon thread). At exit,
the tasks of backends still open finish (as with concurrent.futures; a Ctrl-C during that
wait kills them), then every worker and the zygote stop. The zygote and workers die with
the caller even if it is SIGKILLed (see _zygote, _process_worker).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import os
import pickle
import selectors
import signal
import sys
import threading
import time
import weakref
from concurrent.futures import Future
from typing import Any, Callable, Iterable, Optional

from ..errors import TaskInterruptedError, TaskTimeoutError, WorkerCrashedError
from . import _service_workers, _zygote
from ._process_worker import BATCH, BATCH_FAILED, CALL, INIT_FAILED, READY, SYS_PATH
from ._service_workers import FORKSERVER, SPAWN, Worker, Zygote, how_it_died, may_fork_zygote
from ._wire import decode_outcome, describe_task, function_name, task_dumps
from ._workqueue import exiting_after_interrupt, settle

# Failed start-ups in a row after which queued tasks fail instead of retrying forever.
MAX_BOOT_FAILURES = 3
# Jobs shorter than this (moving average and the last one) get the next job queued on their
# busy worker when the lease has no other worker to give it, so it never waits a round trip;
# longer ones do not, so a long job never holds a short one back while another worker is free.
PREFETCH_BELOW_S = 0.02
# Idle workers beyond this many (or the widest lease's size) are stopped once nothing waits.
_CPUS = os.cpu_count() or 1
# Bigger payloads are never queued on a busy worker: the send could block the manager
# until that worker finishes its current job.
PREFETCH_MAX_BYTES = 64 * 1024
# How long to wait for the zygote to report a worker's exit code after its pipe closed.
EXIT_REPORT_WAIT_S = 2.0
# Stopping: how long idle workers get to exit by themselves before they are killed.
STOP_GRACE_S = 1.0


class LeaseConfig:
    """What a process backend asks of the service (validated by the backend). A plain class:
    dataclasses cost milliseconds to import and build, on an executor's first task."""

    __slots__ = (
        "idle_timeout_s",
        "initializer",
        "initializer_name",
        "kill_grace_s",
        "max_tasks_per_child",
        "max_workers",
        "start_method",
    )

    def __init__(
        self,
        *,
        max_workers: int,
        start_method: str,
        initializer: Optional[bytes],  # cloudpickle of (initializer, initargs), or None
        initializer_name: str,
        max_tasks_per_child: Optional[int],
        kill_grace_s: float,
        idle_timeout_s: float,
    ) -> None:
        self.max_workers = max_workers
        self.start_method = start_method
        self.initializer = initializer
        self.initializer_name = initializer_name
        self.max_tasks_per_child = max_tasks_per_child
        self.kill_grace_s = kill_grace_s
        self.idle_timeout_s = idle_timeout_s

    @property
    def flavor(self) -> tuple:
        """Workers of one flavor are interchangeable."""
        return (self.start_method, self.initializer, self.max_tasks_per_child)


class Call:
    """One call and its future."""

    __slots__ = ("args", "fn", "future", "index", "kwargs", "timeout_s")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple,
        kwargs: dict,
        timeout_s: Optional[float],
        index: Optional[int],
    ) -> None:
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.timeout_s = timeout_s
        self.index = index
        self.future: Future = Future()

    def describe(self) -> str:
        # Computed only when a message needs it, to keep the per-task cost low.
        text = describe_task(self.fn, self.args, self.kwargs)
        return text if self.index is None else f"{text} (call #{self.index} of a batch)"


class Job:
    """What one message to a worker carries: one call, or a batch of calls of one function."""

    __slots__ = ("batch", "calls", "claimed", "delivered", "payload", "rerun", "timeout_s")

    def __init__(
        self,
        calls: list[Call],
        payload: bytes,
        *,
        batch: bool,
        timeout_s: Optional[float],
        rerun: bool = False,
    ) -> None:
        self.calls = calls
        self.payload = payload
        self.batch = batch
        self.timeout_s = timeout_s
        self.rerun = rerun  # a call of a batch whose worker died, run again alone
        self.delivered = 0  # outcomes received, in order
        self.claimed = False  # the futures were set running

    @classmethod
    def alone(cls, call: Call, *, rerun: bool) -> Job:
        payload = CALL + task_dumps((call.fn, call.args, call.kwargs))
        job = cls([call], payload, batch=False, timeout_s=call.timeout_s, rerun=rerun)
        job.claimed = True
        return job


class Lease:
    """The service's side of one process backend."""

    def __init__(self, service: Service, config: LeaseConfig) -> None:
        self.service = service
        self.config = config
        self.max_workers = config.max_workers
        self.flavor = config.flavor
        self.pending: collections.deque[Job] = collections.deque()  # under service.lock
        self.workers: set[Worker] = set()  # those running its jobs (manager thread only)
        self.closing = False
        self.interrupting = False
        self.warm_requested = False
        self.released = threading.Event()
        self.boot_failures = 0
        self.job_s: Optional[float] = None  # moving average of a job's duration
        self.last_job_s = 0.0

    def record(self, seconds: float) -> None:
        self.job_s = seconds if self.job_s is None else 0.8 * self.job_s + 0.2 * seconds
        self.last_job_s = seconds


def _alone(calls: list[Call], *, rerun: bool) -> list[Job]:
    """A job of its own for each call (its future fails if it cannot be pickled again)."""
    jobs = []
    for call in calls:
        try:
            jobs.append(Job.alone(call, rerun=rerun))
        except Exception as exc:  # pickling runs arbitrary __reduce__ code
            settle(call.future, exc=exc)
    return jobs


def _fail_unstarted(jobs: Iterable[Job], error: BaseException) -> None:
    for job in jobs:
        for call in job.calls[job.delivered :]:
            if job.claimed or call.future.set_running_or_notify_cancel():
                settle(call.future, exc=error)


class Service:
    """One program's workers, zygote and manager thread. Use ``open_lease``."""

    def __init__(self) -> None:
        self.lock = threading.RLock()  # re-entrant: a GC finalizer may close a lease anywhere
        self.leases: list[Lease] = []
        self.stopping = False  # no new leases; the manager stops
        self.finished = False  # the manager thread ended
        self.exiting = False  # interpreter exit: stop now, whatever runs
        self.idle_timeout_s = 0.0
        self.idle_deadline: Optional[float] = None
        self.thread: Optional[threading.Thread] = None
        self.wake_sent = False
        self.wake_r = self.wake_w = -1
        self.selector: selectors.BaseSelector
        # manager thread only:
        self.workers: list[Worker] = []
        self.zygote: Optional[Zygote] = None
        self.zygote_failures = 0
        self.starting: dict[bytes, Worker] = {}  # fork token -> worker
        self.forked: dict[int, Worker] = {}  # pid -> worker forked by the zygote
        self.tokens = itertools.count()
        self.turn = 0  # round robin over leases
        self.retry_at: Optional[float] = None  # a worker could not start: schedule again
        self.sys_path: list[str] = list(sys.path)  # as last seen by the manager
        self.last_start_cost_s: Optional[float] = None  # a new worker: start to READY

    # --- any thread, under lock --------------------------------------------------------
    def start(self, first: Lease, workers: int = 1) -> None:
        """Fork the zygote now if that is safe, ask it for ``workers`` of ``first``'s
        workers, start the manager thread. Raises on failure; nothing is left half-made."""
        if may_fork_zygote():
            with contextlib.suppress(OSError):  # e.g. out of memory: spawn one later
                self.zygote = Zygote.fork_from_caller()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.wake_r, selectors.EVENT_READ, None)
        if self.zygote is not None:
            self.selector.register(self.zygote.ctl, selectors.EVENT_READ, self.zygote)
            if first.config.start_method != SPAWN:
                # The first workers fork while the manager thread starts: the first result
                # comes one hand-over sooner, and a pool's second worker is not a round of
                # the manager later.
                for _ in range(max(1, min(workers, first.config.max_workers))):
                    if not self._start_worker(first):
                        break
        thread = threading.Thread(target=self._run, name="gilwise-process-service", daemon=True)
        try:
            thread.start()  # "can't start new thread" on a loaded machine
        except BaseException:
            for worker in self.workers:
                worker.close()
            self.selector.close()
            os.close(self.wake_r)
            os.close(self.wake_w)
            if self.zygote is not None:
                self.zygote.stop(1.0)
            raise
        self.thread = thread

    def wake(self) -> None:
        # Called with the lock held, so the manager cannot close the pipe meanwhile; at most
        # one byte is in the pipe per round of the manager, so the write never blocks.
        if not self.wake_sent and not self.finished:
            self.wake_sent = True
            os.write(self.wake_w, b"x")

    def submit(self, lease: Lease, job: Job) -> None:
        with self.lock:
            self._check_open(lease)
            lease.pending.append(job)
            self.wake()

    def submit_many(self, lease: Lease, jobs: list[Job]) -> None:
        with self.lock:
            self._check_open(lease)
            lease.pending.extend(jobs)
            self.wake()

    def _check_open(self, lease: Lease) -> None:
        if lease.closing:
            raise RuntimeError("cannot submit to a process backend after its shutdown()")
        if self.finished:  # only if the manager thread failed: its traceback was printed
            raise RuntimeError(
                "the process worker service's manager thread has stopped; create a new backend"
            )

    def warm_up(self, lease: Lease) -> None:
        with self.lock:
            if not lease.closing:
                lease.warm_requested = True
                self.wake()

    def close_lease(self, lease: Lease, interrupt: bool) -> None:
        with self.lock:
            lease.closing = True
            failed: list[Job] = []
            if interrupt and not lease.interrupting:
                lease.interrupting = True
                failed = list(lease.pending)
                lease.pending.clear()
            if self.finished:
                lease.released.set()
            else:
                self.wake()
        _fail_unstarted(failed, TaskInterruptedError("the task was interrupted before it started"))

    def request_stop(self, *, exiting: bool) -> None:
        with self.lock:
            if exiting:
                self.exiting = True
            elif not self.leases:
                self.idle_deadline = time.monotonic()  # stop now, whatever the timeout
            self.wake()

    # --- the manager thread ------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._loop()
        finally:
            try:
                self._stop_everything()
            finally:
                with self.lock:
                    self.stopping = True
                    self.finished = True
                    leases = list(self.leases)
                    self.leases.clear()
                    jobs = [job for lease in leases for job in lease.pending]
                    for lease in leases:
                        lease.pending.clear()
                    self.selector.close()
                    os.close(self.wake_r)
                    os.close(self.wake_w)
                    # Never close these numbers again (e.g. in a forked child): by then they
                    # may be another file's.
                    self.wake_r = self.wake_w = -1
                _fail_unstarted(
                    jobs, RuntimeError("the process worker service stopped before this task ran")
                )
                for lease in leases:
                    lease.released.set()
                _service_workers.thread_ended_at = time.monotonic()

    def _loop(self) -> None:
        while True:
            # Drain the wake-up pipe before clearing the flag: a submit in between then
            # leaves a byte behind (a spare wake-up), never a flag without a byte (a lost one).
            try:
                while os.read(self.wake_r, 4096):
                    pass
            except BlockingIOError:
                pass
            with self.lock:
                self.wake_sent = False
                leases = list(self.leases)
            self._interrupt(leases)
            self._schedule(leases)
            self._release_finished(leases)
            if self._should_stop():
                return
            events = self.selector.select(self._seconds_to_next_deadline())
            for key, _ in events:
                data = key.data
                if data is None:
                    continue  # the wake-up pipe: drained at the top of the loop
                if isinstance(data, Zygote):
                    self._on_zygote(data)
                    continue
                worker, is_pidfd = data
                if worker not in self.workers:
                    continue
                if is_pidfd:
                    self._on_gone(worker, drain=True)
                else:
                    self._receive(worker)
            self._enforce_deadlines()

    def _should_stop(self) -> bool:
        with self.lock:
            if self.exiting:
                self.stopping = True
                return True
            busy = any(w.jobs for w in self.workers)
            if self.leases or busy:
                self.idle_deadline = None
                return False
            now = time.monotonic()
            if self.idle_deadline is None:
                self.idle_deadline = now + self.idle_timeout_s
            if now >= self.idle_deadline:
                self.stopping = True  # from here, open_lease starts a new service
                return True
            return False

    def _seconds_to_next_deadline(self) -> Optional[float]:
        moments = [self.idle_deadline] if self.idle_deadline is not None else []
        if self.retry_at is not None:
            moments.append(self.retry_at)
        for worker in self.workers:
            for moment in (worker.deadline, worker.kill_at, worker.exit_deadline):
                if moment is not None:
                    moments.append(moment)
        if not moments:
            return None
        return max(0.0, min(moments) - time.monotonic())

    def _release_finished(self, leases: list[Lease]) -> None:
        for lease in leases:
            if lease.closing and not lease.workers:
                with self.lock:
                    if lease.pending or lease not in self.leases:
                        continue
                    self.leases.remove(lease)
                    self.idle_timeout_s = lease.config.idle_timeout_s  # the last one decides
                lease.released.set()

    # scheduling
    def _take(self, lease: Lease) -> Optional[Job]:
        with self.lock:
            while lease.pending:
                job = lease.pending.popleft()
                if job.claimed:
                    return job
                job.claimed = True
                running = [call.future.set_running_or_notify_cancel() for call in job.calls]
                if any(running):
                    return job
        return None

    def _send(self, worker: Worker, lease: Lease, job: Job, now: float) -> None:
        if worker.sys_path != self.sys_path:
            # The caller's sys.path changed since: a module it imports from a new place is
            # then found by the worker too.
            worker.sys_path = self.sys_path
            with contextlib.suppress(OSError):
                worker.conn.send_bytes(SYS_PATH + pickle.dumps(self.sys_path))
        if not worker.jobs:
            self._start_job(worker, job, now)
        worker.jobs.append(job)
        worker.state = Worker.BUSY
        worker.lease = lease
        lease.workers.add(worker)
        worker.tasks_sent += len(job.calls)
        # If it died, its EOF or exit report comes next, and the job is handled then.
        with contextlib.suppress(OSError):
            worker.conn.send_bytes(job.payload)

    def _start_job(self, worker: Worker, job: Job, now: float) -> None:
        worker.job_started = now
        worker.deadline = None if job.timeout_s is None else now + job.timeout_s

    def _may_take_more(self, worker: Worker, lease: Lease) -> bool:
        limit = lease.config.max_tasks_per_child
        return limit is None or worker.tasks_sent < limit

    def _schedule(self, leases: list[Lease]) -> None:
        self.retry_at = None
        if self.sys_path != sys.path:
            self.sys_path = list(sys.path)
        # The manager runs this at every message; most find nothing waiting (a worker sent
        # results, the others are busy): then only step 4 below can have work.
        if any(lease.pending or lease.warm_requested for lease in leases):
            self._assign(leases)
        if not any(lease.pending for lease in leases):
            self._retire_spare(leases)

    def _assign(self, leases: list[Lease]) -> None:
        now = time.monotonic()
        idle: dict[tuple, list[Worker]] = collections.defaultdict(list)
        for worker in sorted(self.workers, key=lambda w: w.last_used):
            if worker.state == Worker.IDLE:
                idle[worker.flavor].append(worker)
        active = [lease for lease in leases if not lease.interrupting]
        if active:
            self.turn = (self.turn + 1) % len(active)
            active = active[self.turn :] + active[: self.turn]
        # 1. Idle workers, one job at a time round the leases (most recently used first).
        progress = True
        while progress:
            progress = False
            for lease in active:
                free = idle.get(lease.flavor)
                if not free or not lease.pending or len(lease.workers) >= lease.max_workers:
                    continue
                job = self._take(lease)
                if job is None:
                    continue
                self._send(free.pop(), lease, job, now)
                progress = True
        # 2. Prefetch: the next short job waits on a busy worker, not in the caller; only
        #    when every worker the lease may use is busy (an idle or starting one takes it
        #    sooner) and its jobs are short, the last one too (the average of 20 ms jobs
        #    after a tiny one stays below 20 ms for ever).
        for lease in active:
            if (
                not lease.pending
                or len(lease.workers) < lease.max_workers
                or lease.job_s is None
                or max(lease.job_s, lease.last_job_s) >= PREFETCH_BELOW_S
            ):
                continue
            for worker in list(lease.workers):
                if not lease.pending:
                    break
                if len(worker.jobs) != 1 or worker.state != Worker.BUSY:
                    continue
                if not self._may_take_more(worker, lease):
                    continue
                if len(lease.pending[0].payload) > PREFETCH_MAX_BYTES:
                    break
                job = self._take(lease)
                if job is not None:
                    self._send(worker, lease, job, now)
        # 3. Start workers for what the idle ones cannot take: the jobs waiting, or a warm-up's
        #    room, whichever is more. (A warm-up asks for workers to exist, not for more on
        #    top of those another lease's jobs need: auto's early fork opens a lease to warm
        #    the pool's workers, closes it, and the pool's own lease then wants the same
        #    workers; counted twice, a 2-core machine got 3 or 4 workers.)
        demand: dict[tuple, int] = collections.Counter()
        warm: dict[tuple, int] = collections.Counter()
        boot_for: dict[tuple, Lease] = {}
        for lease in active:
            room = lease.max_workers - len(lease.workers)
            wanted = min(len(lease.pending), room)
            if lease.warm_requested:
                lease.warm_requested = False
                warm[lease.flavor] = max(warm[lease.flavor], room)
            if wanted > 0:
                demand[lease.flavor] += wanted
            if wanted > 0 or warm[lease.flavor] > 0:
                boot_for.setdefault(lease.flavor, lease)
        for flavor in boot_for:
            wanted = max(demand[flavor], warm[flavor])
            supply = len(idle.get(flavor, ()))
            supply += sum(
                1
                for w in self.workers
                if w.flavor == flavor and w.state in (Worker.STARTING, Worker.BOOTING)
            )
            for _ in range(wanted - supply):
                if not self._start_worker(boot_for[flavor]):
                    break

    def _retire_spare(self, leases: list[Lease]) -> None:
        # 4. Too many idle workers (after a wide executor closed): stop the oldest.
        spare = [w for w in self.workers if w.state == Worker.IDLE]
        if len(spare) <= _CPUS:
            return
        cap = max([_CPUS] + [lease.max_workers for lease in leases])
        if len(spare) > cap:
            used = {lease.flavor for lease in leases}
            spare.sort(key=lambda w: (w.flavor in used, w.last_used))
            for worker in spare[: len(spare) - cap]:
                self._retire(worker)

    def _worker_setup(self, lease: Lease) -> bytes:
        return pickle.dumps(
            {
                "sys_path": self.sys_path,
                "cwd": _cwd(),
                "initializer": lease.config.initializer,
            }
        )

    def _start_worker(self, lease: Lease) -> bool:
        """Start one worker for ``lease``'s flavor; False (and the reason given to the
        lease's tasks if nothing can run them) when it cannot be started now."""
        setup = self._worker_setup(lease)
        try:
            if lease.config.start_method == SPAWN:
                worker = Worker.spawn(setup, lease.flavor, lease)
            else:
                zygote = self._zygote()
                token = next(self.tokens).to_bytes(8, "big")
                try:
                    worker = Worker.fork(zygote, token, setup, lease.flavor, lease)
                except OSError:
                    # The zygote died (its EOF may not have been read yet): start another.
                    self._zygote_died(zygote)
                    self.retry_at = time.monotonic() + 0.05
                    return False
                self.starting[token] = worker
        except OSError as exc:  # e.g. out of file descriptors or memory
            self.retry_at = time.monotonic() + 0.05
            if not any(w.flavor == lease.flavor for w in self.workers):
                error = WorkerCrashedError(
                    f"could not start a process worker ({type(exc).__name__}: {exc}); "
                    f"free the resource, or use backend='thread'."
                )
                error.__cause__ = exc
                self._fail_pending(lease, error)
            return False
        worker.sys_path = self.sys_path
        self.workers.append(worker)
        self.selector.register(worker.conn.fileno(), selectors.EVENT_READ, (worker, False))
        if worker.pidfd is not None:
            self.selector.register(worker.pidfd, selectors.EVENT_READ, (worker, True))
        return True

    def _zygote(self) -> Zygote:
        if self.zygote is None:
            self.zygote = Zygote.spawn()  # the caller has threads now: never fork it
            self.selector.register(self.zygote.ctl, selectors.EVENT_READ, self.zygote)
        return self.zygote

    def _fail_pending(self, lease: Lease, error: BaseException) -> None:
        with self.lock:
            jobs = list(lease.pending)
            lease.pending.clear()
        _fail_unstarted(jobs, error)

    def _retire(self, worker: Worker) -> None:
        """Close its pipe: it exits by itself (code 0) and is not replaced."""
        worker.state = Worker.RETIRING
        self._unregister(worker, pidfd=False)  # its pidfd still says when it exited
        with contextlib.suppress(OSError):
            worker.conn.close()
        worker.gone = True
        if worker.popen is not None:
            # Reaped when its pidfd says it exited (or at the latest at stop).
            if worker.pidfd is None:
                worker.exit_deadline = time.monotonic() + EXIT_REPORT_WAIT_S
        else:
            worker.exit_deadline = time.monotonic() + EXIT_REPORT_WAIT_S

    # events
    def _receive(self, worker: Worker) -> None:
        """Its pipe is readable: one message, or EOF because it exited."""
        try:
            data = worker.conn.recv_bytes()
        except (EOFError, OSError):
            self._on_gone(worker, drain=False)
            return
        self._on_message(worker, data)

    def _drain(self, worker: Worker) -> None:
        """Take what it sent before dying: a result still counts."""
        if worker.conn.closed:
            return
        try:
            while worker.conn.poll():
                self._on_message(worker, worker.conn.recv_bytes())
        except (EOFError, OSError):
            pass

    def _on_message(self, worker: Worker, data: bytes | bytearray) -> None:
        if worker.state in (Worker.DYING, Worker.RETIRING):
            return  # its jobs already failed (timeout, interrupt) or it had none
        if not worker.ready:
            if data == READY:
                worker.ready = True
                if worker.state == Worker.BOOTING:
                    self._became_ready(worker)
            elif data[:1] == INIT_FAILED:
                worker.init_error = pickle.loads(data[1:])
            return
        if worker.state != Worker.BUSY or not worker.jobs:
            return
        job = worker.jobs[0]
        kind = data[:1]
        if kind == BATCH:
            outcomes = pickle.loads(memoryview(data)[1:])
        elif kind == BATCH_FAILED:
            outcomes = [data[1:]] * (len(job.calls) - job.delivered)
        else:
            outcomes = [data]
        for outcome in outcomes:
            if job.delivered >= len(job.calls):
                break
            call = job.calls[job.delivered]
            job.delivered += 1
            ok, value = decode_outcome(outcome, call.describe)
            if ok:
                settle(call.future, result=value)
            else:
                settle(call.future, exc=value)
        now = time.monotonic()
        if job.delivered < len(job.calls):
            if job.timeout_s is not None:  # flushed after each call: the next one started
                worker.deadline = now + job.timeout_s
            return
        worker.jobs.popleft()
        lease = worker.lease
        if lease is not None:
            lease.record(now - worker.job_started)
        if worker.jobs:
            self._start_job(worker, worker.jobs[0], now)
        else:
            self._to_idle(worker, now)

    def _became_ready(self, worker: Worker) -> None:
        worker.state = Worker.IDLE
        worker.last_used = time.monotonic()
        self.last_start_cost_s = worker.last_used - worker.created_at
        if worker.boot_lease is not None:
            worker.boot_lease.boot_failures = 0
        worker.boot_lease = None

    def _to_idle(self, worker: Worker, now: float) -> None:
        lease = worker.lease
        if lease is not None:
            lease.workers.discard(worker)
        limit = lease.config.max_tasks_per_child if lease is not None else None
        worker.lease = None
        worker.deadline = None
        worker.last_used = now
        if limit is not None and worker.tasks_sent >= limit:
            self._retire(worker)
        else:
            worker.state = Worker.IDLE

    def _on_zygote(self, zygote: Zygote) -> None:
        message = zygote.receive()
        if message is None:
            self._zygote_died(zygote)
            return
        kind = message[0]
        if kind == "ready":
            zygote.ready = True
            self.zygote_failures = 0
        elif kind == "forked":
            worker = self.starting.pop(message[1], None)
            if worker is not None:
                worker.pid = message[2]
                self.forked[worker.pid] = worker
                if worker.state == Worker.STARTING:
                    worker.state = Worker.BOOTING
                    if worker.ready:
                        self._became_ready(worker)
        elif kind == "fork-failed":
            worker = self.starting.pop(message[1], None)
            if worker is not None:
                worker.init_error = f"the zygote could not fork it: {message[2]}"
                self._finish(worker, None)
        elif kind == "exited":
            worker = self.forked.get(message[1])
            if worker is not None:
                worker.returncode = message[2]
                self._drain(worker)
                self._finish(worker, message[2])

    def _zygote_died(self, zygote: Zygote) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(zygote.ctl)
        zygote.stop(1.0)
        if self.zygote is zygote:
            self.zygote = None
        if not zygote.ready:
            self.zygote_failures += 1
        for worker in list(self.workers):
            if worker.zygote is zygote and worker.pid is None:
                worker.init_error = "the worker service's zygote died before forking it"
                self._finish(worker, None)
            elif worker.zygote is zygote and worker.gone:
                self._finish(worker, None)  # no exit report can come now
        self.starting.clear()
        if self.zygote_failures >= MAX_BOOT_FAILURES:
            self.zygote_failures = 0
            error = WorkerCrashedError(
                "the process worker service's zygote keeps dying while starting; see its "
                "error output above, or use start_method='spawn'."
            )
            with self.lock:
                leases = list(self.leases)
            for lease in leases:
                if lease.config.start_method != SPAWN:
                    self._fail_pending(lease, error)

    def _on_gone(self, worker: Worker, *, drain: bool) -> None:
        """Its pipe closed or its pidfd says it exited."""
        if drain:
            self._drain(worker)
        if worker not in self.workers:
            return
        worker.gone = True
        self._unregister(worker, pidfd=False)
        if worker.popen is not None:
            self._finish(worker, worker.spawned_returncode())
        elif worker.returncode is not None or worker.zygote is not self.zygote:
            self._finish(worker, worker.returncode)
        elif worker.exit_deadline is None:
            worker.exit_deadline = time.monotonic() + EXIT_REPORT_WAIT_S

    def _unregister(self, worker: Worker, *, pidfd: bool) -> None:
        if not worker.conn.closed:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.selector.unregister(worker.conn.fileno())
        if pidfd and worker.pidfd is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(worker.pidfd)

    def _finish(self, worker: Worker, returncode: Optional[int]) -> None:
        """It is gone for good: fail or queue again what it had, forget it."""
        if worker not in self.workers:
            return
        self.workers.remove(worker)
        self._unregister(worker, pidfd=True)
        worker.close()
        if worker.pid is not None:
            self.forked.pop(worker.pid, None)
        state = worker.state
        if state in (Worker.STARTING, Worker.BOOTING):
            self._boot_failed(worker, returncode)
        elif state == Worker.BUSY and worker.jobs:
            self._crashed(worker, returncode)

    def _boot_failed(self, worker: Worker, returncode: Optional[int]) -> None:
        lease = worker.boot_lease
        if lease is None:
            return
        lease.boot_failures += 1
        if lease.boot_failures < MAX_BOOT_FAILURES:
            return
        lease.boot_failures = 0
        if worker.init_error and "Traceback" in worker.init_error:
            reason = f"its initializer {lease.config.initializer_name} raised:\n{worker.init_error}"
            advice = "Fix the initializer."
        else:
            reason = worker.init_error or how_it_died(returncode)
            advice = "See their error output above, and check that the worker can import gilwise."
        self._fail_pending(
            lease,
            WorkerCrashedError(
                f"process workers keep dying while starting ({reason}). {advice}",
                exitcode=returncode,
            ),
        )

    def _crashed(self, worker: Worker, returncode: Optional[int]) -> None:
        lease = worker.lease
        running = worker.jobs.popleft()
        later = list(worker.jobs)
        worker.jobs.clear()
        if lease is not None:
            lease.workers.discard(worker)
        worker.lease = None
        again: list[Job] = []
        if running.batch:
            # Outcomes may have died in its buffer: run each undelivered call once more alone,
            # so only the call that really crashes fails.
            again += _alone(running.calls[running.delivered :], rerun=True)
        else:
            call = running.calls[running.delivered]
            settle(call.future, exc=self._crash_error(worker, call, returncode, running.rerun))
        again.extend(later)  # queued behind it, never started
        self._queue_again(lease, again)

    def _queue_again(self, lease: Optional[Lease], jobs: list[Job]) -> None:
        if not jobs:
            return
        with self.lock:
            interrupted = lease is None or lease.interrupting or self.exiting
            if not interrupted:
                assert lease is not None
                lease.pending.extendleft(reversed(jobs))
        if interrupted:
            _fail_unstarted(jobs, TaskInterruptedError("the task was interrupted"))

    @staticmethod
    def _crash_error(
        worker: Worker, call: Call, returncode: Optional[int], rerun: bool
    ) -> WorkerCrashedError:
        description = call.describe()
        if call.index is None:
            what = f"task {description}"
        else:
            what = (
                f"call #{call.index} of a batch of {function_name(call.fn)} "
                f"({describe_task(call.fn, call.args, call.kwargs)})"
            )
        again = " (run again alone after its batch's worker died)" if rerun else ""
        return WorkerCrashedError(
            f"the process worker (pid {worker.pid}) running {what}{again} died: "
            f"{how_it_died(returncode)}. Only this call failed; the worker was replaced. "
            f"Run it with backend='thread' to debug it in-process.",
            task=description,
            exitcode=returncode,
            index=call.index,
        )

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        for worker in list(self.workers):
            if worker.deadline is not None and worker.deadline <= now and worker.jobs:
                self._timed_out(worker, now)
            elif worker.kill_at is not None and worker.kill_at <= now:
                worker.kill_at = None
                worker.signal(signal.SIGKILL)
            if worker.exit_deadline is not None and worker.exit_deadline <= now:
                worker.exit_deadline = None
                if worker.popen is not None:
                    self._finish(worker, worker.spawned_returncode())
                elif not worker.exit_killed:
                    # Its pipe closed but the zygote reported no exit: make sure it ends,
                    # then wait once more for the report.
                    worker.exit_killed = True
                    worker.signal(signal.SIGKILL)
                    worker.exit_deadline = now + EXIT_REPORT_WAIT_S
                else:
                    self._finish(worker, None)

    def _timed_out(self, worker: Worker, now: float) -> None:
        job = worker.jobs[0]
        call = job.calls[job.delivered]
        lease = worker.lease
        again = _alone(job.calls[job.delivered + 1 :], rerun=False)
        again.extend(list(worker.jobs)[1:])
        self._stop_worker(worker, lease, signal.SIGTERM)
        worker.kill_at = now + (lease.config.kill_grace_s if lease is not None else 0.0)
        settle(
            call.future,
            exc=TaskTimeoutError(
                f"task {call.describe()} ran longer than its timeout of {job.timeout_s:g} s; "
                f"its worker process was stopped and replaced. Raise the timeout, or split "
                f"the work into smaller tasks."
            ),
        )
        self._queue_again(lease, again)

    def _stop_worker(self, worker: Worker, lease: Optional[Lease], signum: int) -> None:
        worker.jobs.clear()
        worker.state = Worker.DYING
        worker.deadline = None
        if lease is not None:
            lease.workers.discard(worker)
        worker.lease = None
        worker.signal(signum)

    def _interrupt(self, leases: list[Lease]) -> None:
        error = TaskInterruptedError(
            "the task was interrupted while it ran; its worker process was killed"
        )
        for lease in leases:
            if not lease.interrupting:
                continue
            for worker in list(lease.workers):
                jobs = list(worker.jobs)
                self._stop_worker(worker, lease, signal.SIGKILL)
                _fail_unstarted(jobs, error)

    def _stop_everything(self) -> None:
        workers = list(self.workers)
        for worker in workers:
            self._unregister(worker, pidfd=True)
            if worker.state not in (Worker.IDLE, Worker.RETIRING):
                worker.signal(signal.SIGKILL)
            worker.close()  # EOF: an idle worker exits by itself
        error = RuntimeError("the process worker service stopped while this task ran")
        _fail_unstarted([job for worker in workers for job in worker.jobs], error)
        zygote = self.zygote
        self.zygote = None
        if zygote is not None:
            # Give idle workers a moment to exit by themselves (flushing their output); the
            # zygote SIGKILLs whatever is left when its control socket closes.
            alive = {w.pid for w in workers if w.zygote is zygote and w.pid is not None}
            deadline = time.monotonic() + STOP_GRACE_S
            while alive and time.monotonic() < deadline:
                try:
                    zygote.ctl.settimeout(max(0.0, deadline - time.monotonic()))
                    message = zygote.receive()
                except OSError:
                    break
                if message is None:
                    break
                if message[0] == "exited":
                    alive.discard(message[1])
            zygote.stop(STOP_GRACE_S)
        for worker in workers:
            if worker.popen is not None:
                try:
                    worker.popen.wait(timeout=STOP_GRACE_S)
                except Exception:
                    worker.popen.kill()
                    worker.popen.wait()
        self.workers.clear()
        self.forked.clear()
        self.starting.clear()


def _cwd() -> Optional[str]:
    try:
        return os.getcwd()
    except OSError:
        return None


# --- the program's one service -------------------------------------------------------
_current: Optional[Service] = None
_current_lock = threading.Lock()
_live_services: weakref.WeakSet = weakref.WeakSet()


def open_lease(config: LeaseConfig, *, workers_now: int = 1) -> Lease:
    """A new lease on the program's service, starting the service if needed (and then
    ``workers_now`` of its workers at once). Raises RuntimeError in the zygote, or if its
    thread cannot start."""
    global _current
    with _current_lock:
        service = _current
        if service is not None:
            with service.lock:
                if not service.stopping and not service.finished:
                    lease = Lease(service, config)
                    service.leases.append(lease)
                    service.idle_deadline = None
                    service.wake()
                    return lease
        if _zygote.in_zygote:
            raise RuntimeError(
                "a module imported by the worker service's zygote tried to start process "
                "workers at import time; move that work under if __name__ == '__main__'."
            )
        service = Service()
        lease = Lease(service, config)
        service.leases.append(lease)  # before its thread starts, or it would stop at once
        service.start(lease, workers_now)
        _current = service
        _live_services.add(service)
        return lease


def current() -> Optional[Service]:
    """The running service, if any (for tests and diagnostics)."""
    service = _current
    if service is None or service.finished:
        return None
    return service


# The flavor of a process backend created with no options (what auto opens).
_DEFAULT_FLAVOR = (FORKSERVER, None, None)


def warm_workers() -> int:
    """Idle live workers that a default process backend (what auto opens) could take now;
    0 when no service runs. Reads a snapshot: starts nothing."""
    service = current()
    if service is None:
        return 0
    return sum(
        1
        for worker in list(service.workers)
        if worker.state == Worker.IDLE and worker.lease is None and worker.flavor == _DEFAULT_FLAVOR
    )


def start_cost_s() -> Optional[float]:
    """How long the last new worker took from its start to READY (seconds), None before any
    (or when no service runs)."""
    service = current()
    return None if service is None else service.last_start_cost_s


def zygote_ready() -> bool:
    """True when the service runs and its zygote can fork a worker now."""
    service = current()
    zygote = None if service is None else service.zygote
    return zygote is not None and zygote.ready


def worker_pids() -> list[int]:
    """Pids of the service's live workers and zygote (for tests and diagnostics)."""
    service = current()
    if service is None:
        return []
    pids = [w.pid for w in list(service.workers) if w.pid is not None]
    zygote = service.zygote
    if zygote is not None:
        pids.append(zygote.pid)
    return pids


def idle_members(timeout_s: float) -> tuple[set[int], Optional[threading.Thread]]:
    """The pids and thread of the service once it is idle (no lease open, no task running;
    waiting up to ``timeout_s`` for that), else nothing. For tests: a warm idle service is
    not a leak, a lease left open is."""
    deadline = time.monotonic() + timeout_s
    while True:
        service = current()
        if service is None:
            return set(), None
        with service.lock:
            workers = list(service.workers)
            idle = not service.leases and not any(w.jobs or w.pid is None for w in workers)
        if idle:
            return set(worker_pids()), service.thread
        if time.monotonic() >= deadline:
            return set(), None
        time.sleep(0.005)


def stop_if_idle(timeout_s: float) -> bool:
    """Stop the service now if no lease is open (whatever its idle timeout); True when no
    service runs afterwards. For tests, which must leave no process behind."""
    service = _current
    if service is None or service.finished:
        return True
    with service.lock:
        if service.leases:
            return False
    service.request_stop(exiting=False)
    thread = service.thread
    if thread is not None and thread is not threading.current_thread():
        thread.join(timeout_s)
    return service.finished


def _stop_at_exit() -> None:
    """Interpreter exit: let open backends' tasks finish, then stop. If the program is ending
    on Ctrl-C (an uncaught KeyboardInterrupt), or a Ctrl-C comes while waiting, the running
    tasks are killed instead: nothing waits for them."""
    interrupted = exiting_after_interrupt()
    for service in list(_live_services):
        if service.finished:
            continue
        with service.lock:
            leases = list(service.leases)
        try:
            for lease in leases:
                service.close_lease(lease, interrupt=interrupted)
            for lease in leases:
                lease.released.wait()
        except KeyboardInterrupt:
            for lease in leases:
                service.close_lease(lease, interrupt=True)
        service.request_stop(exiting=True)
        thread = service.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(5.0)


_register_atexit = getattr(threading, "_register_atexit", None)
if _register_atexit is not None:  # CPython 3.9+: runs before non-daemon threads are joined
    _register_atexit(_stop_at_exit)


def _forget_in_child() -> None:
    # A forked child has no manager thread: its copy of the service is dropped (its pipes
    # closed here only; the parent keeps them), and the next lease starts a new service.
    global _current, _current_lock
    _current_lock = threading.Lock()
    services = list(_live_services)
    _live_services.clear()
    _current = None
    for service in services:
        service.lock = threading.RLock()
        running = not service.finished
        service.finished = service.stopping = True
        if running:  # a stopped one closed its files already (their numbers may be reused)
            with contextlib.suppress(Exception):
                _close_copies(service)


def _close_copies(service: Service) -> None:
    for fd in (service.wake_r, service.wake_w):
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)
    service.wake_r = service.wake_w = -1
    for worker in service.workers:
        worker.close()
    if service.zygote is not None:
        with contextlib.suppress(OSError):
            service.zygote.ctl.close()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
