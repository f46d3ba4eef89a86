from __future__ import annotations

import threading
from concurrent.futures import Future

from receiver.store_async import BACKGROUND, URGENT, _StoreThread


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
