"""The outbox worker for email: claim due messages, send, record, back off.

Messages are claimed most urgent first (priority, then age), so a critical never waits
behind a backlog of warnings; at most ``smtp.pool.max_connections`` sends run at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from receiver.channels.email import Attempt, PermanentFailure, SendResult, TemporaryFailure
from receiver.errors import StoreError
from receiver.metrics import ReceiverMetrics
from receiver.render import envelope_address
from receiver.runtime import Runtime
from receiver.store import AttemptRecord, OutboxRow
from receiver.store_async import AsyncStore

log = logging.getLogger(__name__)

IDLE_POLL = 1.0  # also picks up messages re-queued by `alertmail outbox retry`


def backoff_delay(attempts: int, initial: float, maximum: float, rand: float) -> float:
    """Capped exponential backoff with +-20% jitter; ``attempts`` counts failures so far."""
    base = min(maximum, initial * 2.0 ** max(0, attempts - 1))
    return max(0.0, base * (0.8 + 0.4 * rand))


def _records(attempts: Sequence[Attempt]) -> list[AttemptRecord]:
    return [AttemptRecord(a.server, a.ok, a.stage, a.code, a.message, a.elapsed) for a in attempts]


class EmailWorker:
    def __init__(
        self,
        store: AsyncStore,
        runtime: Runtime,
        metrics: ReceiverMetrics,
        *,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.runtime = runtime
        self.metrics = metrics
        self.clock = clock
        self.rand = rand
        self._wake = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._stopping = False

    def wake(self) -> None:
        self._wake.set()

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    async def run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                if await self._claim_and_start():
                    continue  # there may be more due right now
                await self._sleep()
            except StoreError as exc:
                # The database is busy or failing: the queue is still there; try again soon.
                log.error("outbox not readable, retrying: %s", exc)
                await asyncio.sleep(IDLE_POLL)

    async def _claim_and_start(self) -> bool:
        """Start sends for due messages; True when every free slot was filled."""
        smtp = self.runtime.config.smtp
        if smtp is None or self.runtime.smtp is None:
            return False
        free = smtp.pool.max_connections - len(self._inflight)
        rows = await self.store.run(self.store.store.claim_due, "email", self.clock(), free)
        for row in rows:
            task = asyncio.create_task(self._send(row), name=f"send-{row.id}")
            self._inflight.add(task)
            task.add_done_callback(self._done)
        return bool(rows) and len(self._inflight) < smtp.pool.max_connections

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._wake.set()  # a free slot: claim the next message at once

    async def _sleep(self) -> None:
        timeout = IDLE_POLL
        due = await self.store.run(self.store.store.next_due_at, "email")
        if due is not None:
            timeout = min(IDLE_POLL, max(0.0, due - self.clock()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=max(timeout, 0.005))

    async def _send(self, row: OutboxRow) -> None:
        smtp_cfg = self.runtime.config.smtp
        chain = self.runtime.smtp
        assert smtp_cfg is not None and chain is not None
        sender = envelope_address(smtp_cfg.from_)
        try:
            result = await chain.send(row.payload, sender, row.recipients)
        except TemporaryFailure as exc:
            await self._retry_or_die(row, str(exc), _records(exc.attempts))
        except PermanentFailure as exc:
            reason = f"permanent failure: {exc}"
            log.error("message %d is dead: %s", row.id, exc)
            await self._record(
                row.id,
                "dead",
                _records(exc.attempts),
                error=str(exc),
                reason=reason,
                recipients_result=json.dumps(exc.rejected) if exc.rejected else None,
            )
            self.metrics.deliveries.labels("email", "dead").inc()
        except asyncio.CancelledError:
            raise  # left as 'sending'; the next start sends it again (at-least-once)
        except Exception as exc:
            log.exception("unexpected error sending message %d", row.id)
            await self._retry_or_die(row, f"internal error: {exc!r}", [])
        else:
            await self._sent(row, result)

    async def _sent(self, row: OutboxRow, result: SendResult) -> None:
        now = self.clock()
        results = {addr: "250 accepted" for addr in result.accepted}
        results.update(result.rejected)
        await self._record(
            row.id,
            "sent",
            _records(result.attempts),
            server=result.server,
            reply=result.reply,
            recipients_result=json.dumps(results),
        )
        self.metrics.deliveries.labels("email", "sent").inc()
        self.metrics.latency.labels("email").observe(max(0.0, now - row.received_at))
        if result.rejected:
            log.warning(
                "message %d: %d recipient(s) refused: %s",
                row.id,
                len(result.rejected),
                ", ".join(sorted(result.rejected)),
            )

    async def _retry_or_die(
        self, row: OutboxRow, error: str, attempts: list[AttemptRecord]
    ) -> None:
        smtp_cfg = self.runtime.config.smtp
        assert smtp_cfg is not None
        now = self.clock()
        retry = smtp_cfg.retry
        delay = backoff_delay(row.attempts + 1, retry.initial, retry.max, self.rand())
        if now + delay - row.created_at > retry.give_up_after:
            reason = f"gave up after {retry.give_up_after:.0f}s; last error: {error}"
            log.error("message %d is dead: %s", row.id, reason)
            await self._record(row.id, "dead", attempts, error=error, reason=reason)
            self.metrics.deliveries.labels("email", "dead").inc()
            return
        log.warning("message %d not sent (%s); retrying in %.1fs", row.id, error, delay)
        await self._record(row.id, "retrying", attempts, error=error, next_attempt_at=now + delay)
        self.metrics.deliveries.labels("email", "retry").inc()

    async def _record(
        self, outbox_id: int, state: str, attempts: list[AttemptRecord], **fields: Any
    ) -> None:
        """Write an outcome, riding out a busy database: losing it would resend the message."""
        for wait in (0.1, 0.5, 1.0, 2.0, 5.0, 10.0):
            try:
                await self.store.run(
                    self.store.store.finish_attempt,
                    outbox_id,
                    self.clock(),
                    state,
                    attempts,
                    **fields,
                )
                return
            except StoreError as exc:
                log.warning(
                    "recording message %d as %s failed (%s); retrying", outbox_id, state, exc
                )
                await asyncio.sleep(wait)
        log.error(
            "message %d stays 'sending' until restart: its outcome could not be stored", outbox_id
        )

    async def stop(self, timeout: float) -> None:
        """Stop claiming; give in-flight sends ``timeout`` seconds, then cancel them."""
        self._stopping = True
        self._wake.set()
        if self._inflight:
            _, pending = await asyncio.wait(set(self._inflight), timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                log.warning(
                    "%d send(s) cut off at shutdown; they are resent on start", len(pending)
                )
                await asyncio.gather(*pending, return_exceptions=True)
