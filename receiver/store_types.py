"""Plain data the store takes and returns."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple


@dataclass(frozen=True, slots=True)
class IngestItem:
    received_at: float
    receiver: str
    group_key: str
    status: str
    dedup_key: str
    payload: str
    dedup_window: float
    # The notification's whole dispatch plan when it needs no thread or rendering (digest
    # routes only, no route, the dead man's heartbeat): written in the ingest transaction,
    # unless the notification is a duplicate, so the dispatcher never sees it.
    settled: DispatchPlan | None = None


@dataclass(frozen=True, slots=True)
class IngestResult:
    notification_id: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class Thread:
    id: int
    route: str
    group_key: str
    opened_at: float
    subject: str | None
    root_message_id: str | None
    # Whether the root message has been sent: until then a new message of the thread is
    # rendered twice, as a reply and as the first message (chosen when it is claimed).
    root_delivered: bool = False
    # Who the sent root message reached: its recipients less those its server refused
    # (None while it is unsent, or when not known). Nobody else may get a reply to it.
    root_recipients: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class NewMessage:
    channel: str
    target: str
    kind: str
    priority: int
    payload: bytes
    received_at: float
    supersede_key: str | None = None
    thread_id: int | None = None
    notification_id: int | None = None
    message_id: str | None = None
    subject: str | None = None
    state: str = "queued"
    reason: str | None = None
    not_before: float | None = None  # quiet hours: held until then
    # The thread's first message was not delivered when this one was rendered: payload is
    # this message as the thread's new first message, reply_payload the same message as a
    # reply to replaces_root. The outbox sends the reply only if that root was sent.
    replaces_root: str | None = None
    reply_payload: bytes | None = None


@dataclass(slots=True)
class DispatchPlan:
    """Everything one notification turns into, written in one transaction."""

    notification_id: int
    messages: list[NewMessage] = field(default_factory=list)
    alerts: list[AlertRecord] = field(default_factory=list)
    thread_roots: list[tuple[int, str, str]] = field(default_factory=list)
    close_threads: list[int] = field(default_factory=list)
    digest_entries: list[tuple[str, float]] = field(default_factory=list)
    budget: list[str] = field(default_factory=list)
    folds: list[tuple[str, str, int]] = field(default_factory=list)
    kv: list[tuple[str, str]] = field(default_factory=list)
    reason: str | None = None


@dataclass(slots=True)
class Queued:
    ids: list[int]
    superseded: int

    def add(self, outbox_id: int, superseded: int) -> None:
        self.ids.append(outbox_id)
        self.superseded += superseded


class AlertRecord(NamedTuple):
    """One alert of a notification for the alert history. A named tuple: three or more
    are built for every webhook, and a frozen dataclass costs twice as much to build."""

    fingerprint: str
    starts_at: str
    alertname: str
    severity: str
    status: str
    labels: str
    annotations: str
    ends_at: str | None


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    channel: str
    target: str
    kind: str
    priority: int
    state: str
    message_id: str | None
    subject: str | None
    payload: bytes
    created_at: float
    received_at: float
    next_attempt_at: float
    attempts: int
    last_error: str | None
    server: str | None
    reply: str | None
    recipients_result: str | None
    finished_at: float | None
    reason: str | None
    thread_id: int | None
    notification_id: int | None

    @property
    def recipients(self) -> list[str]:
        if self.channel != "email":
            return [self.target]
        value = json.loads(self.target)
        return [str(v) for v in value]


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    server: str
    ok: bool
    stage: str
    code: int | None
    message: str
    elapsed: float


_OUTBOX_COLS = (
    "id, channel, target, kind, priority, state, message_id, subject, payload, created_at, "
    "received_at, next_attempt_at, attempts, last_error, server, reply, recipients_result, "
    "finished_at, reason, thread_id, notification_id"
)


def _outbox_row(r: Sequence[Any]) -> OutboxRow:
    values = list(r)
    values[8] = bytes(values[8])
    return OutboxRow(*values)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One delivery attempt's result, as finish_attempt takes it."""

    outbox_id: int
    now: float
    state: str
    attempts: Sequence[AttemptRecord]
    fields: dict[str, Any] = field(default_factory=dict)
