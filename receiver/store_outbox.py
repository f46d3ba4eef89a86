"""Outbox queries: claiming, recording attempts, operator commands (part of the store layer).

Mixed into ``Store``: the same connection and thread, the same rule that SQL lives only here.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from receiver.errors import StoreError
from receiver.store_mixin import StoreMixin
from receiver.store_supersede import REASON as SUPERSEDED
from receiver.store_supersede import (
    email_key,
    newer_recipients,
    recipients_of,
    superseded_by_newer,
)
from receiver.store_types import _OUTBOX_COLS, AttemptRecord, OutboxRow, Outcome, _outbox_row


def root_reach(db: sqlite3.Connection, message_id: str) -> tuple[bool, frozenset[str] | None]:
    """Whether the email ``message_id`` has been sent, and whom it reached: the recipients
    of every sent copy (one re-sent to recipients deferred at RCPT is a row of its own)
    less those refused. None for whom when a copy's target cannot be read."""
    rows = db.execute(
        "SELECT target, recipients_result FROM outbox WHERE message_id=? AND state='sent'",
        (message_id,),
    ).fetchall()
    if not rows:
        return False, None
    reached: set[str] = set()
    for target, results in rows:
        got = reached_by(target, results)
        if got is None:
            return True, None
        reached |= got
    return True, frozenset(reached)


def reached_by(target: str, results: str | None) -> frozenset[str] | None:
    """Who a sent email reached: its recipients (``target``, a JSON list) less those whose
    server refused them (``recipients_result``: recipient -> SMTP reply). None when the
    target cannot be read."""
    recipients = recipients_of(target)
    if recipients is None:
        return None
    try:
        replies = json.loads(results) if results else {}
    except ValueError:
        replies = {}
    refused = (
        {r for r, reply in replies.items() if not str(reply).startswith("2")}
        if isinstance(replies, dict)
        else set()
    )
    return frozenset(recipients) - refused


def _reaches_all(reached: frozenset[str] | None, target: str) -> bool:
    recipients = recipients_of(target)
    return reached is None or recipients is None or set(recipients) <= reached


def _settle_root(
    db: sqlite3.Connection,
    outbox_id: int,
    old_root: str,
    thread_id: int | None,
    message_id: str,
    target: str,
) -> None:
    """A message rendered while its thread's first message was undelivered: send it as a
    reply if that message has been sent by now to all of this one's recipients; else as a
    first message (and, if the old one was not sent, later messages reply to this one).
    Decided once, so a retry sends the same bytes."""
    sent, reached = root_reach(db, old_root)
    if sent and _reaches_all(reached, target):
        db.execute("UPDATE outbox SET payload=reply_payload WHERE id=?", (outbox_id,))
    elif not sent and thread_id is not None:
        db.execute(
            "UPDATE threads SET root_message_id=? WHERE id=? AND NOT EXISTS (SELECT 1 FROM "
            "outbox WHERE message_id=threads.root_message_id AND state='sent')",
            (message_id, thread_id),
        )
    db.execute("UPDATE outbox SET reply_payload=NULL WHERE id=?", (outbox_id,))


def _queue_retry_for(
    db: sqlite3.Connection, outbox_id: int, recipients: list[str], at: float, error: str
) -> None:
    """The message ``outbox_id`` again, for ``recipients`` only (deferred with 4xx at RCPT
    while the others took it): same bytes and Message-ID, retrying from ``at``, its
    give-up clock running from the original's creation. It keeps the original's place in
    its thread (``origin_id``): recipients a newer message of the thread already goes to
    get that one instead."""
    thread_id, key, origin = db.execute(
        "SELECT thread_id, supersede_key, COALESCE(origin_id, id) FROM outbox WHERE id=?",
        (outbox_id,),
    ).fetchone()
    if thread_id is not None:
        covered = newer_recipients(db, int(thread_id), int(origin))
        recipients = [r for r in recipients if r not in covered]
        if not recipients:
            return
        key = email_key(int(thread_id), recipients)
    db.execute(
        "INSERT INTO outbox (channel, target, kind, priority, state, supersede_key, "
        "thread_id, notification_id, message_id, subject, payload, created_at, received_at, "
        "next_attempt_at, attempts, last_error, origin_id) SELECT channel, ?, kind, "
        "priority, 'retrying', ?, thread_id, notification_id, message_id, subject, payload, "
        "created_at, received_at, ?, 1, ?, ? FROM outbox WHERE id=?",
        (json.dumps(recipients), key, at, error, origin, outbox_id),
    )


def _first_of_each_thread(due: list[Any]) -> list[Any]:
    """Of the due rows (id, _, thread_id, ..., place in the thread), the earliest of each
    thread only: the claim's own rows are not 'sending' yet, so the query cannot keep a
    thread's next message out of the batch that takes the one before it."""
    first: dict[int, int] = {}
    for row in due:
        if row[2] is not None and (row[2] not in first or row[6] < first[row[2]]):
            first[row[2]] = row[6]
    return [row for row in due if row[2] is None or first[row[2]] == row[6]]


class OutboxQueries(StoreMixin):
    # -- delivery ---------------------------------------------------------------------
    def recover_sending(self) -> int:
        """After a crash, messages caught mid-send go back to the queue (at-least-once)."""
        with self._tx() as db:
            return db.execute("UPDATE outbox SET state='queued' WHERE state='sending'").rowcount

    def claim_due(self, channel: str, now: float, limit: int) -> list[OutboxRow]:
        """Due messages, most urgent first, marked as sending."""
        if limit <= 0:
            return []
        with self._tx() as db:
            # Not while another message of its thread (or its supersede key) on this
            # channel, or the first message it may reply to, is being sent: a thread's
            # messages go in order, whoever they are addressed to.
            due = db.execute(
                "SELECT id, replaces_root, thread_id, message_id, target, "
                "reply_payload IS NOT NULL, COALESCE(origin_id, id) "
                "FROM outbox o WHERE channel=? AND state IN "
                "('queued','retrying') AND next_attempt_at<=? AND NOT EXISTS (SELECT 1 "
                "FROM outbox s WHERE s.supersede_key=o.supersede_key AND s.state='sending') "
                "AND (o.channel!='email' OR NOT EXISTS (SELECT 1 FROM outbox t WHERE "
                "t.thread_id=o.thread_id AND t.channel='email' AND t.state='sending')) "
                "AND NOT EXISTS (SELECT 1 FROM outbox r WHERE r.message_id=o.replaces_root "
                "AND r.state='sending') ORDER BY priority, id LIMIT ?",
                (channel, now, limit),
            ).fetchall()
            if channel == "email":
                due = _first_of_each_thread(due)
            if not due:
                return []
            for outbox_id, old_root, thread_id, message_id, target, unsettled, _ in due:
                if old_root is not None and unsettled:
                    _settle_root(db, outbox_id, old_root, thread_id, message_id, target)
            ids = [r[0] for r in due]
            rows = db.execute(
                f"UPDATE outbox SET state='sending' WHERE id IN ({','.join('?' * len(ids))}) "
                f"RETURNING {_OUTBOX_COLS}",
                ids,
            ).fetchall()
        return sorted((_outbox_row(r) for r in rows), key=lambda r: (r.priority, r.id))

    def next_due_at(self, channel: str) -> float | None:
        try:
            row = self._db.execute(
                "SELECT MIN(next_attempt_at) FROM outbox WHERE channel=? "
                "AND state IN ('queued','retrying')",
                (channel,),
            ).fetchone()
        except sqlite3.Error as exc:  # the worker waits and asks again, as after a write
            raise StoreError(f"cannot read the outbox: {exc}") from exc
        return None if row[0] is None else float(row[0])

    def release(self, ids: Sequence[int]) -> int:
        """Claimed messages that were not started go back to the queue (at shutdown)."""
        if not ids:
            return 0
        with self._tx() as db:
            return db.execute(
                f"UPDATE outbox SET state='queued' WHERE state='sending' "
                f"AND id IN ({','.join('?' * len(ids))})",
                list(ids),
            ).rowcount

    def finish_attempt(
        self,
        outbox_id: int,
        now: float,
        state: str,
        attempts: Sequence[AttemptRecord],
        **fields: Any,
    ) -> str:
        """Record an attempt; returns the state stored (a failed message that a newer one
        for its thread and recipients replaced while it was being sent is 'superseded')."""
        with self._tx() as db:
            return self._finish(db, outbox_id, now, state, attempts, **fields)

    def finish_many(self, outcomes: Sequence[Outcome]) -> list[str]:
        """finish_attempt for several messages in one transaction (one fsync)."""
        with self._tx() as db:
            return [
                self._finish(db, o.outbox_id, o.now, o.state, o.attempts, **o.fields)
                for o in outcomes
            ]

    @staticmethod
    def _finish(
        db: sqlite3.Connection,
        outbox_id: int,
        now: float,
        state: str,
        attempts: Sequence[AttemptRecord],
        *,
        server: str | None = None,
        reply: str | None = None,
        error: str | None = None,
        next_attempt_at: float | None = None,
        recipients_result: str | None = None,
        reason: str | None = None,
        retry_for: tuple[list[str], float, str] | None = None,
    ) -> str:
        if state == "retrying" and superseded_by_newer(db, outbox_id):
            state, reason = "superseded", SUPERSEDED
        if retry_for is not None:
            _queue_retry_for(db, outbox_id, *retry_for)
        for a in attempts:
            db.execute(
                "INSERT INTO attempts (outbox_id, at, server, ok, stage, code, message, "
                "elapsed) VALUES (?,?,?,?,?,?,?,?)",
                (outbox_id, now, a.server, int(a.ok), a.stage, a.code, a.message, a.elapsed),
            )
        done = state in ("sent", "dead", "superseded")
        db.execute(
            "UPDATE outbox SET state=?, attempts=attempts+1, server=COALESCE(?, server), "
            "reply=COALESCE(?, reply), last_error=COALESCE(?, last_error), "
            "next_attempt_at=COALESCE(?, next_attempt_at), "
            "recipients_result=COALESCE(?, recipients_result), reason=COALESCE(?, reason), "
            "finished_at=? WHERE id=?",
            (
                state,
                server,
                reply,
                error,
                next_attempt_at,
                recipients_result,
                reason,
                now if done else None,
                outbox_id,
            ),
        )
        return state

    # -- operator commands --------------------------------------------------------------
    def list_outbox(
        self, states: Sequence[str] | None = None, limit: int = 100, channel: str | None = None
    ) -> list[OutboxRow]:
        where: list[str] = []
        args: list[Any] = []
        if states:
            where.append(f"state IN ({','.join('?' * len(states))})")
            args.extend(states)
        if channel:
            where.append("channel=?")
            args.append(channel)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._db.execute(
            f"SELECT {_OUTBOX_COLS} FROM outbox {clause} ORDER BY id DESC LIMIT ?",
            (*args, limit),
        ).fetchall()
        return [_outbox_row(r) for r in rows]

    def get_outbox(self, outbox_id: int) -> OutboxRow | None:
        row = self._db.execute(
            f"SELECT {_OUTBOX_COLS} FROM outbox WHERE id=?", (outbox_id,)
        ).fetchone()
        return _outbox_row(row) if row else None

    def attempts_of(self, outbox_id: int) -> list[tuple[float, AttemptRecord]]:
        rows = self._db.execute(
            "SELECT at, server, ok, stage, code, message, elapsed FROM attempts "
            "WHERE outbox_id=? ORDER BY id",
            (outbox_id,),
        ).fetchall()
        return [(float(r[0]), AttemptRecord(r[1], bool(r[2]), *r[3:])) for r in rows]

    def requeue(self, now: float, outbox_id: int | None = None, *, dead: bool = False) -> int:
        """Put dead/retrying messages back in the queue now (like ``postqueue -f``)."""
        with self._tx() as db:
            if outbox_id is not None:
                return db.execute(
                    "UPDATE outbox SET state='queued', next_attempt_at=?, created_at=?, "
                    "finished_at=NULL, reason=NULL WHERE id=? AND state IN "
                    "('dead','retrying','queued','superseded')",
                    (now, now, outbox_id),
                ).rowcount
            states = "('dead')" if dead else "('retrying')"
            return db.execute(
                f"UPDATE outbox SET state='queued', next_attempt_at=?, created_at=?, "
                f"finished_at=NULL, reason=NULL WHERE state IN {states}",
                (now, now),
            ).rowcount

    def drop(self, outbox_id: int, now: float) -> int:
        with self._tx() as db:
            # A dead message keeps why it died.
            return db.execute(
                "UPDATE outbox SET state='dead', finished_at=?, reason=CASE WHEN state='dead' "
                "AND reason IS NOT NULL THEN reason || '; dropped by operator' ELSE "
                "'dropped by operator' END WHERE id=? AND state IN ('queued','retrying','dead')",
                (now, outbox_id),
            ).rowcount
