"""The async face of the store: one thread owns the SQLite connection.

Webhook ingests that arrive while a commit is in progress are gathered and committed
together in the next transaction, so concurrent senders share one fsync. The store thread
gathers them itself: when a commit ends it starts the next one with every ingest that has
arrived meanwhile, with no trip through the event loop in between (on a busy machine each
such trip waits for a core). Ingest work is queued ahead of background work (dispatch,
delivery bookkeeping, pages): an answer to Alertmanager never waits behind a batch of
outbox writes.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Generic, ParamSpec, TypeVar

from receiver.errors import StoreError
from receiver.store import IngestItem, IngestResult, Store
from receiver.store_types import Outcome

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")

URGENT, BACKGROUND = 0, 1
_STOP = object()


class _GroupCommit(Generic[ItemT, ResultT]):
    """A store method that writes many calls' items in one transaction."""

    def __init__(self, priority: int, write: Callable[[list[ItemT]], list[ResultT]]) -> None:
        self.priority = priority
        self._write = write

    def run(self, calls: list[_Call[ItemT, ResultT]]) -> None:
        """On the store thread: write the items, then answer every caller on its loop."""
        outcome: list[ResultT] | BaseException
        try:
            outcome = self._write([c.item for c in calls])
        except StoreError as exc:
            outcome = exc
        except BaseException as exc:  # a bug: the callers get an error, not a hang
            outcome = StoreError(f"store write failed: {exc!r}")
            outcome.__cause__ = exc
        try:
            calls[0].loop.call_soon_threadsafe(_answer, calls, outcome)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            log.warning("store: %d results for a closed event loop dropped", len(calls))


class _Call(Generic[ItemT, ResultT]):
    """One caller's item, the future it awaits, and what to run when its result is known."""

    __slots__ = ("fut", "group", "item", "loop", "on_done")

    def __init__(
        self,
        group: _GroupCommit[ItemT, ResultT],
        item: ItemT,
        on_done: Callable[[ResultT], None] | None,
    ) -> None:
        self.group = group
        self.item = item
        self.loop = asyncio.get_running_loop()
        self.fut: asyncio.Future[ResultT] = self.loop.create_future()
        self.on_done = on_done


def _answer(calls: list[_Call[Any, Any]], outcome: list[Any] | BaseException) -> None:
    """On the event loop, one step for the whole batch: each callback, then its caller."""
    if isinstance(outcome, BaseException):
        for c in calls:
            if not c.fut.done():
                c.fut.set_exception(outcome)
        return
    for c, res in zip(calls, outcome, strict=True):
        if c.on_done is not None:
            try:
                c.on_done(res)
            except Exception:  # a bug there must not keep the others waiting
                log.exception("store: callback after a commit failed")
        if not c.fut.done():
            c.fut.set_result(res)


class _StoreThread:
    """A single worker thread taking jobs by priority, then in arrival order.

    Jobs arrive through a SimpleQueue (a C queue: no Condition, no lock per waiter, which
    a PriorityQueue costs on every webhook) and are sorted into one deque per priority by
    the thread itself, which looks at everything that has arrived before it picks a job.
    A group-commit call at the head of a lane takes the same group's calls behind it along.
    """

    def __init__(self) -> None:
        self._inbox: queue.SimpleQueue[tuple[int, Any, Future[Any] | None]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="alertmail-store", daemon=True)
        self._thread.start()

    def submit(self, priority: int, fn: Callable[[], T]) -> Future[T]:
        fut: Future[T] = Future()
        self._inbox.put((priority, fn, fut))
        return fut

    def submit_call(self, call: _Call[Any, Any]) -> None:
        self._inbox.put((call.group.priority, call, None))

    def _run(self) -> None:
        lanes: tuple[deque[tuple[Any, Future[Any] | None]], ...] = tuple(
            deque() for _ in range(BACKGROUND + 2)
        )
        inbox = self._inbox
        while True:
            if not any(lanes):
                priority, fn, fut = inbox.get()
                lanes[priority].append((fn, fut))
            while not inbox.empty():
                priority, fn, fut = inbox.get_nowait()
                lanes[priority].append((fn, fut))
            lane = next(lane for lane in lanes if lane)
            fn, fut = lane.popleft()
            if fn is _STOP:
                return
            if isinstance(fn, _Call):
                calls = [fn]
                while lane and isinstance(lane[0][0], _Call) and lane[0][0].group is fn.group:
                    calls.append(lane.popleft()[0])
                fn.group.run(calls)
                continue
            assert fut is not None
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except BaseException as exc:
                fut.set_exception(exc)

    def shutdown(self) -> None:
        # Lowest priority: everything already queued runs first.
        self._inbox.put((BACKGROUND + 1, _STOP, None))
        self._thread.join()


class ReceiverLock:
    """One receiver per database. Ingest keeps each group's last notification and the next
    notification id in memory, which another process writing notifications to the same
    file would make stale: a second receiver waits for the first to exit (an overlapping
    restart), then gives up with a clear error. Other commands (outbox, report) do not
    ingest and take no lock."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    @classmethod
    def acquire(cls, db: Path | str, wait: float) -> ReceiverLock | None:
        if str(db) == ":memory:":
            return None
        path = Path(f"{db}-receiver.lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                    os.close(fd)
                    raise StoreError(
                        f"{db}: another alertmail receiver (pid {holder}) is using this "
                        f"database; waited {wait:g}s for it to stop"
                    ) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(fd)

    def release(self) -> None:
        os.close(self._fd)  # closing drops the lock; the file stays, as SQLite's -shm does


class AsyncStore:
    def __init__(
        self, store: Store, worker: _StoreThread, lock: ReceiverLock | None = None
    ) -> None:
        self.store = store
        self._worker = worker
        self._lock = lock
        # Looked up at each write, so a wrapped store method (in tests) is the one called.
        self._ingests: _GroupCommit[IngestItem, IngestResult] = _GroupCommit(
            URGENT, lambda items: self.store.ingest_batch(items)
        )
        self._outcomes: _GroupCommit[Outcome, str] = _GroupCommit(
            BACKGROUND, lambda items: self.store.finish_many(items)
        )

    @classmethod
    async def open(cls, path: Path | str, *, receiver_wait: float | None = None) -> AsyncStore:
        """Open the store. A receiver (which ingests) gives ``receiver_wait``: the seconds
        to wait for another receiver on the same database to exit (see ReceiverLock)."""
        lock = None
        if receiver_wait is not None:
            lock = await asyncio.to_thread(ReceiverLock.acquire, path, receiver_wait)
        worker = _StoreThread()
        try:
            store = await asyncio.wrap_future(worker.submit(URGENT, lambda: Store(path)))
        except BaseException:
            worker.shutdown()
            if lock is not None:
                lock.release()
            raise
        return cls(store, worker, lock)

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a Store method on the store thread (behind any waiting ingest)."""
        job = functools.partial(fn, *args, **kwargs)
        return await asyncio.wrap_future(self._worker.submit(BACKGROUND, job))

    async def run_urgent(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ahead of background work: for what answers a webhook or /readyz."""
        job = functools.partial(fn, *args, **kwargs)
        return await asyncio.wrap_future(self._worker.submit(URGENT, job))

    async def ingest(
        self, item: IngestItem, on_stored: Callable[[IngestResult], None] | None = None
    ) -> IngestResult:
        """Store one webhook; concurrent ingests share a transaction.

        ``on_stored`` runs on the event loop as soon as the commit's result arrives, before
        the result of any store job that ran after the commit (a dispatcher's query for
        pending rows) is seen: both reach the loop in the order the store thread ran them.
        """
        return await self._call(self._ingests, item, on_stored)

    async def finish(self, outcome: Outcome) -> str:
        """Record a delivery outcome; outcomes arriving together share a transaction."""
        return await self._call(self._outcomes, outcome, None)

    async def _call(
        self,
        group: _GroupCommit[ItemT, ResultT],
        item: ItemT,
        on_done: Callable[[ResultT], None] | None,
    ) -> ResultT:
        call = _Call(group, item, on_done)
        self._worker.submit_call(call)
        return await call.fut

    async def close(self) -> None:
        # Background priority, after every queued ingest and outcome has been written; their
        # answers reach the loop first too (the loop runs callbacks in the order they came).
        try:
            await self.run(self.store.close)
            await asyncio.to_thread(self._worker.shutdown)
        finally:
            if self._lock is not None:
                self._lock.release()
