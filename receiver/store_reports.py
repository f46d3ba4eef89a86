"""Store queries for scheduled reports (part of the store layer; mixed into ``Store``).

Report periods are keyed by (report name, period end): queuing a report's email and
recording its period happen in one transaction, so a restart neither loses nor repeats one.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING

from receiver.store_mixin import StoreMixin

if TYPE_CHECKING:
    from receiver.store import NewMessage


@dataclass(frozen=True, slots=True)
class NotifiedEmail:
    """One email the receiver queued in a report's range, and the alerts it was about."""

    outbox_id: int
    kind: str  # alert | catchup | digest | deadman | ...
    state: str
    recipients: tuple[str, ...]
    alertnames: tuple[str, ...]  # empty for digests: their outbox rows carry no notification


class ReportQueries(StoreMixin):
    def report_first_seen(self, name: str, now: float) -> float:
        """When this report was first scheduled (recorded as ``now`` the first time asked)."""
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO report_schedules (name, first_seen) VALUES (?, ?)",
                (name, now),
            )
            row = db.execute(
                "SELECT first_seen FROM report_schedules WHERE name=?", (name,)
            ).fetchone()
        return float(row[0])

    def report_period_done(self, name: str, period_end: float) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM report_runs WHERE name=? AND period_end=?", (name, period_end)
        ).fetchone()
        return row is not None

    def last_report_period(self, name: str) -> float | None:
        row = self._db.execute(
            "SELECT MAX(period_end) FROM report_runs WHERE name=?", (name,)
        ).fetchone()
        return None if row[0] is None else float(row[0])

    def commit_report(
        self, name: str, period_start: float, period_end: float, message: NewMessage, now: float
    ) -> int | None:
        """Queue a period's report once: the outbox id, or None when it was already queued."""
        with self._tx() as db:
            try:
                db.execute(
                    "INSERT INTO report_runs (name, period_end, period_start, queued_at) "
                    "VALUES (?,?,?,?)",
                    (name, period_end, period_start, now),
                )
            except sqlite3.IntegrityError:
                return None
            outbox_id, _ = self._insert_message(db, message, now)
            db.execute(
                "UPDATE report_runs SET outbox_id=? WHERE name=? AND period_end=?",
                (outbox_id, name, period_end),
            )
        return outbox_id

    def notified_emails(self, start: float, end: float) -> list[NotifiedEmail]:
        """Emails queued in [start, end) with the alertnames each one was about.

        Alert emails link to their notification; catch-ups to the notifications folded into
        them. Reports themselves and test emails are left out.
        """
        rows = self._db.execute(
            "SELECT o.id, o.kind, o.state, o.target, "
            "(SELECT json_group_array(DISTINCT json_extract(j.value, '$.labels.alertname')) "
            " FROM notifications n, json_each(n.payload, '$.alerts') j "
            " WHERE n.id = o.notification_id OR n.id IN "
            " (SELECT f.notification_id FROM folded f WHERE f.catchup_outbox_id = o.id)) "
            "FROM outbox o WHERE o.channel='email' AND o.created_at >= ? AND o.created_at < ? "
            "AND o.kind NOT IN ('report', 'test') ORDER BY o.id",
            (start, end),
        ).fetchall()
        out = []
        for r in rows:
            try:
                recipients = tuple(str(x) for x in json.loads(r[3]))
            except (ValueError, TypeError):
                recipients = (str(r[3]),)
            names = json.loads(r[4]) if r[4] else []
            out.append(
                NotifiedEmail(
                    outbox_id=int(r[0]),
                    kind=str(r[1]),
                    state=str(r[2]),
                    recipients=recipients,
                    alertnames=tuple(sorted(str(n) for n in names if n is not None)),
                )
            )
        return out
