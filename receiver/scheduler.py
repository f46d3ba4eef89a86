"""Timed work: digest windows, flood catch-ups and the dead man's switch.

``tick()`` does everything that is due at ``clock()``; ``run()`` calls it every second.
Each flush is one store transaction keyed so that a restart neither loses nor repeats it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP

from receiver.batching import Digest, bucket_start, build_digest, quiet_until
from receiver.config import Route
from receiver.dispatch_plan import DEADMAN_SEEN_KEY
from receiver.errors import AlertmailError, PayloadError
from receiver.metrics import ReceiverMetrics
from receiver.model import Notification, parse_notification, severity_rank
from receiver.render import make_message_id
from receiver.render_digest import digest_email
from receiver.routing import RouteMatch
from receiver.runtime import Runtime
from receiver.slack_message import digest_slack_message
from receiver.store import NewMessage
from receiver.store_async import AsyncStore
from receiver.store_batches import StoredNotification

log = logging.getLogger(__name__)

TICK = 1.0
DEADMAN_STATE_KEY = "deadman_state"


def _parse_stored(rows: Sequence[StoredNotification]) -> list[tuple[float, Notification]]:
    out = []
    for _, received_at, receiver, payload in rows:
        try:
            out.append((received_at, parse_notification(json.loads(payload), receiver or None)))
        except (ValueError, PayloadError) as exc:
            log.warning("skipping an unreadable stored notification: %s", exc)
    return out


def _digest_priority(d: Digest) -> int:
    ranks = [severity_rank(g.severity) for g in d.groups_firing]
    return min(ranks) if ranks else 13


class Scheduler:
    def __init__(
        self,
        store: AsyncStore,
        runtime: Runtime,
        metrics: ReceiverMetrics,
        *,
        clock: Callable[[], float] = time.time,
        on_queued: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.runtime = runtime
        self.metrics = metrics
        self.clock = clock
        self._on_queued = on_queued
        self._started = clock()

    async def run(self) -> None:
        while True:
            try:
                if await self.tick():
                    self._on_queued()
            except AlertmailError as exc:
                log.error("scheduled work failed, will retry: %s", exc)
            except Exception:
                log.exception("scheduled work failed unexpectedly, will retry")
            await asyncio.sleep(TICK)

    async def tick(self) -> int:
        queued = await self.flush_digests()
        queued += await self.flush_catchups()
        queued += await self.check_deadman()
        return queued

    # -- digests ------------------------------------------------------------------------
    async def flush_digests(self) -> int:
        config = self.runtime.config
        now = self.clock()
        queued = 0
        for i, route in enumerate(config.routes):
            if route.mode != "digest":
                continue
            key = RouteMatch(i, route).key
            if quiet_until(now, route.quiet_hours, config.tz) is not None:
                continue  # held until the quiet hours end
            current = bucket_start(now, route.every, config.tz)
            buckets = await self.store.run(self.store.store.due_digest_buckets, key, current)
            for bucket in buckets:
                queued += await self._flush_digest(key, route, bucket, now)
        return queued

    async def _flush_digest(self, key: str, route: Route, bucket: float, now: float) -> int:
        store = self.store.store
        rows = await self.store.run(store.digest_notifications, key, bucket)
        items = _parse_stored(rows)
        digest = build_digest(items, bucket, bucket + route.every)
        messages = await asyncio.to_thread(
            self._digest_messages, digest, route, key, [n for _, n in items], now, "digest"
        )
        done = await self.store.run(store.commit_digest, key, bucket, len(rows), messages, now)
        if done:
            log.info("digest for %s (%d notifications) queued", key, len(rows))
        return len(messages) if done else 0

    def _digest_messages(
        self,
        digest: Digest,
        route: Route,
        key: str,
        groups: list[Notification],
        now: float,
        kind: str,
    ) -> list[NewMessage]:
        config = self.runtime.config
        when = datetime.fromtimestamp(now, UTC)
        priority = _digest_priority(digest)
        out: list[NewMessage] = []
        if route.email and config.smtp is not None:
            msg = digest_email(
                digest,
                renderer=self.runtime.renderer,
                sender=config.smtp.from_,
                recipients=route.email,
                message_id=make_message_id(config.smtp.from_),
                now=when,
                kind=kind,
                route=key,
            )
            out.append(self._email(msg, route.email, kind, priority, digest.start))
        for target in route.slack:
            payload = digest_slack_message(
                groups,
                renderer=self.runtime.renderer,
                now=when,
                title=f"Digest for {key}",
                channel=config.slack.webhooks[target].channel,
            )
            out.append(
                NewMessage(
                    channel="slack",
                    target=target,
                    kind=kind,
                    priority=priority,
                    payload=json.dumps(payload).encode(),
                    received_at=digest.start,
                    subject=f"digest {key}",
                )
            )
        return out

    @staticmethod
    def _email(
        msg: EmailMessage, to: Sequence[str], kind: str, priority: int, received_at: float
    ) -> NewMessage:
        return NewMessage(
            channel="email",
            target=json.dumps(list(to)),
            kind=kind,
            priority=priority,
            payload=msg.as_bytes(policy=SMTP),
            received_at=received_at,
            message_id=str(msg["Message-ID"]),
            subject=str(msg["Subject"]),
        )

    # -- flood catch-ups -----------------------------------------------------------------
    async def flush_catchups(self) -> int:
        config = self.runtime.config
        if config.flood is None or config.smtp is None:
            return 0
        store = self.store.store
        now = self.clock()
        queued = 0
        for recipient in await self.store.run(store.fold_recipients):
            last = await self.store.run(store.last_catchup_at, recipient)
            if last is not None and now - last < config.flood.catchup_every:
                continue
            folds = await self.store.run(store.folded_for, recipient)
            if not folds:
                continue
            items = _parse_stored([stored for _, _, stored in folds])
            start = min(received for received, _ in items) if items else now
            digest = build_digest(items, start, now)
            msg = await asyncio.to_thread(
                digest_email,
                digest,
                renderer=self.runtime.renderer,
                sender=config.smtp.from_,
                recipients=[recipient],
                message_id=make_message_id(config.smtp.from_),
                now=datetime.fromtimestamp(now, UTC),
                kind="catch-up",
                route=recipient,
            )
            priority = min(p for _, p, _ in folds)
            message = self._email(msg, [recipient], "catchup", priority, start)
            await self.store.run(store.commit_catchup, [f for f, _, _ in folds], message, now)
            log.info("catch-up for %s with %d folded notifications queued", recipient, len(folds))
            queued += 1
        return queued

    # -- dead man's switch ---------------------------------------------------------------
    async def check_deadman(self) -> int:
        config = self.runtime.config
        dm = config.deadman
        if dm is None or config.smtp is None:
            return 0
        store = self.store.store
        now = self.clock()
        seen_raw = await self.store.run(store.kv_get, DEADMAN_SEEN_KEY)
        state = await self.store.run(store.kv_get, DEADMAN_STATE_KEY) or "ok"
        # Never heard from it: count from our own start, so a fresh receiver does not page.
        last = float(seen_raw) if seen_raw else self._started
        silent = now - last > dm.after
        if silent == (state == "alerted"):
            return 0
        ctx = {
            "state": "silent" if silent else "back",
            "alertname": dm.alertname,
            "after": dm.after,
            "last_seen": datetime.fromtimestamp(last, UTC),
            "now": datetime.fromtimestamp(now, UTC),
        }
        msg = await asyncio.to_thread(self._deadman_email, ctx, dm.email, now)
        message = self._email(msg, dm.email, "deadman", 0, now)
        # One transaction: a crash between the two would send the email again on restart.
        new_state = "alerted" if silent else "ok"
        await self.store.run(store.enqueue, [message], now, [(DEADMAN_STATE_KEY, new_state)])
        log.warning(
            "dead man's switch: %s %s",
            dm.alertname,
            "silent, recipients notified" if silent else "is back",
        )
        return 1

    def _deadman_email(self, ctx: Mapping[str, object], to: list[str], now: float) -> EmailMessage:
        config = self.runtime.config
        assert config.smtp is not None
        r = self.runtime.renderer
        return r.message(
            sender=config.smtp.from_,
            to=to,
            subject=r.render_string("deadman.subject.j2", **ctx),
            message_id=make_message_id(config.smtp.from_),
            now=datetime.fromtimestamp(now, UTC),
            html=r.render_html("deadman.html.j2", **ctx),
            text=r.render_string("deadman.txt.j2", **ctx),
        )
