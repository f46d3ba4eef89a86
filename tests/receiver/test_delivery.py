"""The email outbox worker's loop: slots, claims, and what it asks the store."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from receiver.channels.email import SendResult
from receiver.config import RetryPolicy
from receiver.delivery import EmailWorker
from receiver.metrics import ReceiverMetrics
from receiver.store import OutboxRow
from receiver.store_types import Outcome


def row(i: int) -> OutboxRow:
    return OutboxRow(
        id=i, channel="email", target='["ops@example.com"]', kind="alert", priority=1,
        state="sending", message_id=None, subject=None, payload=b"x", created_at=0.0,
        received_at=0.0, next_attempt_at=0.0, attempts=0, last_error=None, server=None,
        reply=None, recipients_result=None, finished_at=None, reason=None, thread_id=None,
        notification_id=None,
    )  # fmt: skip


class FakeStore:
    """The AsyncStore face the worker uses, with an outbox of `count` due messages."""

    def __init__(self, count: int) -> None:
        self.store = self
        self.due = [row(i) for i in range(count)]
        self.calls: list[str] = []
        self.finished: list[int] = []

    async def run(self, fn: Any, *args: Any) -> Any:
        self.calls.append(fn.__name__)
        return fn(*args)

    def claim_due(self, channel: str, now: float, limit: int) -> list[OutboxRow]:
        taken, self.due = self.due[:limit], self.due[limit:]
        return taken

    def next_due_at(self, channel: str) -> float | None:
        return 0.0 if self.due else None

    async def finish(self, outcome: Outcome) -> str:
        self.finished.append(outcome.outbox_id)
        return outcome.state


class SlowChain:
    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.active = self.peak = 0

    async def send(self, message: bytes, sender: str, recipients: Any) -> SendResult:
        self.active += 1
        self.peak = max(self.peak, self.active)
        await self.release.wait()
        self.active -= 1
        return SendResult("sink:25", "250 ok", tuple(recipients), {}, ())


async def test_all_slots_busy_waits_without_asking_when_the_next_is_due() -> None:
    store, chain = FakeStore(5), SlowChain()
    smtp = SimpleNamespace(pool=SimpleNamespace(max_connections=2), from_="a@example.com",
                           retry=RetryPolicy())  # fmt: skip
    runtime = SimpleNamespace(config=SimpleNamespace(smtp=smtp), smtp=chain)
    worker = EmailWorker(store, runtime, ReceiverMetrics())  # type: ignore[arg-type]
    task = asyncio.create_task(worker.run())
    try:
        for _ in range(100):
            await asyncio.sleep(0.01)
            if chain.active == 2:
                break
        await asyncio.sleep(0.05)  # both slots taken: the worker should be waiting quietly
        assert store.calls == ["claim_due"]

        chain.release.set()
        for _ in range(200):
            if len(store.finished) == 5:
                break
            await asyncio.sleep(0.01)
    finally:
        await worker.stop(1.0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    assert sorted(store.finished) == [0, 1, 2, 3, 4]
    assert chain.peak == 2
