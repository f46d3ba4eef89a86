"""Store views -> JSON-ready dicts. The pages render these and the JSON API returns them.

The same dict feeds a table row on the server and in the browser's auto-refresh, so the
fields carry display-ready text (local times, ages) next to machine values (ISO, epoch).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from receiver.batching import quiet_until
from receiver.config import Config
from receiver.model import parse_timestamp
from receiver.routing import RouteMatch
from receiver.store_views import (
    DeliveryDetail,
    DeliverySummary,
    FiringAlert,
    QueuedDigest,
    ServerHealth,
    StateCount,
)
from receiver.units import format_duration
from receiver.web.common import fmt_age, fmt_time, iso

NextRun = Callable[[str], float | None]
REPORT_NEXT_RUN: web.AppKey[NextRun] = web.AppKey("ui_report_next_run")
"""Hook for the scheduler: ``app[REPORT_NEXT_RUN] = scheduler.next_run`` (report name ->
epoch seconds of its next run, or None). Without it the page shows the schedule only."""

STATES = ("queued", "sending", "retrying", "sent", "superseded", "dead")
_LABELS_SHOWN = ("service", "instance", "job", "namespace", "pod", "host", "cluster")


def recipients(channel: str, target: str) -> list[str]:
    if channel != "email":
        return [target]
    try:
        value = json.loads(target)
    except ValueError:
        return [target]
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def alert_item(a: FiringAlert, now: float, tz: ZoneInfo) -> dict[str, Any]:
    started = parse_timestamp(a.starts_at, "startsAt") if a.starts_at else None
    start_ts = started.timestamp() if started is not None else a.first_seen
    where = ", ".join(f"{k}={a.labels[k]}" for k in _LABELS_SHOWN if a.labels.get(k))
    return {
        "fingerprint": a.fingerprint,
        "alertname": a.alertname,
        "severity": a.severity or "none",
        "summary": a.annotations.get("summary") or a.annotations.get("description", ""),
        "where": where,
        "labels": a.labels,
        "annotations": a.annotations,
        "starts_at": iso(start_ts),
        "started": fmt_time(start_ts, tz),
        "age": fmt_age(start_ts, now),
        "last_seen": iso(a.last_seen),
    }


def delivery_item(d: DeliverySummary, now: float, tz: ZoneInfo) -> dict[str, Any]:
    pending = d.state in ("queued", "retrying")
    rcpts = recipients(d.channel, d.target)
    return {
        "id": d.id,
        "url": f"/deliveries/{d.id}",
        "channel": d.channel,
        "kind": d.kind,
        "priority": d.priority,
        "state": d.state,
        "recipients": rcpts,
        "to": ", ".join(rcpts),
        "subject": d.subject or "",
        "created_at": iso(d.created_at),
        "created": fmt_time(d.created_at, tz),
        "age": fmt_age(d.created_at, now),
        "received_at": iso(d.received_at),
        "next_attempt_at": iso(d.next_attempt_at) if pending else None,
        "next_attempt": fmt_age(d.next_attempt_at, now) if pending else "",
        "attempts": d.attempts,
        "last_error": d.last_error or "",
        "server": d.server or "",
        "reply": d.reply or "",
        "finished_at": iso(d.finished_at),
        "finished": fmt_time(d.finished_at, tz),
        "reason": d.reason or "",
        "status_text": status_text(d, now),
    }


def status_text(d: DeliverySummary, now: float) -> str:
    """One line saying where a delivery stands (DESIGN "Every delivery has a visible state")."""
    if d.state == "sent":
        return f"sent via {d.server or '?'}: {d.reply or ''}".strip(": ")
    if d.state == "retrying":
        return f"retry {fmt_age(d.next_attempt_at, now)}; last error: {d.last_error or '?'}"
    if d.state == "dead":
        return f"dead: {d.reason or d.last_error or '?'}"
    if d.state == "superseded":
        return d.reason or "superseded by a newer message"
    if d.state == "queued":
        return f"queued, due {fmt_age(d.next_attempt_at, now)}"
    return d.state


def detail_item(d: DeliveryDetail, now: float, tz: ZoneInfo) -> dict[str, Any]:
    item = delivery_item(d.summary, now, tz)
    try:
        per_rcpt = json.loads(d.recipients_result) if d.recipients_result else {}
    except ValueError:
        per_rcpt = {"?": d.recipients_result}
    n = d.notification
    item.update(
        message_id=d.message_id,
        thread_id=d.thread_id,
        recipients_result=per_rcpt if isinstance(per_rcpt, dict) else {},
        notification=None
        if n is None
        else {
            "id": n.id,
            "received_at": iso(n.received_at),
            "received": fmt_time(n.received_at, tz),
            "receiver": n.receiver,
            "group_key": n.group_key,
            "status": n.status,
            "state": n.state,
            "reason": n.reason or "",
        },
        history=[
            {
                "at": iso(a.at),
                "time": fmt_time(a.at, tz),
                "server": a.server,
                "ok": a.ok,
                "stage": a.stage,
                "code": a.code,
                "message": a.message,
                "elapsed_ms": round(a.elapsed * 1000),
            }
            for a in d.attempts
        ],
    )
    return item


def counts_item(counts: Sequence[StateCount]) -> dict[str, Any]:
    by_state = dict.fromkeys(STATES, 0)
    for c in counts:
        by_state[c.state] = by_state.get(c.state, 0) + c.count
    return {
        "by_state": [
            {"state": s, "count": n, "url": f"/deliveries?state={s}"} for s, n in by_state.items()
        ],
        "by_channel": [{"channel": c.channel, "state": c.state, "count": c.count} for c in counts],
    }


def digest_item(q: QueuedDigest, now: float, tz: ZoneInfo) -> dict[str, Any]:
    return {
        "id": q.id,
        "url": f"/deliveries/{q.id}",
        "to": ", ".join(recipients("email", q.target)),
        "subject": q.subject or "",
        "state": q.state,
        "next_flush_at": iso(q.next_attempt_at),
        "next_flush": f"{fmt_time(q.next_attempt_at, tz)} ({fmt_age(q.next_attempt_at, now)})",
    }


def window_items(
    config: Config, windows: Sequence[tuple[str, float, int]], now: float, tz: ZoneInfo
) -> list[dict[str, Any]]:
    """Open digest windows and when each flushes: at the window's end, after quiet hours."""
    routes = {RouteMatch(i, r).key: r for i, r in enumerate(config.routes)}
    out = []
    for key, bucket, entries in windows:
        route = routes.get(key)
        flush: float | None = None
        if route is not None:
            flush = max(bucket + route.every, now)
            flush = quiet_until(flush, route.quiet_hours, tz) or flush
        out.append(
            {
                "route": key,
                "window_start_at": iso(bucket),
                "window_start": fmt_time(bucket, tz),
                "notifications": entries,
                "next_flush_at": iso(flush),
                "next_flush": f"{fmt_time(flush, tz)} ({fmt_age(flush, now)})"
                if flush is not None
                else "route no longer configured",
            }
        )
    return out


def report_items(
    config: Config, next_run: NextRun | None, now: float, tz: ZoneInfo
) -> list[dict[str, Any]]:
    out = []
    for r in config.reports:
        at = next_run(r.name) if next_run is not None else None
        out.append(
            {
                "name": r.name,
                "schedule": r.schedule,
                "to": ", ".join(r.to),
                "next_run_at": iso(at),
                "next_run": f"{fmt_time(at, tz)} ({fmt_age(at, now)})"
                if at
                else ("scheduler not running" if next_run is None else "not scheduled"),
            }
        )
    return out


def deadman_item(config: Config, seen: str | None, now: float, tz: ZoneInfo) -> dict[str, Any]:
    """The dead man's switch: when its heartbeat alert last came, and whether that is late."""
    dm = config.deadman
    if dm is None:
        return {"configured": False}
    last = float(seen) if seen else None
    if last is None:
        state = "not seen yet"
    else:
        state = "silent: recipients alerted" if now - last > dm.after else "ok"
    return {
        "configured": True,
        "alertname": dm.alertname,
        "state": state,
        "last_seen_at": iso(last),
        "last_seen": f"{fmt_age(last, now)} ({fmt_time(last, tz)})" if last else "never",
        "after": format_duration(dm.after),
    }


def health_items(
    config: Config, rows: Sequence[ServerHealth], now: float, tz: ZoneInfo
) -> list[dict[str, Any]]:
    """Every configured server (in failover order), then any others seen in the history."""
    by_name = {h.server: h for h in rows}
    names = [s.name for s in config.smtp.servers] if config.smtp else []
    names += [n for n in by_name if n not in names]
    out = []
    configured = set(names[: len(config.smtp.servers)] if config.smtp else [])
    for name in names:
        h = by_name.get(name)
        ok_at = h.last_success if h else None
        bad_at = h.last_failure if h else None
        healthy = "unknown" if h is None else ("ok" if (ok_at or 0) >= (bad_at or 0) else "failing")
        out.append(
            {
                "server": name,
                "configured": name in configured,
                "health": healthy,
                "last_success_at": iso(ok_at),
                "last_success": fmt_age(ok_at, now) if ok_at else "never",
                "last_success_time": fmt_time(ok_at, tz),
                "last_failure_at": iso(bad_at),
                "last_failure": fmt_age(bad_at, now) if bad_at else "never",
                "last_failure_time": fmt_time(bad_at, tz),
                "last_error": (h.last_error or "") if h else "",
                "successes": h.successes if h else 0,
                "failures": h.failures if h else 0,
                "failovers": h.failovers if h else 0,
            }
        )
    return out
