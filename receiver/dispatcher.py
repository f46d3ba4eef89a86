"""Stored notifications -> routed, rendered messages in the outbox.

Runs beside the webhook handler so ingest stays "parse, store, answer". A notification
is marked processed in the same transaction that queues its messages, so a crash at any
point either redoes the whole step or finds it done.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP

from receiver.errors import AlertmailError, PayloadError
from receiver.fallback import fallback_email
from receiver.metrics import ReceiverMetrics
from receiver.model import Notification, parse_notification
from receiver.render import ThreadRef, make_message_id
from receiver.routing import RouteMatch, routes_for
from receiver.runtime import Runtime
from receiver.store import AlertRecord, NewMessage
from receiver.store_async import AsyncStore

log = logging.getLogger(__name__)

THREAD_MAX_AGE = 24 * 3600.0


def alert_records(n: Notification) -> list[AlertRecord]:
    return [
        AlertRecord(
            fingerprint=a.fingerprint,
            starts_at=a.starts_at.isoformat() if a.starts_at else "",
            alertname=a.name,
            severity=a.severity,
            status=a.status,
            labels=json.dumps(a.labels, sort_keys=True),
            annotations=json.dumps(a.annotations, sort_keys=True),
            ends_at=a.ends_at.isoformat() if a.ends_at else None,
        )
        for a in n.alerts
    ]


class Dispatcher:
    def __init__(
        self,
        store: AsyncStore,
        runtime: Runtime,
        *,
        clock: Callable[[], float] = time.time,
        on_queued: Callable[[], None] = lambda: None,
        metrics: ReceiverMetrics | None = None,
    ) -> None:
        self.metrics = metrics
        self.store = store
        self.runtime = runtime
        self.clock = clock
        self._on_queued = on_queued
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            try:
                done = await self.drain()
            except AlertmailError as exc:
                log.error("dispatching notifications failed, will retry: %s", exc)
                done = 0
                await asyncio.sleep(1.0)
            if done:
                self._on_queued()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=5.0)

    async def drain(self) -> int:
        """Process every pending notification; returns how many."""
        total = 0
        while True:
            batch = await self.store.run(self.store.store.pending_notifications, 100)
            if not batch:
                return total
            for nid, received_at, receiver, payload in batch:
                await self.process(nid, received_at, receiver, payload)
                total += 1

    async def process(self, nid: int, received_at: float, receiver: str, payload: str) -> None:
        store = self.store.store
        now = self.clock()
        try:
            n = parse_notification(json.loads(payload), receiver_override=receiver or None)
        except (ValueError, PayloadError) as exc:
            # Accepted bodies always parse; this only guards a damaged row.
            await self.store.run(
                store.commit_dispatch, nid, now, [], [], reason=f"unreadable: {exc}"
            )
            return
        config = self.runtime.config
        matches = routes_for(config.routes, n)
        messages: list[NewMessage] = []
        roots: list[tuple[int, str, str]] = []
        closing: list[int] = []
        for match in matches:
            if not match.route.email or config.smtp is None:
                continue
            thread = await self.store.run(
                store.open_thread, match.key, n.group_key, now, THREAD_MAX_AGE
            )
            msg = await asyncio.to_thread(
                self._render, n, match, thread.subject, thread.root_message_id, now
            )
            target = json.dumps(match.route.email)
            messages.append(
                NewMessage(
                    channel="email",
                    target=target,
                    kind="alert",
                    priority=n.priority,
                    payload=msg.as_bytes(policy=SMTP),
                    received_at=received_at,
                    supersede_key=f"{thread.id}:email:{target}",
                    thread_id=thread.id,
                    notification_id=nid,
                    message_id=str(msg["Message-ID"]),
                    subject=str(msg["Subject"]),
                )
            )
            if thread.root_message_id is None:
                roots.append((thread.id, str(msg["Subject"]), str(msg["Message-ID"])))
            if not n.firing:
                closing.append(thread.id)
        reason = None if matches else "no route matched"
        queued = await self.store.run(
            store.commit_dispatch, nid, now, messages, alert_records(n), roots, closing, reason
        )
        if queued.superseded and self.metrics is not None:
            self.metrics.deliveries.labels("email", "superseded").inc(queued.superseded)

    def _render(
        self,
        n: Notification,
        match: RouteMatch,
        subject: str | None,
        root: str | None,
        now: float,
    ) -> EmailMessage:
        smtp = self.runtime.config.smtp
        assert smtp is not None
        message_id = make_message_id(smtp.from_)
        when = datetime.fromtimestamp(now, tz=UTC)
        try:
            return self.runtime.renderer.alert_email(
                n,
                sender=smtp.from_,
                recipients=match.route.email,
                message_id=message_id,
                thread=ThreadRef(root_message_id=root, subject=subject),
                now=when,
            )
        except Exception:
            # A broken user template must not swallow the page: send a plain one instead.
            log.exception("rendering %s failed; sending the built-in plain email", n.group_key)
            return fallback_email(
                n,
                sender=smtp.from_,
                recipients=match.route.email,
                message_id=message_id,
                subject=subject or self.runtime.renderer.thread_subject(n),
                root=root,
                now=when,
            )
