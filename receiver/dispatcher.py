"""Stored notifications -> routed, rendered messages in the outbox.

Runs beside the webhook handler so ingest stays "parse, store, answer". Pending
notifications are taken in batches: their threads are opened in one transaction, their
emails rendered concurrently off the event loop, and the whole batch committed in one
transaction that also marks them processed, so a crash at any point either redoes a
batch or finds it done.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from receiver.alert_graph import AlertGrapher
from receiver.batching import is_urgent, quiet_until, split_by_budget
from receiver.dispatch_plan import DEADMAN_SEEN_KEY, plan_routes, split_by_root
from receiver.errors import AlertmailError, PayloadError
from receiver.metrics import ReceiverMetrics
from receiver.model import Notification, parse_notification
from receiver.render import InlineImage, make_message_id
from receiver.render_pool import AlertJob
from receiver.routing import RouteMatch
from receiver.runtime import Runtime
from receiver.slack_message import slack_message
from receiver.store import DispatchPlan, NewMessage, Thread
from receiver.store_async import AsyncStore
from receiver.store_supersede import email_key

log = logging.getLogger(__name__)

THREAD_MAX_AGE = 24 * 3600.0
BATCH = 100
PARSED_CACHE = 10_000
CHUNK = 20
DRAIN_INTERVAL = 0.005  # seconds from one drain's start to the next, at the shortest


@dataclass
class _Item:
    """One pending notification on its way through a batch."""

    nid: int
    received_at: float
    n: Notification | None
    plan: DispatchPlan
    matches: list[RouteMatch] = field(default_factory=list)


@dataclass
class _EmailJob:
    plan: DispatchPlan
    n: Notification
    thread: Thread
    recipients: list[str]
    received_at: float
    hold: float | None
    reply: bool = True  # In-Reply-To the thread's first message (see split_by_root)


def _chunks(items: list[_Item]) -> list[list[_Item]]:
    """Split where a group repeats: a thread opened (or closed) by one notification must be
    seen by the next one of its group, so those go in a later transaction. Chunks are also
    kept small so the first emails of a storm are queued (and sent) while later ones render.
    """
    chunks: list[list[_Item]] = [[]]
    seen: set[tuple[str, str]] = set()
    for it in items:
        key = (it.n.receiver, it.n.group_key) if it.n is not None else ("", str(it.nid))
        if key in seen or len(chunks[-1]) >= CHUNK:
            chunks.append([])
            seen.clear()
        seen.add(key)
        chunks[-1].append(it)
    return [c for c in chunks if c]


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
        self.store = store
        self.runtime = runtime
        self.clock = clock
        self.metrics = metrics
        self.grapher = grapher
        self._on_queued = on_queued
        self._wake = asyncio.Event()
        # Notifications the webhook handler has just parsed, so they are not parsed twice on
        # the event loop; after a restart the stored payload is parsed instead.
        self._parsed: dict[int, Notification] = {}

    def wake(self) -> None:
        self._wake.set()

    def accepted(self, notification_id: int, n: Notification) -> None:
        """The webhook handler stored ``n``: remember it (bounded) and start dispatching."""
        if len(self._parsed) < PARSED_CACHE:
            self._parsed[notification_id] = n
        self._wake.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            started = loop.time()
            try:
                await self.drain()
            except AlertmailError as exc:
                log.error("dispatching notifications failed, will retry: %s", exc)
                await asyncio.sleep(1.0)
            except Exception:
                # A bug must not stop dispatch for good: the notifications stay pending.
                log.exception("dispatching notifications failed unexpectedly, will retry")
                await asyncio.sleep(5.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=5.0)
            # Under a steady stream of webhooks, let a few gather so one query and one
            # transaction serve several; a notification after a quiet spell goes at once.
            rest = DRAIN_INTERVAL - (loop.time() - started)
            if rest > 0:
                await asyncio.sleep(rest)

    async def drain(self) -> int:
        """Process the notifications pending now (later ones wake `run`); returns how many."""
        total = 0
        while True:
            rows = await self.store.run(
                self.store.store.pending_notifications, BATCH, frozenset(self._parsed)
            )
            if not rows:
                return total
            items = [self._parse(*row) for row in rows]
            for chunk in _chunks(items):
                await self._process(chunk)
            total += len(rows)
            # Rows come in id order, so every pending notification up to the last one was in
            # this batch: a cached parse of one of them is stale (its accepted() came after
            # the query), and left in place it would fill the cache for good.
            last = rows[-1][0]
            for nid in [k for k in self._parsed if k <= last]:
                del self._parsed[nid]
            if len(rows) < BATCH:
                # All that was pending is done; anything stored since then has woken us
                # (accepted() comes after its commit), so no need to ask the store again.
                return total

    def _parse(self, nid: int, received_at: float, receiver: str, payload: str | None) -> _Item:
        cached = self._parsed.pop(nid, None)
        if cached is not None:
            return _Item(nid, received_at, cached, DispatchPlan(nid))
        try:
            # Only ids held in the cache come without their payload (and only drain() takes
            # them out); were that broken, failing the drain keeps the rows pending.
            assert payload is not None
            n = parse_notification(json.loads(payload), receiver_override=receiver or None)
        except (ValueError, PayloadError) as exc:
            # Accepted bodies always parse; this only guards a damaged row.
            return _Item(nid, received_at, None, DispatchPlan(nid, reason=f"unreadable: {exc}"))
        return _Item(nid, received_at, n, DispatchPlan(nid))

    async def _process(self, items: list[_Item]) -> None:
        store = self.store.store
        now = self.clock()
        config = self.runtime.config
        thread_keys: set[tuple[str, str]] = set()
        recipients: set[str] = set()
        for it in items:
            if it.n is None:
                continue
            it.plan, it.matches = plan_routes(config, it.n, it.nid, it.received_at, now)
            if self.metrics is not None and any(k == DEADMAN_SEEN_KEY for k, _ in it.plan.kv):
                self.metrics.deadman_seen.set(it.received_at)
            for m in it.matches:
                thread_keys.add((m.key, it.n.group_key))
                recipients.update(m.route.email)
        threads: dict[tuple[str, str], Thread] = {}
        if thread_keys:
            threads = await self.store.run(
                store.open_threads, sorted(thread_keys), now, THREAD_MAX_AGE
            )
        used: dict[str, int] = {}
        if config.flood is not None and recipients:
            used = await self.store.run(
                store.flood_counts, sorted(recipients), now - config.flood.window
            )
        jobs: list[_EmailJob] = []
        for it in items:
            for m in it.matches:
                assert it.n is not None
                jobs.extend(self._plan_route(it, m, threads, used, now))
        await self._render_all(jobs, now)
        plans = [it.plan for it in items]
        queued = await self.store.run(store.commit_dispatch_many, plans, now)
        if self.metrics is not None:
            if queued.superseded:
                self.metrics.deliveries.labels("email", "superseded").inc(queued.superseded)
            folds = sum(len(p.folds) for p in plans)
            if folds:
                self.metrics.deliveries.labels("email", "folded").inc(folds)
        if queued.ids:
            self._on_queued()

    def _plan_route(
        self,
        it: _Item,
        match: RouteMatch,
        threads: dict[tuple[str, str], Thread],
        used: dict[str, int],
        now: float,
    ) -> list[_EmailJob]:
        n = it.n
        assert n is not None
        config = self.runtime.config
        route = match.route
        plan = it.plan
        thread = threads.get((match.key, n.group_key))
        if thread is None:
            return []
        if not n.firing:
            plan.close_threads.append(thread.id)
        hold = None if is_urgent(n) else quiet_until(now, route.quiet_hours, config.tz)
        jobs = []
        if route.email and config.smtp is not None:
            send_to = list(route.email)
            if config.flood is not None:
                send_to, fold = split_by_budget(
                    send_to, used, config.flood.max_emails, resolved_only=not n.firing
                )
                plan.folds.extend((r, match.key, n.priority) for r in fold)
                if n.firing:
                    plan.budget.extend(send_to)
                    for r in send_to:
                        used[r] = used.get(r, 0) + 1
            for group, reply in split_by_root(send_to, thread):
                jobs.append(_EmailJob(plan, n, thread, group, it.received_at, hold, reply))
        for target in route.slack:
            plan.messages.append(
                NewMessage(
                    channel="slack",
                    target=target,
                    kind="alert",
                    priority=n.priority,
                    payload=self.slack_payload(n, target, now),
                    received_at=it.received_at,
                    supersede_key=f"{thread.id}:slack:{target}",
                    thread_id=thread.id,
                    notification_id=plan.notification_id,
                    subject=n.group_key,
                    not_before=hold,
                )
            )
        return jobs

    async def _render_all(self, jobs: Sequence[_EmailJob], now: float) -> None:
        if not jobs:
            return
        # One notification's jobs (recipients split by split_by_root) share its graphs.
        unique = {id(job.n): job.n for job in jobs}
        drawn = await asyncio.gather(*(self._graphs(n, now) for n in unique.values()))
        by_id = dict(zip(unique, drawn, strict=True))
        graphs = [by_id[id(job.n)] for job in jobs]
        smtp = self.runtime.config.smtp
        pool = self.runtime.render_pool
        assert smtp is not None and pool is not None
        when = datetime.fromtimestamp(now, tz=UTC)
        renders: list[AlertJob] = []
        swaps: list[bool] = []
        for job, g in zip(jobs, graphs, strict=True):
            thread = job.thread
            root = thread.root_message_id if job.reply else None
            alert_job = AlertJob(
                n=job.n,
                sender=smtp.from_,
                recipients=tuple(job.recipients),
                thread_root=root,
                thread_subject=thread.subject,
                now=when,
                graphs=g,
            )
            # Nothing may reply to a Message-ID nobody received: while the thread's first
            # message is undelivered (an outage), this one is also rendered as the first
            # message, and the outbox picks one when it sends (the root may go out first).
            swap = root is not None and not thread.root_delivered
            if swap:
                alert_job = replace(alert_job, message_id=make_message_id(smtp.from_))
                renders.append(replace(alert_job, thread_root=None))
            renders.append(alert_job)
            swaps.append(swap)
        # Rendering (Jinja, CSS inlining, MIME) is CPU work: in worker processes, away from
        # the event loop that answers webhooks.
        results = iter(await asyncio.gather(*(pool.render(r) for r in renders)))
        for job, swap in zip(jobs, swaps, strict=True):
            as_root = next(results) if swap else None
            payload, message_id, subject = next(results)
            target = json.dumps(job.recipients)
            job.plan.messages.append(
                NewMessage(
                    channel="email",
                    target=target,
                    kind="alert",
                    priority=job.n.priority,
                    payload=as_root[0] if as_root else payload,
                    received_at=job.received_at,
                    supersede_key=email_key(job.thread.id, job.recipients),
                    thread_id=job.thread.id,
                    notification_id=job.plan.notification_id,
                    message_id=message_id,
                    subject=subject,
                    not_before=job.hold,
                    replaces_root=job.thread.root_message_id if as_root else None,
                    reply_payload=payload if as_root else None,
                )
            )
            if job.thread.root_message_id is None:
                job.plan.thread_roots.append((job.thread.id, subject, message_id))

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
