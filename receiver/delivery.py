"""Outbox workers: claim due messages, deliver, record, back off. One worker per channel,
so Slack failures never delay email and the reverse.

Messages are claimed most urgent first (priority, then age), so a critical never waits
behind a backlog of warnings.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any

from receiver.channels.email import Attempt, PermanentFailure, SendResult, TemporaryFailure
from receiver.config import RetryPolicy
from receiver.errors import StoreError
from receiver.metrics import ReceiverMetrics
from receiver.render import envelope_address
from receiver.runtime import Runtime
from receiver.store import AttemptRecord, OutboxRow
from receiver.store_async import AsyncStore
from receiver.store_types import Outcome

log = logging.getLogger(__name__)

IDLE_POLL = 1.0  # also picks up messages re-queued by `alertmail outbox retry`


class Claimed(Enum):
    """What a claim left the worker with."""

    FULL = "every slot is taken"
    MORE = "messages were started and slots are left"
    IDLE = "nothing was due"


def backoff_delay(attempts: int, initial: float, maximum: float, rand: float) -> float:
    """Exponential backoff with +-20% jitter, never over ``maximum``; ``attempts`` counts
    failures so far (any number: the exponent is bounded before it can overflow)."""
    base = min(maximum, initial * 2.0 ** min(max(0, attempts - 1), 60))
    return max(0.0, min(maximum, base * (0.8 + 0.4 * rand)))


def _records(attempts: Sequence[Attempt]) -> list[AttemptRecord]:
    return [AttemptRecord(a.server, a.ok, a.stage, a.code, a.message, a.elapsed) for a in attempts]


class OutboxWorker:
    channel = ""
    RECORD_WAITS = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0)  # riding out a busy database, in seconds

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
        # Outcomes the store would not take (see _record): stored again from the loop, so
        # the message (and its thread, whose next message waits for it) is not left
        # 'sending' until a restart.
        self._unrecorded: dict[int, Outcome] = {}

    # -- what a channel defines -----------------------------------------------------------
    def concurrency(self) -> int:
        """How many deliveries may run at once; 0 when the channel is not configured."""
        raise NotImplementedError

    def retry_policy(self) -> RetryPolicy:
        raise NotImplementedError

    async def deliver(self, row: OutboxRow) -> None:
        """Send one message and record its outcome (with _record / _retry_or_die)."""
        raise NotImplementedError

    # -- the loop -------------------------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                if self._unrecorded:
                    await self._record_late()
                started = await self._claim_and_start()
                if started is Claimed.MORE:
                    continue  # there may be more due right now
                if started is Claimed.FULL:
                    # Nothing can start before a delivery ends, and its end wakes us: no
                    # need to ask the store when the next message is due (in a storm,
                    # that would be one more store job per message sent).
                    await self._wait(IDLE_POLL)
                else:
                    await self._sleep()
            except StoreError as exc:
                # The database is busy or failing: the queue is still there; try again soon.
                log.error("%s outbox not readable, retrying: %s", self.channel, exc)
                await asyncio.sleep(IDLE_POLL)

    async def _claim_and_start(self) -> Claimed:
        """Start deliveries for due messages."""
        limit = self.concurrency()
        free = limit - len(self._inflight)
        if free <= 0:
            return Claimed.FULL if limit > 0 else Claimed.IDLE
        rows = await self.store.run(self.store.store.claim_due, self.channel, self.clock(), free)
        if self._stopping and rows:
            # Claimed while stop() began: not started, so nothing is cut off; next start
            # sends them.
            await self.store.run(self.store.store.release, [r.id for r in rows])
            return Claimed.IDLE
        for row in rows:
            task = asyncio.create_task(self._guarded(row), name=f"{self.channel}-{row.id}")
            self._inflight.add(task)
            task.add_done_callback(self._done)
        if not rows:
            return Claimed.IDLE
        return Claimed.MORE if len(self._inflight) < limit else Claimed.FULL

    async def _guarded(self, row: OutboxRow) -> None:
        try:
            await self.deliver(row)
        except asyncio.CancelledError:
            raise  # left as 'sending'; the next start sends it again (at-least-once)
        except Exception as exc:
            log.exception("unexpected error delivering %s message %d", self.channel, row.id)
            await self._retry_or_die(row, f"internal error: {exc!r}", [])

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._wake.set()  # a free slot: claim the next message at once

    async def _sleep(self) -> None:
        timeout = IDLE_POLL
        due = await self.store.run(self.store.store.next_due_at, self.channel)
        if due is not None:
            timeout = min(IDLE_POLL, max(0.0, due - self.clock()))
        await self._wait(timeout)

    async def _wait(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=max(timeout, 0.005))

    # -- recording ------------------------------------------------------------------------
    async def _record(
        self, outbox_id: int, state: str, attempts: list[AttemptRecord], **fields: Any
    ) -> str | None:
        """Write an outcome, riding out a busy database: losing it would resend the message.

        Returns the state stored, or None when it could not be stored (yet)."""
        outcome = Outcome(outbox_id, self.clock(), state, attempts, fields)
        for wait in self.RECORD_WAITS:
            try:
                return await self.store.finish(outcome)
            except StoreError as exc:
                log.warning(
                    "recording message %d as %s failed (%s); retrying", outbox_id, state, exc
                )
                await asyncio.sleep(wait)
        log.error(
            "message %d stays 'sending' until its outcome can be stored (retried every %gs)",
            outbox_id,
            IDLE_POLL,
        )
        self._unrecorded[outbox_id] = outcome
        return None

    async def _record_late(self) -> None:
        """Store the outcomes _record had to give up on, each on its own: one the store
        keeps refusing must not hold up the others, nor the claiming of new messages."""
        for outbox_id, outcome in list(self._unrecorded.items()):
            try:
                stored = await self.store.finish(outcome)
            except StoreError as exc:
                log.warning("message %d: its outcome still cannot be stored: %s", outbox_id, exc)
                continue
            del self._unrecorded[outbox_id]
            log.info("message %d: its outcome is stored now (%s)", outbox_id, stored)

    async def _dead(
        self, row: OutboxRow, error: str, attempts: list[AttemptRecord], **fields: Any
    ) -> None:
        log.error("%s message %d is dead: %s", self.channel, row.id, error)
        await self._record(row.id, "dead", attempts, error=error, reason=error, **fields)
        self.metrics.deliveries.labels(self.channel, "dead").inc()

    async def _sent(self, row: OutboxRow, attempts: list[AttemptRecord], **fields: Any) -> None:
        now = self.clock()
        await self._record(row.id, "sent", attempts, **fields)
        self.metrics.deliveries.labels(self.channel, "sent").inc()
        self.metrics.latency.labels(self.channel).observe(max(0.0, now - row.received_at))

    async def _retry_or_die(
        self,
        row: OutboxRow,
        error: str,
        attempts: list[AttemptRecord],
        retry_after: float | None = None,
    ) -> None:
        policy = self.retry_policy()
        now = self.clock()
        delay = backoff_delay(row.attempts + 1, policy.initial, policy.max, self.rand())
        if retry_after is not None:
            delay = max(delay, retry_after)  # the server said when; honour it beyond our max
        if now + delay - row.created_at > policy.give_up_after:
            await self._dead(
                row, f"gave up after {policy.give_up_after:.0f}s; last error: {error}", attempts
            )
            return
        stored = await self._record(
            row.id, "retrying", attempts, error=error, next_attempt_at=now + delay
        )
        if stored == "superseded":
            # A newer state of its thread was queued while this one was being sent.
            log.info("%s message %d failed and is superseded: %s", self.channel, row.id, error)
            self.metrics.deliveries.labels(self.channel, "superseded").inc()
            return
        log.warning(
            "%s message %d not delivered (%s); retrying in %.1fs",
            self.channel,
            row.id,
            error,
            delay,
        )
        self.metrics.deliveries.labels(self.channel, "retry").inc()

    async def stop(self, timeout: float) -> None:
        """Stop claiming; give in-flight deliveries ``timeout`` seconds, then cancel them."""
        self._stopping = True
        self._wake.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # Deliveries started after stop began (by a claim already under way) are waited
        # for too; a claim still under way when this returns leaves its rows 'sending',
        # and the next start sends them (they were never started).
        while self._inflight and loop.time() < deadline:
            await asyncio.wait(set(self._inflight), timeout=max(0.0, deadline - loop.time()))
        pending = set(self._inflight)
        for task in pending:
            task.cancel()
        if self._unrecorded:  # the store is still open: a last try, else resent on start
            await self._record_late()
        if pending:
            log.warning(
                "%d %s delivery(s) cut off at shutdown; resent on start",
                len(pending),
                self.channel,
            )
            await asyncio.gather(*pending, return_exceptions=True)


class EmailWorker(OutboxWorker):
    channel = "email"

    def concurrency(self) -> int:
        smtp = self.runtime.config.smtp
        if smtp is None or self.runtime.smtp is None:
            return 0
        return smtp.pool.max_connections

    def retry_policy(self) -> RetryPolicy:
        smtp = self.runtime.config.smtp
        return smtp.retry if smtp is not None else RetryPolicy()

    async def deliver(self, row: OutboxRow) -> None:
        smtp_cfg = self.runtime.config.smtp
        chain = self.runtime.smtp
        assert smtp_cfg is not None and chain is not None
        try:
            result = await chain.send(row.payload, envelope_address(smtp_cfg.from_), row.recipients)
        except TemporaryFailure as exc:
            await self._retry_or_die(row, str(exc), _records(exc.attempts))
        except PermanentFailure as exc:
            await self._dead(
                row,
                f"permanent failure: {exc}",
                _records(exc.attempts),
                recipients_result=json.dumps(exc.rejected) if exc.rejected else None,
            )
        else:
            await self._email_sent(row, result)

    async def _email_sent(self, row: OutboxRow, result: SendResult) -> None:
        results = {addr: "250 accepted" for addr in result.accepted}
        results.update(result.rejected)
        # Recipients deferred with 4xx at RCPT while others took the message: sent to the
        # others; the same message is queued again for the deferred ones alone.
        deferred = [r for r in row.recipients if result.rejected.get(r, "").startswith("4")]
        retry = None
        if deferred:
            policy = self.retry_policy()
            delay = backoff_delay(1, policy.initial, policy.max, self.rand())
            error = "; ".join(f"{r}: {result.rejected[r]}" for r in deferred)
            retry = (
                deferred,
                self.clock() + delay,
                f"deferred at RCPT by {result.server}: {error}",
            )
        await self._sent(
            row,
            _records(result.attempts),
            server=result.server,
            reply=result.reply,
            recipients_result=json.dumps(results),
            retry_for=retry,
        )
        if retry is not None:
            self.metrics.deliveries.labels(self.channel, "retry").inc()
        if result.rejected:
            log.warning(
                "message %d: %d recipient(s) refused or deferred: %s",
                row.id,
                len(result.rejected),
                ", ".join(f"{r} ({reply})" for r, reply in sorted(result.rejected.items())),
            )
