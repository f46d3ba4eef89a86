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

from receiver.alert_graph import AlertGrapher
from receiver.batching import bucket_start, is_urgent, quiet_until, split_by_budget
from receiver.errors import AlertmailError, PayloadError
from receiver.fallback import fallback_email
from receiver.metrics import ReceiverMetrics
from receiver.model import Notification, parse_notification
from receiver.render import InlineImage, ThreadRef, make_message_id
from receiver.routing import RouteMatch, routes_for
from receiver.runtime import Runtime
from receiver.slack_message import slack_message
from receiver.store import AlertRecord, DispatchPlan, NewMessage, Thread
from receiver.store_async import AsyncStore

log = logging.getLogger(__name__)

THREAD_MAX_AGE = 24 * 3600.0
DEADMAN_SEEN_KEY = "deadman_last_seen"


def is_heartbeat(n: Notification, alertname: str) -> bool:
    return bool(n.alerts) and all(a.name == alertname for a in n.alerts)


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
        grapher: AlertGrapher | None = None,
    ) -> None:
        self.metrics = metrics
        self.grapher = grapher
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
            plan = DispatchPlan(nid, reason=f"unreadable: {exc}")
            await self.store.run(store.commit_dispatch, plan, now)
            return
        plan = DispatchPlan(nid, alerts=alert_records(n))
        config = self.runtime.config
        if config.deadman is not None and is_heartbeat(n, config.deadman.alertname):
            # The Watchdog proves the pipeline works; it is not news for anybody's inbox.
            await self.store.run(store.kv_set, DEADMAN_SEEN_KEY, repr(received_at))
            if self.metrics is not None:
                self.metrics.deadman_seen.set(received_at)
            plan.reason = "dead man's switch heartbeat"
            await self.store.run(store.commit_dispatch, plan, now)
            return
        matches = routes_for(config.routes, n)
        if not matches:
            plan.reason = "no route matched"
        for match in matches:
            await self._plan_route(plan, n, match, received_at, now)
        queued = await self.store.run(store.commit_dispatch, plan, now)
        if queued.superseded and self.metrics is not None:
            self.metrics.deliveries.labels("email", "superseded").inc(queued.superseded)
        if plan.folds and self.metrics is not None:
            self.metrics.deliveries.labels("email", "folded").inc(len(plan.folds))

    async def _plan_route(
        self,
        plan: DispatchPlan,
        n: Notification,
        match: RouteMatch,
        received_at: float,
        now: float,
    ) -> None:
        config = self.runtime.config
        route = match.route
        store = self.store.store
        if route.mode == "digest":
            plan.digest_entries.append((match.key, bucket_start(now, route.every, config.tz)))
            return
        if not route.email and not route.slack:
            return
        hold = None if is_urgent(n) else quiet_until(now, route.quiet_hours, config.tz)
        thread = await self.store.run(
            store.open_thread, match.key, n.group_key, now, THREAD_MAX_AGE
        )
        if not n.firing:
            plan.close_threads.append(thread.id)
        if route.email and config.smtp is not None:
            send_to = list(route.email)
            if config.flood is not None:
                used = await self.store.run(store.flood_counts, send_to, now - config.flood.window)
                send_to, fold = split_by_budget(
                    send_to, used, config.flood.max_emails, resolved_only=not n.firing
                )
                plan.folds.extend((r, match.key, n.priority) for r in fold)
                if n.firing:
                    plan.budget.extend(send_to)
            if send_to:
                await self._plan_email(plan, n, thread, send_to, received_at, now, hold)
        for target in route.slack:
            payload = self.slack_payload(n, target, now)
            plan.messages.append(
                NewMessage(
                    channel="slack",
                    target=target,
                    kind="alert",
                    priority=n.priority,
                    payload=payload,
                    received_at=received_at,
                    supersede_key=f"{thread.id}:slack:{target}",
                    thread_id=thread.id,
                    notification_id=plan.notification_id,
                    subject=n.group_key,
                    not_before=hold,
                )
            )

    async def _plan_email(
        self,
        plan: DispatchPlan,
        n: Notification,
        thread: Thread,
        send_to: list[str],
        received_at: float,
        now: float,
        hold: float | None,
    ) -> None:
        images = await self._graphs(n, now)
        # Rendering (Jinja + CSS inlining) is CPU work: off the loop that answers webhooks.
        msg = await asyncio.to_thread(
            self._render, n, send_to, thread.subject, thread.root_message_id, now, images
        )
        target = json.dumps(send_to)
        plan.messages.append(
            NewMessage(
                channel="email",
                target=target,
                kind="alert",
                priority=n.priority,
                payload=msg.as_bytes(policy=SMTP),
                received_at=received_at,
                supersede_key=f"{thread.id}:email:{target}",
                thread_id=thread.id,
                notification_id=plan.notification_id,
                message_id=str(msg["Message-ID"]),
                subject=str(msg["Subject"]),
                not_before=hold,
            )
        )
        if thread.root_message_id is None:
            plan.thread_roots.append((thread.id, str(msg["Subject"]), str(msg["Message-ID"])))

    async def _graphs(self, n: Notification, now: float) -> dict[str, InlineImage]:
        """fingerprint -> graph; best-effort, bounded by prometheus.query_timeout."""
        if self.grapher is None or not n.firing:
            return {}
        graphs = await self.grapher.graphs_for(n.firing, datetime.fromtimestamp(now, tz=UTC))
        if self.metrics is not None and graphs:
            self.metrics.graphs.labels("drawn").inc(len({g.cid for g in graphs.values()}))
        return graphs

    def slack_payload(self, n: Notification, target: str, now: float) -> bytes:
        slack_target = self.runtime.config.slack.webhooks[target]
        message = slack_message(
            n,
            renderer=self.runtime.renderer,
            now=datetime.fromtimestamp(now, tz=UTC),
            channel=slack_target.channel,
        )
        return json.dumps(message).encode()

    def _render(
        self,
        n: Notification,
        recipients: list[str],
        subject: str | None,
        root: str | None,
        now: float,
        graphs: dict[str, InlineImage],
    ) -> EmailMessage:
        smtp = self.runtime.config.smtp
        assert smtp is not None
        message_id = make_message_id(smtp.from_)
        when = datetime.fromtimestamp(now, tz=UTC)
        try:
            return self.runtime.renderer.alert_email(
                n,
                sender=smtp.from_,
                recipients=recipients,
                message_id=message_id,
                thread=ThreadRef(root_message_id=root, subject=subject),
                now=when,
                images=list({g.cid: g for g in graphs.values()}.values()),
                graph_cids={fp: g.cid for fp, g in graphs.items()},
            )
        except Exception:
            # A broken user template must not swallow the page: send a plain one instead.
            log.exception("rendering %s failed; sending the built-in plain email", n.group_key)
            return fallback_email(
                n,
                sender=smtp.from_,
                recipients=recipients,
                message_id=message_id,
                subject=subject or self.runtime.renderer.thread_subject(n),
                root=root,
                now=when,
            )
