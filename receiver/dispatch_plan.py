"""What a notification turns into before anything is rendered: pure functions over plain data.

Most notifications need no thread and no rendering (digest routes, no route, the dead
man's heartbeat). Their whole plan is known when the webhook is parsed, so it is written in
the ingest transaction itself and the dispatcher only sees notifications a route sends now.
"""

from __future__ import annotations

import orjson

from receiver.batching import bucket_start
from receiver.config import Config
from receiver.model import Notification
from receiver.routing import RouteMatch, routes_for
from receiver.store_types import AlertRecord, DispatchPlan, Thread

DEADMAN_SEEN_KEY = "deadman_last_seen"


def is_heartbeat(n: Notification, alertname: str) -> bool:
    return bool(n.alerts) and all(a.name == alertname for a in n.alerts)


def alert_records(n: Notification) -> list[AlertRecord]:
    return [
        AlertRecord(
            a.fingerprint,
            a.starts_at.isoformat() if a.starts_at else "",
            a.name,
            a.severity,
            a.status,
            orjson.dumps(a.labels, option=orjson.OPT_SORT_KEYS).decode(),
            orjson.dumps(a.annotations, option=orjson.OPT_SORT_KEYS).decode(),
            a.ends_at.isoformat() if a.ends_at else None,
        )
        for a in n.alerts
    ]


def sends_now(match: RouteMatch) -> bool:
    """Whether the route opens a thread and queues messages (the dispatcher's part)."""
    return match.route.mode == "immediate" and bool(match.route.email or match.route.slack)


def plan_routes(
    config: Config, n: Notification, notification_id: int, received_at: float, now: float
) -> tuple[DispatchPlan, list[RouteMatch]]:
    """The plan's history, heartbeat and digest parts, and the matches that send now."""
    plan = DispatchPlan(notification_id, alerts=alert_records(n))
    if config.deadman is not None and is_heartbeat(n, config.deadman.alertname):
        # The Watchdog proves the pipeline works; it is not news for anybody's inbox.
        plan.kv.append((DEADMAN_SEEN_KEY, repr(received_at)))
        plan.reason = "dead man's switch heartbeat"
        return plan, []
    matches = routes_for(config.routes, n)
    if not matches:
        plan.reason = "no route matched"
    for m in matches:
        if m.route.mode == "digest":
            plan.digest_entries.append((m.key, bucket_start(now, m.route.every, config.tz)))
    return plan, [m for m in matches if sends_now(m)]


def settle_at_ingest(config: Config, n: Notification, received_at: float) -> DispatchPlan | None:
    """The whole plan when no route sends ``n`` now; None when the dispatcher must."""
    plan, sending = plan_routes(config, n, 0, received_at, received_at)
    return None if sending else plan


def split_by_root(recipients: list[str], thread: Thread) -> list[tuple[list[str], bool]]:
    """``recipients`` as (group, reply) pairs: who may get In-Reply-To the thread's first
    message, and who may not.

    Nothing may reply to a message its reader never got. Once the first message is sent, a
    recipient it did not reach (the flood limit folded them out of it, a reload added them
    to the route, their server refused it) gets this message without
    In-Reply-To/References, under the same subject. While it is unsent, every recipient's
    message is rendered both ways and the outbox chooses when it sends (see
    ``store_outbox._settle_root``), so there is nothing to split yet.
    """
    reached = thread.root_recipients
    if not recipients:
        return []
    if thread.root_message_id is None or not thread.root_delivered or reached is None:
        return [(recipients, True)]
    replying = [r for r in recipients if r in reached]
    apart = [r for r in recipients if r not in reached]
    return [(group, reply) for group, reply in ((replying, True), (apart, False)) if group]
