"""The compression workers: a few processes, each compressing one prompt at a time, fed from one bounded queue.

Compression is CPU-bound Python; in threads of the server's process it holds the interpreter lock the event
loop needs, and four concurrent 100k-token compressions made small relayed requests wait 100 times longer.
In processes of their own (started with ``spawn``: no state copied from a running server, the same on every
platform) they only share the machine's cores with it.

- Each worker is a one-process ``ProcessPoolExecutor`` (or, with ``processes=False``, a one-thread
  executor in this process), so one worker can be killed and replaced without touching the others.
- A request waits at most ``budget_s`` in all, queue included (``OverBudget``); a job whose request has
  given up (or gone away) while it waited is dropped without running; past ``queue`` waiting jobs a new
  one is refused at once (``QueueFull``, also an ``OverBudget``).
- A worker process stops a compression at its request's deadline (see ``_worker.py``). One that has not
  answered ``kill_after_s`` later is stuck in C code: it is killed and a new one started. A worker that
  dies (a crash, the OOM killer) is replaced too. Threads can be neither interrupted nor killed: an
  abandoned compression there runs to its end, holding its worker.
- New workers load and warm up the presets before they take a job (``start`` waits for that, so the
  server answers nothing before its workers are ready).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import os
import signal
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

from . import _worker
from ._worker import Job, JobResult, Worker, WorkerConfig

log = logging.getLogger("occ_research.server")
RESTART_PAUSE_S = 1.0  # between attempts to start a worker that failed to start
CLOSE_WAIT_S = 5.0


class OverBudget(Exception):
    """The compression did not finish within its request's budget."""


class QueueFull(OverBudget):
    """Every worker is busy and the queue is full: the request does not wait at all."""


@dataclass
class _Waiting:
    job: Job
    answer: asyncio.Future[JobResult]  # cancelled: the request stopped waiting
    deadline: float  # on the event loop's clock


@dataclass
class _Slot:
    """One worker: its executor, and its process id (None for a thread)."""

    number: int
    executor: Executor | None = None
    pid: int | None = None
    busy: bool = False  # compressing a job
    thread_worker: Worker | None = field(default=None, repr=False)


class CompressionPool:
    """``workers`` compression workers (processes, or threads if ``processes`` is False) behind one queue.

    ``on_restart`` is called each time a worker is replaced (killed for overrunning, or found dead)."""

    def __init__(
        self,
        config: WorkerConfig,
        workers: int,
        budget_s: float,
        queue: int,
        processes: bool = True,
        kill_after_s: float | None = None,
        on_restart: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.budget_s = budget_s
        self.processes = processes
        self.kill_after_s = kill_after_s if kill_after_s is not None else max(1.0, budget_s)
        self._on_restart = on_restart
        self._queue_size = queue
        self._slots = [_Slot(n) for n in range(workers)]
        self._queue: asyncio.Queue[_Waiting] | None = None
        self._dispatchers: list[asyncio.Task[None]] = []

    @property
    def waiting(self) -> int:
        """Jobs in the queue (some may belong to requests that have given up)."""
        return self._queue.qsize() if self._queue is not None else 0

    async def start(self) -> None:
        """Start every worker and wait until each has warmed up; then take jobs."""
        self._queue = asyncio.Queue(self._queue_size)
        await asyncio.gather(*(self._start(slot) for slot in self._slots))
        self._dispatchers = [asyncio.create_task(self._dispatch(slot)) for slot in self._slots]

    async def run(self, job: Job) -> JobResult:
        """``job``'s result from the first free worker; ``OverBudget`` once ``budget_s`` have passed.
        A cancelled caller (the client went away) leaves its job to be dropped the same way."""
        if self._queue is None:
            raise RuntimeError("the compression pool is not started")
        loop = asyncio.get_running_loop()
        waiting = _Waiting(job, loop.create_future(), loop.time() + self.budget_s)
        try:
            self._queue.put_nowait(waiting)
        except asyncio.QueueFull:
            raise QueueFull from None
        try:
            async with asyncio.timeout_at(waiting.deadline):
                return await waiting.answer
        except TimeoutError:
            raise OverBudget from None
        finally:
            waiting.answer.cancel()  # a no-op once answered; else: never started, or its result unread

    async def close(self) -> None:
        """Stop taking jobs and stop the workers (a busy worker process is killed: its request is gone).
        Waits (a few seconds at most) until each executor has let go of its queues, and frees them, so
        their semaphores are released now: uvicorn ends its process by raising again the signal that
        stopped it, and no exit handler runs after that."""
        for task in self._dispatchers:
            task.cancel()
        await asyncio.gather(*self._dispatchers, return_exceptions=True)
        executors = [slot.executor for slot in self._slots if slot.executor is not None]
        for slot in self._slots:
            if slot.busy:
                self._kill(slot)
            slot.executor, slot.pid, slot.thread_worker = None, None, None
        with contextlib.suppress(TimeoutError):  # an idle worker ends on its own, its queues in order
            async with asyncio.timeout(CLOSE_WAIT_S):
                await asyncio.gather(
                    *(asyncio.to_thread(e.shutdown, wait=True, cancel_futures=True) for e in executors)
                )
        del executors
        gc.collect()  # the executors and their queues are in reference cycles: free them now

    # -- the workers -----------------------------------------------------------------------------------
    async def _start(self, slot: _Slot) -> None:
        """A new worker in ``slot``, warmed up (a process: its id known, so it can be killed)."""
        if not self.processes:
            slot.thread_worker = Worker(self.config)
            slot.executor = ThreadPoolExecutor(1, thread_name_prefix=f"occ-compress-{slot.number}")
            await asyncio.wrap_future(slot.executor.submit(slot.thread_worker.warm_up))
            return
        executor = ProcessPoolExecutor(
            1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker.start_process,
            initargs=(self.config,),
        )
        slot.executor = executor
        # submit() starts the process: done in a thread, since starting a process writes to its pipe
        started = await asyncio.to_thread(executor.submit, _worker.ready)
        slot.pid = await asyncio.wrap_future(started)

    def _kill(self, slot: _Slot) -> None:
        if slot.pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(slot.pid, getattr(signal, "SIGKILL", signal.SIGTERM))

    def _discard(self, slot: _Slot) -> None:
        """Kill the worker in ``slot`` and let its executor go (it notices the death and ends)."""
        self._kill(slot)
        if slot.executor is not None:
            slot.executor.shutdown(wait=False, cancel_futures=True)
        slot.executor, slot.pid, slot.thread_worker = None, None, None

    async def _restart(self, slot: _Slot, why: str) -> None:
        log.warning("compression worker %d %s: starting a new one", slot.number, why)
        self._discard(slot)
        while True:
            try:
                await self._start(slot)
                break
            except Exception as exc:  # e.g. out of memory: keep trying, the other workers go on
                log.warning("compression worker %d did not start: %s", slot.number, type(exc).__name__)
                self._discard(slot)
                await asyncio.sleep(RESTART_PAUSE_S)
        if self._on_restart is not None:
            self._on_restart()

    def _submit(self, slot: _Slot, job: Job, seconds: float) -> Future[JobResult]:
        assert slot.executor is not None
        if slot.thread_worker is not None:
            return slot.executor.submit(slot.thread_worker.compress, job)
        return slot.executor.submit(_worker.run_in_process, job, seconds)

    async def _dispatch(self, slot: _Slot) -> None:
        """The loop feeding one worker: the next job whose request still waits, one at a time."""
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            waiting = await self._queue.get()
            seconds = waiting.deadline - loop.time()
            if waiting.answer.done() or seconds <= 0:
                continue  # its request stopped waiting while it was queued: never started
            try:
                running = asyncio.wrap_future(self._submit(slot, waiting.job, seconds))
            except BrokenProcessPool as exc:  # the worker died while idle
                _settle(waiting.answer, exc)
                await self._restart(slot, "died")
                continue
            # a thread cannot be stopped: wait for it; a process stops at the deadline, or is killed
            limit = None if slot.thread_worker is not None else seconds + self.kill_after_s
            slot.busy = True  # left set if this loop is cancelled meanwhile: close() then kills the worker
            done, _ = await asyncio.wait({running}, timeout=limit)
            slot.busy = False
            if not done:
                running.cancel()
                await self._restart(slot, f"ran {limit:.1f} s and did not stop")
                continue
            failure = running.exception()
            _settle(waiting.answer, running.result() if failure is None else failure)
            if isinstance(failure, BrokenProcessPool):
                await self._restart(slot, "died")


def _settle(answer: asyncio.Future[JobResult], outcome: JobResult | BaseException) -> None:
    if answer.done():  # its request has stopped waiting
        return
    if isinstance(outcome, JobResult):
        answer.set_result(outcome)
    else:
        answer.set_exception(outcome if isinstance(outcome, Exception) else RuntimeError(repr(outcome)))
