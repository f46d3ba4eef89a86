"""Superseding per thread and recipient, on a real SQLite file."""

from __future__ import annotations

import json
from pathlib import Path

from receiver.store import DispatchPlan, NewMessage, Store
from receiver.store_supersede import email_key

A, B = "a@example.com", "b@example.com"


def _email(thread_id: int, recipients: list[str], message_id: str) -> NewMessage:
    return NewMessage(
        channel="email",
        target=json.dumps(recipients),
        kind="alert",
        priority=0,
        payload=message_id.encode(),
        received_at=1.0,
        supersede_key=email_key(thread_id, recipients),
        thread_id=thread_id,
        message_id=message_id,
        subject="s",
    )


def _thread(s: Store) -> int:
    return s.open_threads([("route", "g")], now=10, max_age=3600)[("route", "g")].id


def _queue(s: Store, *messages: NewMessage, now: float = 10) -> int:
    """Queues ``messages`` in one plan; returns how many older messages they superseded."""
    return s.commit_dispatch_many([DispatchPlan(1, messages=list(messages))], now=now).superseded


def _rows(s: Store) -> dict[str | None, tuple[str, list[str]]]:
    return {r.message_id: (r.state, r.recipients) for r in s.list_outbox()}


def test_a_newer_message_takes_its_recipients_from_an_older_undelivered_one(
    tmp_path: Path,
) -> None:
    s = Store(tmp_path / "a.db")
    t = _thread(s)
    _queue(s, _email(t, [A, B], "<old>"))
    assert _queue(s, _email(t, [A], "<to-a>")) == 0
    # b still needs the old state: only a's copy is replaced.
    assert _rows(s)["<old>"] == ("queued", [B])
    assert _queue(s, _email(t, [B], "<to-b>")) == 1
    assert _rows(s) == {
        "<old>": ("superseded", [B]),
        "<to-a>": ("queued", [A]),
        "<to-b>": ("queued", [B]),
    }


def test_a_newer_message_to_more_recipients_supersedes_an_older_one(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.db")
    t = _thread(s)
    _queue(s, _email(t, [A], "<old>"))
    assert _queue(s, _email(t, [A, B], "<new>")) == 1
    assert _rows(s)["<old>"] == ("superseded", [A])


def test_messages_of_other_threads_and_sent_ones_are_left_alone(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.db")
    t = _thread(s)
    other = s.open_threads([("route", "h")], now=10, max_age=3600)[("route", "h")].id
    _queue(s, _email(t, [A], "<sent>"), _email(other, [A], "<other>"))
    sent = next(r for r in s.list_outbox() if r.message_id == "<sent>")
    s.finish_attempt(sent.id, 11, "sent", [], server="mx")
    _queue(s, _email(t, [A], "<new>"), now=12)
    assert _rows(s) == {
        "<sent>": ("sent", [A]),
        "<other>": ("queued", [A]),
        "<new>": ("queued", [A]),
    }


def test_a_threads_messages_are_sent_one_at_a_time_whoever_they_go_to(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.db")
    t = _thread(s)
    _queue(s, _email(t, [A, B], "<old>"))
    (old,) = s.claim_due("email", now=11, limit=10)
    _queue(s, _email(t, [A], "<to-a>"), now=12)
    assert s.claim_due("email", now=13, limit=10) == []  # <old> is being sent
    # It fails; a newer message goes to a, so its retry goes to b only.
    assert s.finish_attempt(old.id, 14, "retrying", [], error="421", next_attempt_at=99) == (
        "retrying"
    )
    assert _rows(s)["<old>"] == ("retrying", [B])
    assert [r.message_id for r in s.claim_due("email", now=15, limit=10)] == ["<to-a>"]


def test_a_failed_message_whose_recipients_newer_ones_cover_is_superseded(
    tmp_path: Path,
) -> None:
    s = Store(tmp_path / "a.db")
    t = _thread(s)
    _queue(s, _email(t, [A, B], "<old>"))
    (old,) = s.claim_due("email", now=11, limit=10)
    _queue(s, _email(t, [A], "<to-a>"), _email(t, [B], "<to-b>"), now=12)
    assert s.finish_attempt(old.id, 13, "retrying", [], error="421") == "superseded"


def test_slack_messages_supersede_by_their_key(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.db")
    t = _thread(s)

    def slack(message_id: str, target: str) -> NewMessage:
        return NewMessage(
            channel="slack",
            target=target,
            kind="alert",
            priority=0,
            payload=b"{}",
            received_at=1.0,
            supersede_key=f"{t}:slack:{target}",
            thread_id=t,
            message_id=message_id,
        )

    _queue(s, slack("<ops-1>", "ops"), slack("<dev-1>", "dev"))
    # Slack targets of one thread do not wait for each other.
    claimed = s.claim_due("slack", now=10, limit=10)
    assert len(claimed) == 2
    s.release([r.id for r in claimed])  # back to the queue for the superseding below
    assert _queue(s, slack("<ops-2>", "ops")) == 1
    assert {r.message_id: r.state for r in s.list_outbox()} == {
        "<ops-1>": "superseded",
        "<dev-1>": "queued",
        "<ops-2>": "queued",
    }


def test_a_deferred_recipient_a_newer_message_goes_to_gets_that_one(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.db")
    t = _thread(s)
    _queue(s, _email(t, [A, B], "<old>"))
    (old,) = s.claim_due("email", now=11, limit=10)
    _queue(s, _email(t, [A, B], "<new>"), now=12)  # <old> is being sent: left alone
    retry = ([B], 20.0, "450 busy")
    s.finish_attempt(old.id, 13, "sent", [], server="mx", retry_for=retry)
    # b was deferred, but <new> goes to b: no stale copy of <old> for b after it.
    assert _rows(s) == {"<old>": ("sent", [A, B]), "<new>": ("queued", [A, B])}


def test_a_deferred_copy_keeps_its_original_place_in_the_thread(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.db")
    t = _thread(s)
    _queue(s, _email(t, [A, B], "<old>"))
    (old,) = s.claim_due("email", now=11, limit=10)
    _queue(s, _email(t, [A], "<new>"), now=12)
    s.finish_attempt(old.id, 13, "sent", [], server="mx", retry_for=([B], 20.0, "450 busy"))
    copy = next(r for r in s.list_outbox() if r.state == "retrying")
    assert (copy.message_id, copy.recipients) == ("<old>", [B])
    (new,) = s.claim_due("email", now=14, limit=10)
    assert new.message_id == "<new>"
    # <new> fails: the copy of <old> for b is older than it, so <new> keeps a.
    assert s.finish_attempt(new.id, 15, "retrying", [], error="421") == "retrying"
    assert _rows(s)["<new>"] == ("retrying", [A])


def test_one_claim_takes_one_message_of_a_thread(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.db")
    t = _thread(s)
    _queue(s, _email(t, [A], "<first>"), _email(t, [B], "<second>"))
    assert [r.message_id for r in s.claim_due("email", now=11, limit=10)] == ["<first>"]
    assert s.claim_due("email", now=12, limit=10) == []  # <first> is being sent
