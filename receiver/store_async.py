"""The async face of the store: one thread owns the SQLite connection.

Webhook ingests that arrive while a commit is in progress are gathered and committed
together in the next transaction, so concurrent senders share one fsync. Ingest work is
queued ahead of background work (dispatch, delivery bookkeeping, pages): an answer to
Alertmanager never waits behind a batch of outbox writes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import queue
import threading
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


class _StoreThread:
    """A single worker thread taking jobs by priority, then in arrival order.

    Jobs arrive through a SimpleQueue (a C queue: no Condition, no lock per waiter, which
    a PriorityQueue costs on every webhook) and are sorted into one deque per priority by
    the thread itself, which looks at everything that has arrived before it picks a job.
    """

    def __init__(self) -> None:
        self._inbox: queue.SimpleQueue[tuple[int, Any, Future[Any] | None]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="alertmail-store", daemon=True)
        self._thread.start()

    def submit(self, priority: int, fn: Callable[[], T]) -> Future[T]:
        fut: Future[T] = Future()
        self._inbox.put((priority, fn, fut))
        return fut

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
            fn, fut = next(lane for lane in lanes if lane).popleft()
            if fn is _STOP:
                return
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


# An item, the future its caller awaits, and what to run as soon as its result is known.
_Call = tuple[ItemT, "asyncio.Future[ResultT]", Callable[[ResultT], None] | None]


class _GroupCommit(Generic[ItemT, ResultT]):
    """Calls arriving while a commit runs are written together in the next one."""

    def __init__(
        self,
        worker: _StoreThread,
        priority: int,
        write: Callable[[list[ItemT]], list[ResultT]],
        name: str,
    ) -> None:
        self._worker = worker
        self._priority = priority
        self._write = write
        self._name = name
        self._pending: list[_Call[ItemT, ResultT]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(
        self, item: ItemT, on_done: Callable[[ResultT], None] | None = None
    ) -> ResultT:
        fut: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        self._pending.append((item, fut, on_done))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name=self._name)
        return await fut

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                items = [it for it, _, _ in batch]
                job = functools.partial(self._write, items)
                try:
                    results = await asyncio.wrap_future(self._worker.submit(self._priority, job))
                except StoreError as exc:
                    for _, fut, _ in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                except BaseException as exc:
                    for _, fut, _ in batch:
                        if not fut.done():
                            fut.set_exception(StoreError(f"store write failed: {exc!r}"))
                    raise
                for (_, fut, on_done), res in zip(batch, results, strict=True):
                    if on_done is not None:
                        try:
                            on_done(res)
                        except Exception:  # a bug there must not keep the others waiting
                            log.exception("%s: callback after a commit failed", self._name)
                    if not fut.done():
                        fut.set_result(res)
        finally:
            self._flusher = None

    async def drain(self) -> None:
        if self._flusher is not None:
            await asyncio.shield(self._flusher)


class AsyncStore:
    def __init__(self, store: Store, worker: _StoreThread) -> None:
        self.store = store
        self._worker = worker
        self._ingests = _GroupCommit(worker, URGENT, store.ingest_batch, "alertmail-ingest")
        self._outcomes = _GroupCommit(worker, BACKGROUND, store.finish_many, "alertmail-outcomes")

    @classmethod
    async def open(cls, path: Path | str) -> AsyncStore:
        worker = _StoreThread()
        try:
            store = await asyncio.wrap_future(worker.submit(URGENT, lambda: Store(path)))
        except BaseException:
            worker.shutdown()
            raise
        return cls(store, worker)

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
        pending rows) is seen: one more step than awaiting the result would take.
        """
        return await self._ingests.submit(item, on_stored)

    async def finish(self, outcome: Outcome) -> str:
        """Record a delivery outcome; outcomes arriving together share a transaction."""
        return await self._outcomes.submit(outcome)

    async def close(self) -> None:
        await self._ingests.drain()
        await self._outcomes.drain()
        await self.run(self.store.close)
        await asyncio.to_thread(self._worker.shutdown)
