"""The SQLite store: notifications, alert history, threads, outbox. The only SQL in alertmail.

All access goes through one thread (``AsyncStore``), so there is a single writer and no
SQLITE_BUSY between our own tasks. Webhook ingests arriving together are committed in one
transaction (group commit): durability costs one fsync per batch, not per request.
Another process (the ``alertmail outbox`` command) may open the same file: WAL and a busy
timeout make that safe.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from pathlib import Path

from receiver.errors import SchemaTooNewError, StoreError
from receiver.schema import MIGRATIONS, SCHEMA_VERSION
from receiver.store_batches import BatchQueries
from receiver.store_ingest import IngestQueries, history_rows, rows_per_statement, write_rows
from receiver.store_outbox import OutboxQueries, root_reach
from receiver.store_reports import ReportQueries
from receiver.store_supersede import REASON as SUPERSEDED
from receiver.store_supersede import by_recipient, supersede_older
from receiver.store_types import (
    AlertRecord,
    AttemptRecord,
    DispatchPlan,
    IngestItem,
    IngestResult,
    NewMessage,
    OutboxRow,
    Queued,
    Thread,
)

__all__ = [
    "AlertRecord",
    "AttemptRecord",
    "DispatchPlan",
    "IngestItem",
    "IngestResult",
    "NewMessage",
    "OutboxRow",
    "Queued",
    "Store",
    "Thread",
]


class Store(IngestQueries, OutboxQueries, BatchQueries, ReportQueries):
    """Synchronous store. Use from one thread at a time (``AsyncStore`` does that)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            if str(path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False, timeout=2.0
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: a webhook answered 200 survives power loss, not only a process crash.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA busy_timeout=2000")
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: cannot open database: {exc}") from exc
        # Ingest state (store_ingest.py): read on the first ingest.
        self._last: dict[tuple[str, str], tuple[str, float]] = {}
        self._ingest_ready = False
        self._rows_per_statement = rows_per_statement(self._db)
        self._migrate()

    # -- schema -----------------------------------------------------------------------
    def _migrate(self) -> None:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            self._db.close()
            raise SchemaTooNewError(str(self.path), version, SCHEMA_VERSION)
        if version == SCHEMA_VERSION:
            return
        if version > 0:
            self._backup(self.path.with_name(f"{self.path.name}.v{version}.bak"))
        for target in range(version, SCHEMA_VERSION):
            try:
                self._db.executescript(
                    f"BEGIN IMMEDIATE; {MIGRATIONS[target]}; PRAGMA user_version={target + 1}; "
                    "COMMIT;"
                )
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StoreError(f"{self.path}: migration to v{target + 1} failed: {exc}") from exc

    def _backup(self, dest: Path) -> None:
        with sqlite3.connect(str(dest)) as copy:
            self._db.backup(copy)
        copy.close()

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        self._db.close()

    def _tx(self, *, durable: bool = True) -> _Transaction:
        """A write transaction. ``durable=False`` for bookkeeping nobody outside has seen
        yet (dispatch plans, threads): its commit skips the fsync. WAL frames are written in
        order, so the next durable commit (the claim before any send, or an ingest) makes it
        durable too; a power cut can only lose a suffix of such commits, which the
        notification's 'pending' state then replays."""
        return _Transaction(self._db, self.path, durable)

    # -- dispatch: pending notifications -----------------------------------------------
    def pending_notifications(
        self, limit: int = 100, parsed: Collection[int] = ()
    ) -> list[tuple[int, float, str, str | None]]:
        """(id, received_at, receiver, payload) of notifications not yet routed, oldest
        first. The payload is None for ids in ``parsed`` (the caller holds them parsed):
        reading kilobytes of text only to drop them costs more than the query."""
        rows = self._db.execute(
            "SELECT id, received_at, receiver FROM notifications WHERE state='pending' "
            "ORDER BY id LIMIT ?",
            (limit,),
        ).fetchall()
        missing = [r[0] for r in rows if r[0] not in parsed]
        payloads: dict[int, str] = {}
        for start in range(0, len(missing), 500):  # within SQLite's bound-parameter limit
            part = missing[start : start + 500]
            marks = ",".join("?" * len(part))
            payloads.update(
                self._db.execute(
                    f"SELECT id, payload FROM notifications WHERE id IN ({marks})", part
                ).fetchall()
            )
        return [(int(r[0]), float(r[1]), str(r[2]), payloads.get(r[0])) for r in rows]

    # -- threads ----------------------------------------------------------------------
    def open_threads(
        self, keys: Sequence[tuple[str, str]], now: float, max_age: float
    ) -> dict[tuple[str, str], Thread]:
        """The open thread of each (route, group), or a new one (an incident lasts at most
        max_age), in one transaction."""
        with self._tx(durable=False) as db:
            return {key: self._open_thread(db, *key, now, max_age) for key in keys}

    @staticmethod
    def _open_thread(
        db: sqlite3.Connection, route: str, group_key: str, now: float, max_age: float
    ) -> Thread:
        row = db.execute(
            "SELECT id, route, group_key, opened_at, subject, root_message_id FROM threads "
            "WHERE route=? AND group_key=? AND closed_at IS NULL",
            (route, group_key),
        ).fetchone()
        if row is not None and now - row[3] < max_age:
            sent, reached = root_reach(db, row[5]) if row[5] is not None else (False, None)
            return Thread(row[0], row[1], row[2], row[3], row[4], row[5], sent, reached)
        if row is not None:
            db.execute("UPDATE threads SET closed_at=? WHERE id=?", (now, row[0]))
        cur = db.execute(
            "INSERT INTO threads (route, group_key, opened_at) VALUES (?,?,?)",
            (route, group_key, now),
        )
        return Thread(int(cur.lastrowid or 0), route, group_key, now, None, None)

    # -- dispatch ---------------------------------------------------------------------
    def commit_dispatch(self, plan: DispatchPlan, now: float) -> Queued:
        return self.commit_dispatch_many([plan], now)

    def commit_dispatch_many(self, plans: Sequence[DispatchPlan], now: float) -> Queued:
        """One transaction: supersede stale messages, queue new ones, record history,
        digest entries, flood budget and folds, and mark the notifications processed."""
        queued = Queued([], 0)
        with self._tx(durable=False) as db:
            for plan in plans:
                self._apply_plan(db, plan, now, queued)
            self._record_history(db, plans, now)
            db.executemany(
                "UPDATE notifications SET state='processed', reason=? WHERE id=?",
                [(plan.reason, plan.notification_id) for plan in plans],
            )
        return queued

    def _record_history(
        self, db: sqlite3.Connection, plans: Sequence[DispatchPlan], now: float
    ) -> None:
        """Each plan's alerts into the alert history, in one statement (see schema v5 for
        how plans committed out of id order are kept at the newest state)."""
        rows = [row for plan in plans for row in history_rows(plan, now)]
        if rows:
            write_rows(db, rows, self._rows_per_statement)

    def _apply_plan(
        self, db: sqlite3.Connection, plan: DispatchPlan, now: float, queued: Queued
    ) -> None:
        for thread_id, subject, root in plan.thread_roots:
            db.execute(
                "UPDATE threads SET subject=COALESCE(subject, ?), "
                "root_message_id=COALESCE(root_message_id, ?) WHERE id=?",
                (subject, root, thread_id),
            )
        for m in plan.messages:
            queued.add(*self._insert_message(db, m, now))
        for thread_id in plan.close_threads:
            db.execute(
                "UPDATE threads SET closed_at=? WHERE id=? AND closed_at IS NULL",
                (now, thread_id),
            )
        for route, bucket in plan.digest_entries:
            db.execute(
                "INSERT INTO digest_entries (route, bucket, notification_id, created_at) "
                "VALUES (?,?,?,?)",
                (route, bucket, plan.notification_id, now),
            )
        if plan.budget:
            db.executemany(
                "INSERT INTO flood_budget (recipient, at) VALUES (?, ?)",
                [(r, now) for r in plan.budget],
            )
        for recipient, route, priority in plan.folds:
            db.execute(
                "INSERT INTO folded (recipient, route, notification_id, priority, created_at) "
                "VALUES (?,?,?,?,?)",
                (recipient, route, plan.notification_id, priority, now),
            )
        for key, value in plan.kv:
            db.execute(
                "INSERT INTO kv (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value=excluded.value",
                (key, value),
            )

    def enqueue(
        self, messages: Sequence[NewMessage], now: float, kv: Sequence[tuple[str, str]] = ()
    ) -> list[int]:
        """Queue ``messages``, and set the ``kv`` pairs in the same transaction (a state
        that says the messages were queued must not survive a crash without them)."""
        queued = Queued([], 0)
        with self._tx() as db:
            for m in messages:
                queued.add(*self._insert_message(db, m, now))
            self._kv_set_many(db, kv)
        return queued.ids

    @staticmethod
    def _insert_message(db: sqlite3.Connection, m: NewMessage, now: float) -> tuple[int, int]:
        superseded = 0
        if m.state == "queued" and m.thread_id is not None and by_recipient(m.channel, m.thread_id):
            superseded = supersede_older(db, m.thread_id, m.target, now)
        elif m.supersede_key is not None and m.state == "queued":
            superseded = db.execute(
                "UPDATE outbox SET state='superseded', finished_at=?, reason=? "
                "WHERE supersede_key=? AND state IN ('queued','retrying')",
                (now, SUPERSEDED, m.supersede_key),
            ).rowcount
        cur = db.execute(
            "INSERT INTO outbox (channel, target, kind, priority, state, supersede_key, "
            "thread_id, notification_id, message_id, subject, payload, created_at, "
            "received_at, next_attempt_at, reason, finished_at, replaces_root, reply_payload) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                m.channel,
                m.target,
                m.kind,
                m.priority,
                m.state,
                m.supersede_key,
                m.thread_id,
                m.notification_id,
                m.message_id,
                m.subject,
                m.payload,
                # a message held for quiet hours counts as created when its hold ends: its
                # queue age (the stuck-outbox alert) and give-up clock start then
                max(now, m.not_before or now),
                m.received_at,
                max(now, m.not_before or now),
                m.reason,
                None if m.state == "queued" else now,
                m.replaces_root,
                m.reply_payload,
            ),
        )
        return int(cur.lastrowid or 0), superseded

    # -- status -----------------------------------------------------------------------
    def outbox_stats(self) -> tuple[dict[tuple[str, str], int], dict[str, float]]:
        counts = {
            (str(r[0]), str(r[1])): int(r[2])
            for r in self._db.execute(
                "SELECT channel, state, COUNT(*) FROM outbox GROUP BY channel, state"
            )
        }
        oldest = {
            str(r[0]): float(r[1])
            for r in self._db.execute(
                "SELECT channel, MIN(created_at) FROM outbox WHERE state IN "
                "('queued','retrying','sending') GROUP BY channel"
            )
        }
        return counts, oldest

    def ping(self) -> None:
        """Proves the database can take a write (for /readyz)."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO kv (key, value) VALUES ('readyz', '1') "
                "ON CONFLICT (key) DO UPDATE SET value=excluded.value"
            )

    def kv_get(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM kv WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def kv_set(self, key: str, value: str) -> None:
        with self._tx() as db:
            self._kv_set_many(db, [(key, value)])

    @staticmethod
    def _kv_set_many(db: sqlite3.Connection, pairs: Sequence[tuple[str, str]]) -> None:
        db.executemany(
            "INSERT INTO kv (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value=excluded.value",
            pairs,
        )

    def prune(self, before: float) -> int:
        """Drop history and finished messages older than ``before`` (storage.retention)."""
        with self._tx() as db:
            n = db.execute(
                "DELETE FROM outbox WHERE finished_at IS NOT NULL AND finished_at < ? "
                "AND state IN ('sent','superseded','dead')",
                (before,),
            ).rowcount
            n += db.execute(
                "DELETE FROM notifications WHERE received_at < ? AND state != 'pending'", (before,)
            ).rowcount
            n += db.execute("DELETE FROM alerts WHERE last_seen < ?", (before,)).rowcount
            n += db.execute(
                "DELETE FROM threads WHERE closed_at IS NOT NULL AND closed_at < ?", (before,)
            ).rowcount
            db.execute("DELETE FROM group_last WHERE received_at < ?", (before,))
            db.execute("DELETE FROM flood_budget WHERE at < ?", (before,))
            db.execute(
                "DELETE FROM folded WHERE created_at < ? AND catchup_outbox_id IS NOT NULL",
                (before,),
            )
            db.execute(
                "DELETE FROM digest_entries WHERE created_at < ? AND EXISTS (SELECT 1 FROM "
                "digests d WHERE d.route=digest_entries.route AND d.bucket=digest_entries.bucket)",
                (before,),
            )
        self._forget_groups_before(before)
        return n


class _Transaction:
    def __init__(self, db: sqlite3.Connection, path: Path, durable: bool) -> None:
        self._db = db
        self._path = path
        self._durable = durable

    def __enter__(self) -> sqlite3.Connection:
        try:
            if not self._durable:
                self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self._restore()
            raise StoreError(f"{self._path}: cannot start a write: {exc}") from exc
        return self._db

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        try:
            self._end(exc)
        finally:
            self._restore()

    def _end(self, exc: BaseException | None) -> None:
        if exc is not None:
            self._db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"{self._path}: write failed: {exc}") from exc
            return
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as err:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise StoreError(f"{self._path}: commit failed: {err}") from err

    def _restore(self) -> None:
        if not self._durable:
            self._db.execute("PRAGMA synchronous=FULL")
