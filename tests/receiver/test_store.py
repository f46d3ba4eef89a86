from __future__ import annotations

import asyncio
import json
import random
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from receiver.errors import SchemaTooNewError, StoreError
from receiver.schema import SCHEMA_VERSION
from receiver.store import (
    AlertRecord,
    AttemptRecord,
    DispatchPlan,
    IngestItem,
    NewMessage,
    Store,
    Thread,
)
from receiver.store_async import AsyncStore
from receiver.store_ingest import rows_per_statement


def item(group: str = "g", key: str = "k", at: float = 1000.0) -> IngestItem:
    return IngestItem(at, "rcv", group, "firing", key, "{}", dedup_window=120.0)


def msg(supersede: str | None = "t1", priority: int = 0, payload: bytes = b"x") -> NewMessage:
    return NewMessage(
        channel="email",
        target='["a@example.com"]',
        kind="alert",
        priority=priority,
        payload=payload,
        received_at=1.0,
        supersede_key=supersede,
    )


def test_duplicates_within_window_by_group(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.db")
    r = s.ingest_batch(
        [
            item(at=1000),
            item(at=1060),
            item(key="k2", at=1070),
            item(at=1080),
            item(at=1300),
            item(group="h", at=1301),
        ]
    )
    assert [x.duplicate for x in r] == [False, True, False, False, False, False]
    # Duplicates are recorded with a reason, not dropped.
    assert len(s.pending_notifications()) == 5


def test_a_batch_stores_what_one_at_a_time_would(tmp_path: Path) -> None:
    # Groups and keys repeating at random, so batches hold duplicates of their own items.
    rng = random.Random(7)
    items = [
        item(group=f"g{rng.randrange(40)}", key=f"k{rng.randrange(3)}", at=1000 + i)
        for i in range(1300)
    ]
    together, alone = Store(tmp_path / "a.db"), Store(tmp_path / "b.db")
    batch = together.ingest_batch(items)
    single = [alone.ingest_batch([it])[0] for it in items]
    assert [r.duplicate for r in batch] == [r.duplicate for r in single]
    assert 0 < sum(r.duplicate for r in batch) < len(items)

    def stored(s: Store) -> list[tuple[object, ...]]:
        return s._db.execute(
            "SELECT id, group_key, dedup_key, received_at, state FROM notifications ORDER BY id"
        ).fetchall()

    assert stored(together) == stored(alone)
    assert [r.notification_id for r in batch] == [row[0] for row in stored(together)]
    last = "SELECT * FROM group_last ORDER BY receiver, group_key"
    assert together._db.execute(last).fetchall() == alone._db.execute(last).fetchall()


def test_schema_version_and_refusing_newer(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    Store(path).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(SchemaTooNewError, match="newer than this alertmail supports"):
        Store(path)


def test_claim_orders_by_priority_and_supersede(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.db")
    s.enqueue([msg("t1", 2, b"old"), msg("t2", 2, b"warn")], now=10)
    s.enqueue([msg("t1", 2, b"new"), msg(None, 0, b"crit")], now=11)
    rows = s.claim_due("email", now=20, limit=10)
    assert [r.payload for r in rows] == [b"crit", b"warn", b"new"]
    states = {r.payload: r.state for r in s.list_outbox()}
    assert states[b"old"] == "superseded"
    assert all(states[p] == "sending" for p in (b"crit", b"warn", b"new"))
    # Nothing more is due while they are being sent.
    assert s.claim_due("email", now=30, limit=10) == []


def test_crash_recovery_and_attempt_history(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    s = Store(path)
    (oid,) = s.enqueue([msg()], now=1)
    s.claim_due("email", now=2, limit=1)
    s.close()
    s = Store(path)  # "restart": the message caught mid-send is queued again
    assert s.recover_sending() == 1
    (row,) = s.claim_due("email", now=3, limit=1)
    s.finish_attempt(
        row.id,
        4,
        "retrying",
        [AttemptRecord("h:25", False, "connect", None, "refused", 0.1)],
        error="refused",
        next_attempt_at=100,
    )
    assert s.claim_due("email", now=50, limit=1) == []
    assert s.next_due_at("email") == 100
    (row,) = s.claim_due("email", now=100, limit=1)
    s.finish_attempt(
        row.id,
        101,
        "sent",
        [AttemptRecord("h:25", True, "data", 250, "ok", 0.1)],
        server="h:25",
        reply="250 ok",
    )
    done = s.get_outbox(oid)
    assert done is not None and done.state == "sent" and done.attempts == 2
    assert done.last_error == "refused" and done.reply == "250 ok"
    assert [a.stage for _, a in s.attempts_of(oid)] == ["connect", "data"]


def test_requeue_drop_and_prune(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.db")
    a, b = s.enqueue([msg(None), msg(None)], now=1)
    for row in s.claim_due("email", 2, 2):
        s.finish_attempt(row.id, 3, "dead", [], reason="550")
    assert s.requeue(5, dead=True) == 2
    assert s.drop(a, 6) == 1
    assert {r.id: r.state for r in s.list_outbox()} == {a: "dead", b: "queued"}
    assert s.prune(before=10) >= 1
    assert [r.id for r in s.list_outbox()] == [b]


def test_migration_backs_up_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import receiver.store as store_mod

    path = tmp_path / "a.db"
    s = Store(path)
    s.enqueue([msg()], now=1)
    s.close()
    v2 = "ALTER TABLE outbox ADD COLUMN note TEXT"
    monkeypatch.setattr(store_mod, "MIGRATIONS", (*store_mod.MIGRATIONS, v2))
    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    upgraded = Store(path)
    assert upgraded.schema_version == SCHEMA_VERSION + 1
    assert len(upgraded.list_outbox()) == 1  # data kept
    backup = tmp_path / f"a.db.v{SCHEMA_VERSION}.bak"
    old = sqlite3.connect(backup)
    assert old.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert old.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 1
    old.close()


async def test_concurrent_ingests_share_commits(tmp_path: Path) -> None:
    store = await AsyncStore.open(tmp_path / "a.db")
    calls = 0
    original = store.store.ingest_batch

    def counting(items: list[IngestItem]) -> object:
        nonlocal calls
        calls += 1
        return original(items)

    store.store.ingest_batch = counting  # type: ignore[method-assign]
    results = await asyncio.gather(*(store.ingest(item(group=f"g{i}")) for i in range(200)))
    assert len({r.notification_id for r in results}) == 200
    assert 0 < calls < 200  # group commit: fewer transactions than requests
    await store.close()


def test_failed_send_superseded_by_newer_message_queued_meanwhile(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.db")
    (old,) = s.enqueue([msg("t1", payload=b"old")], now=1)
    s.claim_due("email", now=2, limit=1)  # being sent: a newer state cannot supersede it yet
    (new,) = s.enqueue([msg("t1", payload=b"new")], now=3)
    assert s.finish_attempt(old, 4, "retrying", [], error="421", next_attempt_at=9) == (
        "superseded"
    )
    states = {r.id: r.state for r in s.list_outbox()}
    assert states == {old: "superseded", new: "queued"}
    # Without a newer message, a failure stays a retry.
    (other,) = s.enqueue([msg("t2")], now=5)
    s.claim_due("email", now=6, limit=5)
    assert s.finish_attempt(other, 7, "retrying", [], error="421", next_attempt_at=9) == (
        "retrying"
    )


def test_bookkeeping_commits_skip_fsync_and_restore_full_sync(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.db")
    synchronous = lambda: s._db.execute("PRAGMA synchronous").fetchone()[0]  # noqa: E731
    assert synchronous() == 2  # FULL: an ingest's commit is on disk before the 200
    with s._tx(durable=False) as db:
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL: no fsync
    assert synchronous() == 2
    with pytest.raises(RuntimeError), s._tx(durable=False):
        raise RuntimeError("a bug mid-transaction")
    assert synchronous() == 2
    assert not s._db.in_transaction
    s.open_threads([("route", "group")], now=1.0, max_age=60.0)
    assert synchronous() == 2


async def test_a_failing_commit_callback_does_not_strand_the_batch(tmp_path: Path) -> None:
    store = await AsyncStore.open(tmp_path / "a.db")
    seen: list[int] = []

    def callback(result: object) -> None:
        raise RuntimeError("a bug in a callback")

    async def ingest(i: int) -> int:
        on_stored = callback if i == 0 else (lambda r: seen.append(r.notification_id))
        return (await store.ingest(item(group=f"g{i}"), on_stored)).notification_id

    ids = await asyncio.wait_for(asyncio.gather(*(ingest(i) for i in range(20))), 5.0)
    await store.close()
    assert len(set(ids)) == 20  # every caller got its answer, the first one's included
    assert sorted(seen) == sorted(ids[1:])


def _thread_message(thread_id: int, message_id: str, payload: bytes, **kw: Any) -> NewMessage:
    return NewMessage(
        channel="email",
        target='["a@example.com"]',
        kind="alert",
        priority=0,
        payload=payload,
        received_at=1.0,
        supersede_key=f'{thread_id}:email:["a@example.com"]',
        thread_id=thread_id,
        message_id=message_id,
        subject="s",
        **kw,
    )


def _open(s: Store) -> Thread:
    return s.open_threads([("route", "g")], now=10, max_age=3600)[("route", "g")]


def _queue_root(s: Store) -> Thread:
    thread = _open(s)
    plan = DispatchPlan(1, messages=[_thread_message(thread.id, "<root>", b"root")])
    plan.thread_roots.append((thread.id, "s", "<root>"))
    s.commit_dispatch_many([plan], now=10)
    return thread


def _claim_payloads(s: Store, now: float) -> dict[str | None, bytes]:
    return {r.message_id: r.payload for r in s.claim_due("email", now=now, limit=10)}


def _new_message(thread: Thread) -> NewMessage:
    # As the dispatcher queues it while the thread's first message is undelivered.
    return _thread_message(
        thread.id, "<new>", b"as root", replaces_root="<root>", reply_payload=b"as reply"
    )


def test_message_superseding_an_undelivered_root_becomes_the_root(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.db")
    thread = _queue_root(s)
    (root_row,) = s.claim_due("email", now=11, limit=1)
    s.finish_attempt(root_row.id, 12, "retrying", [], error="421", next_attempt_at=99)
    seen = _open(s)
    assert seen.root_message_id == "<root>" and not seen.root_delivered
    s.commit_dispatch_many([DispatchPlan(2, messages=[_new_message(thread)])], now=13)
    assert _claim_payloads(s, now=14) == {"<new>": b"as root"}
    assert {r.message_id: r.state for r in s.list_outbox()} == {
        "<root>": "superseded",
        "<new>": "sending",
    }
    assert _open(s).root_message_id == "<new>"
    (new_row,) = [r for r in s.list_outbox() if r.message_id == "<new>"]
    s.finish_attempt(new_row.id, 15, "sent", [], server="mx")
    assert _open(s).root_delivered


def test_root_failing_while_the_next_message_is_queued_is_replaced(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.db")
    thread = _queue_root(s)
    (root_row,) = s.claim_due("email", now=11, limit=1)  # the first attempt is under way
    s.commit_dispatch_many([DispatchPlan(2, messages=[_new_message(thread)])], now=12)
    assert _claim_payloads(s, now=13) == {}  # not beside an earlier message of its thread
    assert s.finish_attempt(root_row.id, 14, "retrying", [], error="421") == "superseded"
    assert _claim_payloads(s, now=15) == {"<new>": b"as root"}
    assert _open(s).root_message_id == "<new>"


def test_root_sent_before_the_next_message_keeps_its_replies(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.db")
    thread = _queue_root(s)
    (root_row,) = s.claim_due("email", now=11, limit=1)
    s.commit_dispatch_many([DispatchPlan(2, messages=[_new_message(thread)])], now=12)
    s.finish_attempt(root_row.id, 13, "sent", [], server="mx")
    assert _claim_payloads(s, now=14) == {"<new>": b"as reply"}
    after = _open(s)
    assert after.root_message_id == "<root>" and after.root_delivered
    # Decided once: a retry sends the same bytes.
    (new_row,) = [r for r in s.list_outbox() if r.message_id == "<new>"]
    s.finish_attempt(new_row.id, 15, "retrying", [], error="421", next_attempt_at=16)
    assert _claim_payloads(s, now=17) == {"<new>": b"as reply"}


def test_thread_knows_who_its_first_message_reached(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.db")
    assert _open(s).root_recipients is None  # no first message yet
    thread = _open(s)
    root = replace(
        _thread_message(thread.id, "<root>", b"root"),
        target='["a@example.com", "b@example.com"]',
        supersede_key=f"{thread.id}:email:ab",
    )
    plan = DispatchPlan(1, messages=[root])
    plan.thread_roots.append((thread.id, "s", "<root>"))
    s.commit_dispatch_many([plan], now=10)
    queued = _open(s)
    assert not queued.root_delivered and queued.root_recipients is None
    (row,) = s.claim_due("email", now=11, limit=1)
    results = {"a@example.com": "250 accepted", "b@example.com": "550 5.1.1 user unknown"}
    s.finish_attempt(row.id, 12, "sent", [], server="mx", recipients_result=json.dumps(results))
    sent = _open(s)
    assert sent.root_delivered and sent.root_recipients == {"a@example.com"}


def test_a_root_resent_to_deferred_recipients_has_reached_them_too(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.db")
    thread = _open(s)
    both = '["a@example.com", "b@example.com"]'
    root = replace(_thread_message(thread.id, "<root>", b"root"), target=both)
    plan = DispatchPlan(1, messages=[root])
    plan.thread_roots.append((thread.id, "s", "<root>"))
    s.commit_dispatch_many([plan], now=10)
    (row,) = s.claim_due("email", now=11, limit=1)
    results = json.dumps({"a@example.com": "250 accepted", "b@example.com": "450 busy"})
    retry = (["b@example.com"], 12.0, "450 busy")
    s.finish_attempt(row.id, 11, "sent", [], recipients_result=results, retry_for=retry)
    assert _open(s).root_recipients == {"a@example.com"}
    (copy,) = s.claim_due("email", now=12, limit=1)
    s.finish_attempt(copy.id, 13, "sent", [], recipients_result='{"b@example.com": "250 ok"}')
    assert _open(s).root_recipients == {"a@example.com", "b@example.com"}


B_ADDR = "b@example.com"


def test_reply_planned_while_the_root_was_in_flight_checks_whom_it_reached(
    tmp_path: Path,
) -> None:
    s = Store(tmp_path / "a.db")
    thread = _queue_root(s)  # to a@example.com
    (root_row,) = s.claim_due("email", now=11, limit=1)
    to_both = '["a@example.com", "b@example.com"]'
    later = [
        replace(_new_message(thread), target=to_both, supersede_key="k-both"),
        replace(_new_message(thread), message_id="<a>", reply_payload=b"reply to a"),
    ]
    s.commit_dispatch_many([DispatchPlan(2, messages=later)], now=12)
    s.finish_attempt(root_row.id, 13, "sent", [], server="mx")
    # b never got the first message: its copy goes out without In-Reply-To; a's replies.
    # (<a> took a from <new>, and a thread's messages are claimed one at a time.)
    (new,) = s.claim_due("email", now=14, limit=10)
    assert (new.message_id, new.payload, new.recipients) == ("<new>", b"as root", [B_ADDR])
    s.finish_attempt(new.id, 15, "sent", [], server="mx")
    assert _claim_payloads(s, now=16) == {"<a>": b"reply to a"}
    assert _open(s).root_message_id == "<root>"  # the sent first message stays the root


def test_a_dead_root_refused_by_every_recipient_leaves_the_thread_unrooted(
    tmp_path: Path,
) -> None:
    s = Store(tmp_path / "a.db")
    _queue_root(s)
    (row,) = s.claim_due("email", now=11, limit=1)
    refused = json.dumps({"a@example.com": "550 5.1.1 user unknown"})
    s.finish_attempt(row.id, 12, "dead", [], reason="refused", recipients_result=refused)
    thread = _open(s)
    # So the next message is rendered both ways and becomes the first one it is sent.
    assert not thread.root_delivered and thread.root_recipients is None


def test_pending_rows_skip_payloads_the_dispatcher_holds_parsed(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.db")
    ids = [r.notification_id for r in s.ingest_batch([item(f"g{i}") for i in range(3)])]
    rows = s.pending_notifications(10, parsed={ids[1]})
    assert [r[0] for r in rows] == ids
    assert [r[3] is None for r in rows] == [False, True, False]
    assert rows[0][3] == rows[2][3] == "{}"


def test_dispatch_records_history_in_order_across_statements(tmp_path: Path) -> None:
    # The same alert in many plans of one transaction: the last plan's state wins.
    s = Store(tmp_path / "a.db")
    ids = [r.notification_id for r in s.ingest_batch([item(f"g{i}") for i in range(350)])]

    def record(fp: str, status: str) -> AlertRecord:
        return AlertRecord(
            fp, "2026-12-03T10:00:00+00:00", "A", "warning", status, "{}", "{}", None
        )

    plans = [
        DispatchPlan(
            nid,
            alerts=[
                record("shared", "firing" if i < 349 else "resolved"),
                record(f"own{i}", "firing"),
            ],
            reason=None if i % 2 else "no route matched",
        )
        for i, nid in enumerate(ids)
    ]
    s.commit_dispatch_many(plans, now=50)
    rows = s._db.execute("SELECT fingerprint, status, last_notification_id FROM alerts").fetchall()
    assert len(rows) == 351
    assert ("shared", "resolved", ids[-1]) in rows  # the last plan's state wins
    states = s._db.execute("SELECT id, state, reason FROM notifications ORDER BY id").fetchall()
    assert states == [
        (nid, "processed", None if i % 2 else "no route matched") for i, nid in enumerate(ids)
    ]
    assert s.pending_notifications() == []


def _record(fp: str, status: str) -> AlertRecord:
    return AlertRecord(fp, "2026-12-03T10:00:00+00:00", "A", "warning", status, "{}", "{}", None)


def test_a_settled_plan_is_written_with_its_notification(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.db")
    digest = DispatchPlan(0, alerts=[_record("fp1", "firing")], digest_entries=[("d", 3600.0)])
    beat = DispatchPlan(0, kv=[("deadman_last_seen", "1001.0")], reason="heartbeat")
    items = [
        replace(item("g1"), settled=digest),
        replace(item("g2", at=1001), settled=beat),
        item("g3", at=1002),  # a route sends it now: left pending for the dispatcher
    ]
    ids = [r.notification_id for r in s.ingest_batch(items)]
    states = s._db.execute("SELECT id, state, reason FROM notifications ORDER BY id").fetchall()
    assert states == [
        (ids[0], "processed", None),
        (ids[1], "processed", "heartbeat"),
        (ids[2], "pending", None),
    ]
    assert [r[0] for r in s.pending_notifications()] == [ids[2]]
    entries = s._db.execute("SELECT route, bucket, notification_id FROM digest_entries")
    assert entries.fetchall() == [("d", 3600.0, ids[0])]
    assert s.kv_get("deadman_last_seen") == "1001.0"
    history = s._db.execute("SELECT fingerprint, status, last_notification_id FROM alerts")
    assert history.fetchall() == [("fp1", "firing", ids[0])]
    # A duplicate's plan is not applied: no second digest entry for the same alerts.
    dup = s.ingest_batch(
        [replace(item("g1", at=1010), settled=DispatchPlan(0, digest_entries=[("d", 3600.0)]))]
    )
    assert dup[0].duplicate
    assert s._db.execute("SELECT COUNT(*) FROM digest_entries").fetchone()[0] == 1


def test_history_keeps_the_newest_notifications_state_whatever_commits_last(
    tmp_path: Path,
) -> None:
    # An older notification still being rendered commits its plan after a newer one that was
    # settled at ingest: the alert keeps the newer (resolved) state.
    s = Store(tmp_path / "a.db")
    older, newer = (r.notification_id for r in s.ingest_batch([item("g1"), item("g2", at=1001)]))
    s.commit_dispatch_many([DispatchPlan(newer, alerts=[_record("fp", "resolved")])], now=20)
    s.commit_dispatch_many([DispatchPlan(older, alerts=[_record("fp", "firing")])], now=19)
    history = s._db.execute(
        "SELECT status, last_notification_id, first_seen, last_seen FROM alerts"
    ).fetchall()
    assert history == [("resolved", newer, 19, 20)]  # seen first by the older one


def test_duplicates_are_found_after_a_restart_and_after_pruning(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    s = Store(path)
    s.ingest_batch([item("g1", at=1000), item("g2", at=1000)])
    s.close()
    s = Store(path)  # nothing in memory: the last notification of each group is read back
    again = s.ingest_batch([item("g1", at=1050), item("g2", key="other", at=1050)])
    assert [r.duplicate for r in again] == [True, False]
    s.prune(before=1040)  # g1's last accepted notification (at 1000) is gone
    assert s.ingest_batch([item("g1", at=1060)])[0].duplicate is False


def test_duplicates_are_found_with_more_groups_than_memory_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import receiver.store_ingest as ingest_mod

    monkeypatch.setattr(ingest_mod, "GROUP_CACHE", 3)
    path = tmp_path / "a.db"
    s = Store(path)
    s.ingest_batch([item(f"g{i}", at=1000) for i in range(5)])  # more than memory holds
    again = s.ingest_batch([item(f"g{i}", at=1010) for i in range(5)])
    assert all(r.duplicate for r in again)  # looked up in the store, not in memory
    s.close()
    s = Store(path)  # too many groups to load at start: looked up as well
    assert all(r.duplicate for r in s.ingest_batch([item("g4", at=1020), item("g0", at=1020)]))
    assert not s.ingest_batch([item("g9", at=1020)])[0].duplicate


def test_ids_taken_by_another_writer_are_skipped_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    s = Store(path)
    (first,) = s.ingest_batch([item("g1")])
    other = sqlite3.connect(path)  # e.g. a restored row, written behind the receiver's back
    other.execute(
        "INSERT INTO notifications (id, received_at, receiver, group_key, status, dedup_key, "
        "payload) VALUES (?, 0, 'r', 'x', 'firing', 'k', '{}')",
        (first.notification_id + 1,),
    )
    other.commit()
    other.close()
    second, third = s.ingest_batch([item("g2"), item("g3")])
    assert second.notification_id == first.notification_id + 2
    assert third.notification_id == first.notification_id + 3
    rows = s._db.execute("SELECT id, group_key FROM notifications ORDER BY id").fetchall()
    assert [g for _, g in rows] == ["g1", "x", "g2", "g3"]
    # The same for a batch too big for one statement (written in a transaction).
    other = sqlite3.connect(path)
    other.execute(
        "INSERT INTO notifications (id, received_at, receiver, group_key, status, dedup_key, "
        "payload) VALUES (?, 0, 'r', 'y', 'firing', 'k', '{}')",
        (third.notification_id + 1,),
    )
    other.commit()
    other.close()
    big = s.ingest_batch([item(f"b{i}") for i in range(1100)])
    assert big[0].notification_id == third.notification_id + 2
    assert s._db.execute("SELECT COUNT(*) FROM notifications").fetchone()[0] == 1105


def test_a_sqlite_built_for_few_parameters_gets_smaller_statements(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.db")
    s._db.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)  # the old default
    s._rows_per_statement = rows_per_statement(s._db)
    assert s._rows_per_statement == 64
    plans = [
        DispatchPlan(0, alerts=[_record(f"fp{i}-{k}", "firing") for k in range(3)])
        for i in range(100)
    ]
    items = [replace(item(f"g{i}"), settled=plan) for i, plan in enumerate(plans)]
    results = s.ingest_batch(items)  # 400 rows: several statements, one transaction
    assert not any(r.duplicate for r in results)
    assert s._db.execute("SELECT COUNT(*) FROM alerts").fetchone()[0] == 300


def test_a_held_message_counts_as_queued_from_when_its_hold_ends(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.db")
    thread = _open(s)
    held = replace(_thread_message(thread.id, "<held>", b"x"), not_before=5000.0)
    s.commit_dispatch_many([DispatchPlan(1, messages=[held])], now=10)
    _, oldest = s.outbox_stats()
    # Not "stuck" for the hours of the hold, and its give-up clock starts when it is due.
    assert oldest["email"] == 5000.0
    (row,) = s.list_outbox()
    assert row.created_at == 5000.0 and s.next_due_at("email") == 5000.0


def test_unreadable_outbox_is_a_store_error(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.db")
    s._db.close()
    with pytest.raises(StoreError, match="cannot read the outbox"):
        s.next_due_at("email")


def test_released_messages_go_back_to_the_queue(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.db")
    _queue_root(s)
    (row,) = s.claim_due("email", now=11, limit=1)
    assert s.release([row.id]) == 1
    assert [r.state for r in s.list_outbox()] == ["queued"]
    assert s.release([]) == 0


def test_enqueue_sets_state_in_the_same_transaction(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.db")
    thread = _open(s)
    (outbox_id,) = s.enqueue([_thread_message(thread.id, "<m>", b"x")], 10, [("k", "v")])
    assert s.kv_get("k") == "v" and s.get_outbox(outbox_id) is not None
