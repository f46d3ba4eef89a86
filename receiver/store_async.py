"""The async face of the store: one thread owns the SQLite connection.

Webhook ingests that arrive while a commit is in progress are gathered and committed
together in the next transaction, so concurrent senders share one fsync.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ParamSpec, TypeVar

from receiver.errors import StoreError
from receiver.store import IngestItem, IngestResult, Store

P = ParamSpec("P")
T = TypeVar("T")


class AsyncStore:
    def __init__(self, store: Store, executor: ThreadPoolExecutor) -> None:
        self.store = store
        self._executor = executor
        self._pending: list[tuple[IngestItem, asyncio.Future[IngestResult]]] = []
        self._flusher: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, path: Path | str) -> AsyncStore:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alertmail-store")
        loop = asyncio.get_running_loop()
        try:
            store = await loop.run_in_executor(executor, Store, path)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(store, executor)

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a Store method on the store thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def ingest(self, item: IngestItem) -> IngestResult:
        fut: asyncio.Future[IngestResult] = asyncio.get_running_loop().create_future()
        self._pending.append((item, fut))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="alertmail-store-flush")
        return await fut

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    results = await self.run(self.store.ingest_batch, [it for it, _ in batch])
                except StoreError as exc:
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                except BaseException as exc:
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(StoreError(f"store write failed: {exc!r}"))
                    raise
                for (_, fut), res in zip(batch, results, strict=True):
                    if not fut.done():
                        fut.set_result(res)
        finally:
            self._flusher = None

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.shield(self._flusher)
        await self.run(self.store.close)
        self._executor.shutdown(wait=True)
