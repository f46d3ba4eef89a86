from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import Future
from pathlib import Path

import pytest

from receiver.errors import StoreError
from receiver.store_async import (
    BACKGROUND,
    URGENT,
    AsyncStore,
    _Call,
    _GroupCommit,
    _StoreThread,
)
from receiver.store_types import IngestItem


def test_store_thread_runs_urgent_jobs_first_then_in_arrival_order() -> None:
    worker = _StoreThread()
    release = threading.Event()
    started = threading.Event()
    order: list[str] = []

    def blocker() -> None:
        started.set()
        release.wait(5)

    def job(name: str) -> str:
        order.append(name)
        return name

    first = worker.submit(BACKGROUND, blocker)
    assert started.wait(5)
    futures: list[Future[str]] = []
    for priority, name in [
        (BACKGROUND, "b1"),
        (URGENT, "u1"),
        (BACKGROUND, "b2"),
        (URGENT, "u2"),
    ]:
        futures.append(worker.submit(priority, lambda name=name: job(name)))  # type: ignore[misc]
    release.set()
    first.result(5)
    assert [f.result(5) for f in futures] == ["b1", "u1", "b2", "u2"]
    assert order == ["u1", "u2", "b1", "b2"]
    worker.shutdown()


def test_store_thread_shutdown_runs_what_was_queued_and_reports_errors() -> None:
    worker = _StoreThread()

    def fail() -> None:
        raise RuntimeError("boom")

    failing = worker.submit(URGENT, fail)
    later = [worker.submit(BACKGROUND, lambda i=i: i) for i in range(50)]  # type: ignore[misc]
    worker.shutdown()
    assert isinstance(failing.exception(0), RuntimeError)
    assert [f.result(0) for f in later] == list(range(50))


async def test_group_calls_waiting_behind_a_job_share_one_write_in_order() -> None:
    worker = _StoreThread()
    release = threading.Event()
    started = threading.Event()
    writes: list[list[int]] = []

    def write(items: list[int]) -> list[int]:
        writes.append(items)
        return [i * 10 for i in items]

    group: _GroupCommit[int, int] = _GroupCommit(URGENT, write)
    seen: list[int] = []
    blocker = worker.submit(URGENT, lambda: (started.set(), release.wait(5)))
    assert started.wait(5)
    calls = [_Call(group, i, seen.append) for i in range(5)]
    for c in calls:
        worker.submit_call(c)
    later = worker.submit(URGENT, lambda: "later")
    release.set()
    assert await asyncio.wrap_future(later) == "later"
    # A job queued after the calls: by the time its result is seen, every callback has run.
    assert seen == [0, 10, 20, 30, 40]
    assert await asyncio.gather(*(c.fut for c in calls)) == [0, 10, 20, 30, 40]
    await asyncio.wrap_future(blocker)
    assert writes == [[0, 1, 2, 3, 4]]  # one write for all five
    worker.shutdown()


async def test_a_failed_group_write_fails_every_caller_with_a_store_error() -> None:
    worker = _StoreThread()

    def write(items: list[int]) -> list[int]:
        raise ValueError("a bug in the write")

    group: _GroupCommit[int, int] = _GroupCommit(URGENT, write)
    calls = [_Call(group, i, None) for i in range(3)]
    for c in calls:
        worker.submit_call(c)
    results = await asyncio.gather(*(c.fut for c in calls), return_exceptions=True)
    worker.shutdown()
    assert all(isinstance(r, StoreError) and "a bug in the write" in str(r) for r in results)
    assert all(isinstance(r.__cause__, ValueError) for r in results)


async def test_one_receiver_per_database(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    first = await AsyncStore.open(db, receiver_wait=0.0)
    with pytest.raises(StoreError, match=rf"another alertmail receiver \(pid {os.getpid()}\)"):
        await AsyncStore.open(db, receiver_wait=0.2)
    cli = await AsyncStore.open(db)  # commands that do not ingest take no lock
    await cli.close()

    async def close_soon() -> None:
        await asyncio.sleep(0.2)
        await first.close()

    # An overlapping restart: the new receiver waits for the old one to exit.
    closing = asyncio.create_task(close_soon())
    second = await AsyncStore.open(db, receiver_wait=5.0)
    await closing
    assert (
        await second.ingest(IngestItem(1.0, "r", "g", "firing", "k", "{}", 0.0))
    ).notification_id
    await second.close()
