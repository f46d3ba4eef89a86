"""Superseding: a newer message for a thread replaces older undelivered ones (store layer).

DESIGN.md defines it per thread and *recipient*. A thread's email recipients can differ
from one message to the next (the flood limit folds some out, a reload changes the route,
recipients the first message did not reach get their own copy), so for thread emails an
older undelivered message loses each recipient a newer one goes to: it is superseded when
none is left, else narrowed to the rest (its envelope only; the stored bytes are resent
as they are). Other messages (Slack, no thread) supersede by their exact key.
"""

from __future__ import annotations

import json
import sqlite3

REASON = "a newer message for the same thread and recipients was queued"


def email_key(thread_id: int, recipients: list[str]) -> str:
    """The supersede key of a thread email to ``recipients`` (as the dispatcher writes it)."""
    return f"{thread_id}:email:{json.dumps(recipients)}"


def recipients_of(target: str) -> list[str] | None:
    """An email row's recipients (its JSON ``target``), or None when it cannot be read."""
    try:
        value = json.loads(target)
    except ValueError:
        return None
    return [str(v) for v in value] if isinstance(value, list) else None


def by_recipient(channel: str, thread_id: int | None) -> bool:
    return channel == "email" and thread_id is not None


def supersede_older(db: sqlite3.Connection, thread_id: int, target: str, now: float) -> int:
    """A new email of the thread is queued: its older undelivered ones lose the recipients
    of ``target`` (superseded when none is left, else narrowed). Returns how many were
    superseded."""
    newer = set(recipients_of(target) or ())
    if not newer:
        return 0
    rows = db.execute(
        "SELECT id, target FROM outbox WHERE thread_id=? AND channel='email' "
        "AND state IN ('queued','retrying')",
        (thread_id,),
    ).fetchall()
    superseded = 0
    for outbox_id, old_target in rows:
        old = recipients_of(old_target)
        if old is None:
            continue
        rest = [r for r in old if r not in newer]
        if not rest:
            db.execute(
                "UPDATE outbox SET state='superseded', finished_at=?, reason=? WHERE id=?",
                (now, REASON, outbox_id),
            )
            superseded += 1
        elif len(rest) < len(old):
            _narrow(db, outbox_id, thread_id, rest)
    return superseded


def newer_recipients(db: sqlite3.Connection, thread_id: int, place: int) -> set[str]:
    """Recipients of the thread's emails (queued, in flight or sent) newer than ``place``:
    a row's place is its id, or for a copy re-sent to deferred recipients its original's."""
    covered: set[str] = set()
    for (target,) in db.execute(
        "SELECT target FROM outbox WHERE thread_id=? AND channel='email' "
        "AND COALESCE(origin_id, id)>? AND state IN ('queued','retrying','sending','sent')",
        (thread_id, place),
    ):
        covered.update(recipients_of(target) or ())
    return covered


def superseded_by_newer(db: sqlite3.Connection, outbox_id: int) -> bool:
    """For a message going back to the queue: whether newer messages of its thread (queued,
    in flight or sent) go to all its recipients. If they cover only some, it is narrowed
    to the others."""
    row = db.execute(
        "SELECT channel, thread_id, target, supersede_key, COALESCE(origin_id, id) "
        "FROM outbox WHERE id=?",
        (outbox_id,),
    ).fetchone()
    if row is None:
        return False
    channel, thread_id, target, key, place = row
    if not by_recipient(channel, thread_id):
        if key is None:
            return False
        newer = db.execute(
            "SELECT 1 FROM outbox WHERE supersede_key=? AND id>? AND state IN "
            "('queued','retrying','sending','sent') LIMIT 1",
            (key, outbox_id),
        ).fetchone()
        return newer is not None
    old = recipients_of(target)
    if old is None:
        return False
    covered = newer_recipients(db, thread_id, place)
    rest = [r for r in old if r not in covered]
    if not rest:
        return True
    if len(rest) < len(old):
        _narrow(db, outbox_id, thread_id, rest)
    return False


def _narrow(db: sqlite3.Connection, outbox_id: int, thread_id: int, rest: list[str]) -> None:
    db.execute(
        "UPDATE outbox SET target=?, supersede_key=? WHERE id=?",
        (json.dumps(rest), email_key(thread_id, rest), outbox_id),
    )
