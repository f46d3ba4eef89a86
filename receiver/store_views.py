"""Read-only queries behind the operator pages (receiver/web). Part of the store layer.

Each method answers one page's question and returns plain dataclasses. They run on the
store's thread like every Store method: ``await astore.run(views.deliveries, flt, 50, 0)``.
Nothing here writes; writes (re-queue) stay in ``Store``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from receiver.model import severity_rank
from receiver.store import Store


@dataclass(frozen=True, slots=True)
class FiringAlert:
    fingerprint: str
    starts_at: str
    alertname: str
    severity: str
    labels: dict[str, str]
    annotations: dict[str, str]
    first_seen: float
    last_seen: float


@dataclass(frozen=True, slots=True)
class DeliveryFilter:
    states: tuple[str, ...] = ()
    channel: str | None = None
    recipient: str | None = None  # substring of the target (recipients / Slack target)
    alertname: str | None = None  # substring of any alert's alertname in the notification
    text: str | None = None  # substring of subject, last error or reason
    since: float | None = None  # created_at >= since
    until: float | None = None  # created_at < until


@dataclass(frozen=True, slots=True)
class DeliverySummary:
    id: int
    channel: str
    target: str
    kind: str
    priority: int
    state: str
    subject: str | None
    created_at: float
    received_at: float
    next_attempt_at: float
    attempts: int
    last_error: str | None
    server: str | None
    reply: str | None
    finished_at: float | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class AttemptView:
    at: float
    server: str
    ok: bool
    stage: str
    code: int | None
    message: str
    elapsed: float


@dataclass(frozen=True, slots=True)
class NotificationInfo:
    id: int
    received_at: float
    receiver: str
    group_key: str
    status: str
    state: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class DeliveryDetail:
    summary: DeliverySummary
    message_id: str | None
    payload: bytes
    recipients_result: str | None
    thread_id: int | None
    notification: NotificationInfo | None
    attempts: list[AttemptView] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class StateCount:
    channel: str
    state: str
    count: int


@dataclass(frozen=True, slots=True)
class QueuedDigest:
    id: int
    target: str
    subject: str | None
    state: str
    created_at: float
    next_attempt_at: float


@dataclass(frozen=True, slots=True)
class ServerHealth:
    server: str
    last_success: float | None
    last_failure: float | None
    last_error: str | None
    successes: int  # within the window
    failures: int  # within the window
    failovers: int  # failures within the window after which the chain tried another server


_SUMMARY_COLS = (
    "o.id, o.channel, o.target, o.kind, o.priority, o.state, o.subject, o.created_at, "
    "o.received_at, o.next_attempt_at, o.attempts, o.last_error, o.server, o.reply, "
    "o.finished_at, o.reason"
)


def _like(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _summary(r: Sequence[Any]) -> DeliverySummary:
    return DeliverySummary(*r)


class StoreViews:
    """The pages' queries over a Store's connection (read-only)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._db = store._db

    # -- overview (/) -------------------------------------------------------------------
    def kv_get(self, key: str) -> str | None:
        return self._store.kv_get(key)

    def firing_alerts(
        self, limit: int = 200, exclude: str | None = None
    ) -> tuple[list[FiringAlert], int]:
        """Firing alerts, most severe then oldest first, and how many there are in all;
        without those named ``exclude`` (the dead man's switch, which always fires)."""
        where = "status='firing' AND alertname IS NOT ?"
        total = int(
            self._db.execute(f"SELECT COUNT(*) FROM alerts WHERE {where}", (exclude,)).fetchone()[0]
        )
        rows = self._db.execute(
            "SELECT fingerprint, starts_at, alertname, severity, labels, annotations, "
            f"first_seen, last_seen FROM alerts WHERE {where} "
            "ORDER BY CASE lower(severity) WHEN 'critical' THEN 0 WHEN 'error' THEN 1 "
            "WHEN 'warning' THEN 2 WHEN 'info' THEN 3 ELSE 4 END, starts_at, alertname "
            "LIMIT ?",
            (exclude, limit),
        ).fetchall()
        alerts = [
            FiringAlert(r[0], r[1], r[2], r[3], _json_map(r[4]), _json_map(r[5]), r[6], r[7])
            for r in rows
        ]
        alerts.sort(key=lambda a: (severity_rank(a.severity), a.starts_at, a.alertname))
        return alerts, total

    def delivery_counts(self, since: float) -> list[StateCount]:
        """Deliveries created since ``since`` plus every one still pending, by state."""
        rows = self._db.execute(
            "SELECT channel, state, COUNT(*) FROM outbox WHERE created_at >= ? "
            "OR state IN ('queued','sending','retrying') GROUP BY channel, state "
            "ORDER BY channel, state",
            (since,),
        ).fetchall()
        return [StateCount(str(r[0]), str(r[1]), int(r[2])) for r in rows]

    def queued_digests(self) -> list[QueuedDigest]:
        """Digest messages waiting in the outbox (hook: extend when digests get a table)."""
        rows = self._db.execute(
            "SELECT id, target, subject, state, created_at, next_attempt_at FROM outbox "
            "WHERE kind='digest' AND state IN ('queued','retrying') ORDER BY next_attempt_at"
        ).fetchall()
        return [QueuedDigest(*r) for r in rows]

    def open_digest_windows(self) -> list[tuple[str, float, int]]:
        """(route key, window start, notifications) of digest windows not yet flushed."""
        return self._store.pending_digests()

    def smtp_health(self, since: float) -> list[ServerHealth]:
        """Per server: last success/failure ever, and counts within the window."""
        rows = self._db.execute(
            "SELECT a.server, "
            "MAX(CASE WHEN a.ok THEN a.at END), MAX(CASE WHEN NOT a.ok THEN a.at END), "
            "SUM(CASE WHEN a.ok AND a.at >= :since THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN NOT a.ok AND a.at >= :since THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN NOT a.ok AND a.at >= :since AND EXISTS (SELECT 1 FROM attempts b "
            "  WHERE b.outbox_id=a.outbox_id AND b.at=a.at AND b.id>a.id "
            "  AND b.server!=a.server) THEN 1 ELSE 0 END), "
            "(SELECT c.message FROM attempts c WHERE c.server=a.server AND NOT c.ok "
            " ORDER BY c.id DESC LIMIT 1) "
            "FROM attempts a JOIN outbox o ON o.id=a.outbox_id WHERE o.channel='email' "
            "GROUP BY a.server ORDER BY a.server",
            {"since": since},
        ).fetchall()
        return [
            ServerHealth(
                server=str(r[0]),
                last_success=r[1],
                last_failure=r[2],
                successes=int(r[3] or 0),
                failures=int(r[4] or 0),
                failovers=int(r[5] or 0),
                last_error=r[6],
            )
            for r in rows
        ]

    # -- /deliveries --------------------------------------------------------------------
    def deliveries(
        self, flt: DeliveryFilter, limit: int = 50, offset: int = 0
    ) -> tuple[list[DeliverySummary], int]:
        """One page of deliveries matching ``flt``, newest first, and the total matching."""
        where: list[str] = []
        args: list[Any] = []
        if flt.states:
            where.append(f"o.state IN ({','.join('?' * len(flt.states))})")
            args.extend(flt.states)
        if flt.channel:
            where.append("o.channel = ?")
            args.append(flt.channel)
        if flt.recipient:
            where.append("o.target LIKE ? ESCAPE '\\'")
            args.append(_like(flt.recipient))
        if flt.text:
            where.append(
                "(o.subject LIKE ? ESCAPE '\\' OR o.last_error LIKE ? ESCAPE '\\' "
                "OR o.reason LIKE ? ESCAPE '\\')"
            )
            args.extend([_like(flt.text)] * 3)
        if flt.alertname:
            where.append(
                "EXISTS (SELECT 1 FROM notifications n, json_each(n.payload, '$.alerts') j "
                "WHERE n.id = o.notification_id "
                "AND json_extract(j.value, '$.labels.alertname') LIKE ? ESCAPE '\\')"
            )
            args.append(_like(flt.alertname))
        if flt.since is not None:
            where.append("o.created_at >= ?")
            args.append(flt.since)
        if flt.until is not None:
            where.append("o.created_at < ?")
            args.append(flt.until)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        total = int(self._db.execute(f"SELECT COUNT(*) FROM outbox o {clause}", args).fetchone()[0])
        rows = self._db.execute(
            f"SELECT {_SUMMARY_COLS} FROM outbox o {clause} ORDER BY o.id DESC LIMIT ? OFFSET ?",
            (*args, limit, offset),
        ).fetchall()
        return [_summary(r) for r in rows], total

    # -- /deliveries/{id} ---------------------------------------------------------------
    def delivery(self, outbox_id: int) -> DeliveryDetail | None:
        row = self._db.execute(
            f"SELECT {_SUMMARY_COLS}, o.message_id, o.payload, o.recipients_result, "
            "o.thread_id, o.notification_id FROM outbox o WHERE o.id = ?",
            (outbox_id,),
        ).fetchone()
        if row is None:
            return None
        n_cols = 16
        notification = None
        if row[n_cols + 4] is not None:
            n = self._db.execute(
                "SELECT id, received_at, receiver, group_key, status, state, reason "
                "FROM notifications WHERE id = ?",
                (row[n_cols + 4],),
            ).fetchone()
            notification = NotificationInfo(*n) if n else None
        attempts = [
            AttemptView(r[0], r[1], bool(r[2]), r[3], r[4], r[5], r[6])
            for r in self._db.execute(
                "SELECT at, server, ok, stage, code, message, elapsed FROM attempts "
                "WHERE outbox_id = ? ORDER BY id",
                (outbox_id,),
            )
        ]
        return DeliveryDetail(
            summary=_summary(row[:n_cols]),
            message_id=row[n_cols],
            payload=bytes(row[n_cols + 1]),
            recipients_result=row[n_cols + 2],
            thread_id=row[n_cols + 3],
            notification=notification,
            attempts=attempts,
        )

    # -- /preview -----------------------------------------------------------------------
    def recent_notifications(self, limit: int = 30) -> list[NotificationInfo]:
        rows = self._db.execute(
            "SELECT id, received_at, receiver, group_key, status, state, reason "
            "FROM notifications ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [NotificationInfo(*r) for r in rows]

    def notification_payload(self, notification_id: int) -> str | None:
        row = self._db.execute(
            "SELECT payload FROM notifications WHERE id = ?", (notification_id,)
        ).fetchone()
        return None if row is None else str(row[0])


def _json_map(text: str) -> dict[str, str]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items()}
