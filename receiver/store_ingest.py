"""Store writes for webhook ingest (part of the store layer).

Mixed into ``Store``: the same connection and thread, the same rule that SQL lives only here.

A batch of webhooks (``AsyncStore`` gathers those that arrive during a commit) is written
by one statement: rows into the ``ingest_rows`` view, whose triggers put each row in its
table (schema v5). Every statement step hands the GIL to the event loop and must win it
back, which under load costs far more than the step, so the batch takes one step, in which
SQLite also commits it (autocommit: synchronous=FULL, one fsync). Duplicates are decided
here, before the write, against the last accepted notification of each group, held in
memory (read on the first ingest while there are not too many groups).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

from receiver.errors import StoreError
from receiver.store_mixin import StoreMixin
from receiver.store_types import DispatchPlan, IngestItem, IngestResult

DUPLICATE = "same alerts as the last notification of this group"
GROUP_CACHE = 100_000  # groups whose last notification is kept in memory
_WIDTH = 11  # kind + the widest table's columns (alert history: 10)
_PAD = (None,) * _WIDTH  # a row no trigger takes: pads a batch to a power of two
_MOST_ROWS = 1024  # per statement at most; a power of two

Group = tuple[str, str]  # (receiver, group key)
Last = tuple[str, float]  # (dedup key, received at) of its last accepted notification


def parts(rows: Sequence[Sequence[object]], most: int = 64) -> Iterator[Sequence[Sequence[object]]]:
    """``rows`` in runs of ``most``, ... 4, 2, 1 (``most`` a power of two): a few statement
    texts, all of them kept in the connection's statement cache."""
    i = 0
    while i < len(rows):
        count = min(most, 1 << ((len(rows) - i).bit_length() - 1))
        yield rows[i : i + count]
        i += count


def row_marks(width: int, count: int) -> str:
    one = "(" + ",".join("?" * width) + ")"
    return ",".join([one] * count)


def rows_per_statement(db: sqlite3.Connection) -> int:
    """The most ``ingest_rows`` rows one statement may bind (a power of two): SQLite builds
    differ in how many parameters a statement takes (999 in old defaults, 32766 now)."""
    fit = db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // _WIDTH
    return min(_MOST_ROWS, 1 << (fit.bit_length() - 1))


class IngestQueries(StoreMixin):
    path: Path
    _rows_per_statement: int
    # Read on the first ingest (other users of the store, like the CLI, never need them),
    # and again after a failed write.
    _ingest_ready: bool
    _last: dict[Group, Last]
    _last_complete: bool
    _next_id: int

    def ingest_batch(self, items: Sequence[IngestItem]) -> list[IngestResult]:
        """Store the notifications of a batch, and the plans settled at ingest, atomically."""
        try:
            if not self._ingest_ready:
                self._load_groups()
                self._load_next_id()
                self._ingest_ready = True
            states, accepted = self._dedup(items)
            try:
                first = self._write_batch(items, states)
            except sqlite3.IntegrityError:
                # Another writer took the ids counted on (the failed statement wrote nothing).
                self._load_next_id()
                first = self._write_batch(items, states)
        except sqlite3.Error as exc:
            self._ingest_ready = False
            raise StoreError(f"{self.path}: write failed: {exc}") from exc
        self._next_id = first + len(items)
        self._remember_groups(accepted)  # committed: later batches compare against these
        return [
            IngestResult(nid, state == "duplicate")
            for nid, (state, _) in enumerate(states, start=first)
        ]

    def _dedup(
        self, items: Sequence[IngestItem]
    ) -> tuple[list[tuple[str, str | None]], dict[Group, Last]]:
        """(state, reason) per item (duplicate, settled: processed, or pending), and the
        groups' last accepted notifications once the batch is written."""
        last = self._group_last({(it.receiver, it.group_key) for it in items})
        accepted: dict[Group, Last] = {}
        states: list[tuple[str, str | None]] = []
        for it in items:
            key = (it.receiver, it.group_key)
            prev = last.get(key)
            if (
                prev is not None
                and prev[0] == it.dedup_key
                and it.received_at - prev[1] < it.dedup_window
            ):
                states.append(("duplicate", DUPLICATE))
                continue
            last[key] = accepted[key] = (it.dedup_key, it.received_at)
            settled = it.settled
            states.append(("pending", None) if settled is None else ("processed", settled.reason))
        return states, accepted

    def _write_batch(
        self,
        items: Sequence[IngestItem],
        states: Sequence[tuple[str, str | None]],
    ) -> int:
        """Write the batch with ids from ``self._next_id`` on; returns the first id."""
        first = self._next_id
        rows: list[tuple[object, ...]] = []
        later: list[tuple[object, ...]] = []  # rows referring to a notification: after them
        for nid, it, (state, reason) in zip(
            range(first, first + len(items)), items, states, strict=True
        ):
            row = (nid, it.received_at, it.receiver, it.group_key, it.status, it.dedup_key)
            rows.append(("n", *row, it.payload, state, reason, None))
            if state == "processed" and it.settled is not None:
                it.settled.notification_id = nid
                later.extend(_settled_rows(it.settled, it.received_at))
        rows.extend(later)
        most = self._rows_per_statement
        if len(rows) <= most:
            write_rows(self._db, rows, most)  # one statement, in autocommit: a transaction
            return first
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            write_rows(db, rows, most)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return first

    def _load_next_id(self) -> None:
        row = self._db.execute("SELECT coalesce(max(id), 0) + 1 FROM notifications").fetchone()
        self._next_id = int(row[0])

    def _load_groups(self) -> None:
        """Every group's last accepted notification, in memory while there are not too many:
        then a webhook for a group never seen before needs no query either."""
        count = self._db.execute("SELECT COUNT(*) FROM group_last").fetchone()[0]
        self._last_complete = count <= GROUP_CACHE
        self._last = {}
        if self._last_complete:
            query = "SELECT receiver, group_key, dedup_key, received_at FROM group_last"
            self._last = {(r, g): (k, at) for r, g, k, at in self._db.execute(query)}

    def _remember_groups(self, groups: dict[Group, Last]) -> None:
        self._last.update(groups)
        if len(self._last) > GROUP_CACHE:  # from now on, look up what is not in memory
            self._last.clear()
            self._last_complete = False

    def _forget_groups_before(self, before: float) -> None:
        self._last = {k: v for k, v in self._last.items() if v[1] >= before}

    def _group_last(self, keys: set[Group]) -> dict[Group, Last]:
        """The last accepted (dedup key, time) of each group, from memory or the store."""
        found = {k: self._last[k] for k in keys if k in self._last}
        if self._last_complete:
            return found
        missing = [k for k in keys if k not in found]
        for part in parts(missing):
            # An OR of key pairs is one primary-key search per pair (an IN list is a scan).
            where = " OR ".join(["(receiver=? AND group_key=?)"] * len(part))
            for receiver, group_key, dedup_key, at in self._db.execute(
                f"SELECT receiver, group_key, dedup_key, received_at FROM group_last WHERE {where}",
                [v for key in part for v in key],
            ):
                found[(receiver, group_key)] = (dedup_key, at)
        return found


def write_rows(db: sqlite3.Connection, rows: list[tuple[object, ...]], most: int) -> None:
    """Insert ``rows`` into ``ingest_rows``: one statement up to ``most`` rows (a power of
    two). Padded to a power of two (or a multiple of ``most``), so a handful of statement
    texts are ever prepared, and all of them stay in the connection's statement cache."""
    n = len(rows)
    size = 1 << (n - 1).bit_length() if n <= most else n + -n % most
    rows.extend([_PAD] * (size - n))
    for chunk in parts(rows, most):
        sql = f"INSERT INTO ingest_rows VALUES {row_marks(_WIDTH, len(chunk))}"
        db.execute(sql, [v for row in chunk for v in row])


def _settled_rows(plan: DispatchPlan, at: float) -> Iterator[tuple[object, ...]]:
    """A settled plan's rows: only what needs no thread or rendering can be settled."""
    assert not (plan.messages or plan.thread_roots or plan.close_threads), plan
    assert not (plan.budget or plan.folds), plan
    nid = plan.notification_id
    for route, bucket in plan.digest_entries:
        yield ("d", route, bucket, nid, at, *_PAD[:6])
    for key, value in plan.kv:
        yield ("k", key, value, *_PAD[:8])
    yield from history_rows(plan, at)


def history_rows(plan: DispatchPlan, at: float) -> Iterator[tuple[object, ...]]:
    """The plan's alerts for the alert history (kept at the newest notification's state)."""
    for a in plan.alerts:
        yield (
            "a",
            a.fingerprint,
            a.starts_at,
            a.alertname,
            a.severity,
            a.status,
            a.labels,
            a.annotations,
            a.ends_at,
            at,
            plan.notification_id,
        )
