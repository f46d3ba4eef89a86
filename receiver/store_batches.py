"""Store queries for digests, flood control and Slack threads (part of the store layer).

Mixed into ``Store``: the same connection and thread, the same rule that SQL lives only here.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING

from receiver.store_mixin import StoreMixin

if TYPE_CHECKING:
    from receiver.store import NewMessage

StoredNotification = tuple[int, float, str, str]
"""(notification id, received_at, receiver, payload JSON)"""


class BatchQueries(StoreMixin):
    # -- flood budget -------------------------------------------------------------------
    def flood_counts(self, recipients: Sequence[str], since: float) -> dict[str, int]:
        out = dict.fromkeys(recipients, 0)
        for r in recipients:
            row = self._db.execute(
                "SELECT COUNT(*) FROM flood_budget WHERE recipient=? AND at>=?", (r, since)
            ).fetchone()
            out[r] = int(row[0])
        return out

    def fold_recipients(self) -> list[str]:
        rows = self._db.execute(
            "SELECT DISTINCT recipient FROM folded WHERE catchup_outbox_id IS NULL"
        ).fetchall()
        return [str(r[0]) for r in rows]

    def last_catchup_at(self, recipient: str) -> float | None:
        row = self._db.execute(
            "SELECT MAX(created_at) FROM outbox WHERE kind='catchup' AND target=?",
            (json.dumps([recipient]),),
        ).fetchone()
        return None if row[0] is None else float(row[0])

    def folded_for(self, recipient: str) -> list[tuple[int, int, StoredNotification]]:
        """(fold id, priority, notification) waiting for this recipient's catch-up."""
        rows = self._db.execute(
            "SELECT f.id, f.priority, n.id, n.received_at, n.receiver, n.payload "
            "FROM folded f JOIN notifications n ON n.id = f.notification_id "
            "WHERE f.recipient=? AND f.catchup_outbox_id IS NULL ORDER BY f.priority, f.id",
            (recipient,),
        ).fetchall()
        return [
            (int(r[0]), int(r[1]), (int(r[2]), float(r[3]), str(r[4]), str(r[5]))) for r in rows
        ]

    def commit_catchup(self, fold_ids: Sequence[int], message: NewMessage, now: float) -> int:
        with self._tx() as db:
            outbox_id, _ = self._insert_message(db, message, now)
            db.executemany(
                "UPDATE folded SET catchup_outbox_id=? WHERE id=? AND catchup_outbox_id IS NULL",
                [(outbox_id, fid) for fid in fold_ids],
            )
        return outbox_id

    def waiting_folds(self) -> dict[str, int]:
        """Recipient -> notifications folded and not yet in a catch-up (for `outbox list`)."""
        rows = self._db.execute(
            "SELECT recipient, COUNT(*) FROM folded WHERE catchup_outbox_id IS NULL "
            "GROUP BY recipient"
        ).fetchall()
        return {str(r[0]): int(r[1]) for r in rows}

    # -- digests ------------------------------------------------------------------------
    def due_digest_buckets(self, route: str, before: float) -> list[float]:
        """Windows that started before ``before``, have entries and were not flushed."""
        rows = self._db.execute(
            "SELECT DISTINCT e.bucket FROM digest_entries e WHERE e.route=? AND e.bucket<? "
            "AND NOT EXISTS (SELECT 1 FROM digests d WHERE d.route=e.route AND d.bucket=e.bucket) "
            "ORDER BY e.bucket",
            (route, before),
        ).fetchall()
        return [float(r[0]) for r in rows]

    def digest_notifications(self, route: str, bucket: float) -> list[StoredNotification]:
        rows = self._db.execute(
            "SELECT n.id, n.received_at, n.receiver, n.payload FROM digest_entries e "
            "JOIN notifications n ON n.id = e.notification_id "
            "WHERE e.route=? AND e.bucket=? ORDER BY n.id",
            (route, bucket),
        ).fetchall()
        return [(int(r[0]), float(r[1]), str(r[2]), str(r[3])) for r in rows]

    def commit_digest(
        self, route: str, bucket: float, entries: int, messages: Sequence[NewMessage], now: float
    ) -> bool:
        """Queue a window's digest once; False when it was already flushed."""
        with self._tx() as db:
            try:
                db.execute(
                    "INSERT INTO digests (route, bucket, flushed_at, entries) VALUES (?,?,?,?)",
                    (route, bucket, now, entries),
                )
            except sqlite3.IntegrityError:
                return False
            for m in messages:
                self._insert_message(db, m, now)
        return True

    def pending_digests(self) -> list[tuple[str, float, int]]:
        """(route, bucket, entries) not yet flushed: for the status page."""
        rows = self._db.execute(
            "SELECT e.route, e.bucket, COUNT(*) FROM digest_entries e WHERE NOT EXISTS "
            "(SELECT 1 FROM digests d WHERE d.route=e.route AND d.bucket=e.bucket) "
            "GROUP BY e.route, e.bucket ORDER BY e.bucket"
        ).fetchall()
        return [(str(r[0]), float(r[1]), int(r[2])) for r in rows]

    # -- Slack threads ------------------------------------------------------------------
    def slack_thread(self, thread_id: int, target: str) -> str | None:
        row = self._db.execute(
            "SELECT ts FROM slack_threads WHERE thread_id=? AND target=?", (thread_id, target)
        ).fetchone()
        return None if row is None else str(row[0])

    def set_slack_thread(self, thread_id: int, target: str, ts: str, channel: str | None) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO slack_threads (thread_id, target, ts, channel) "
                "VALUES (?,?,?,?)",
                (thread_id, target, ts, channel),
            )
