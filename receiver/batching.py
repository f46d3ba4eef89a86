"""Digests, quiet hours and flood budgets: pure functions over plain data, clock injected.

A digest window is aligned to the clock in the configured time zone (an hourly digest
covers 10:00-11:00), so restarts and replicas agree on which window a notification is in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from receiver.config import QuietHours
from receiver.model import Alert, Notification, severity_rank


def bucket_start(now: float, every: float, tz: ZoneInfo) -> float:
    """Start of the window of length ``every`` that contains ``now``, aligned to local time."""
    offset = datetime.fromtimestamp(now, tz).utcoffset() or timedelta(0)
    local = now + offset.total_seconds()
    return local - (local % every) - offset.total_seconds()


def _parse_hhmm(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def quiet_until(now: float, quiet: QuietHours | None, tz: ZoneInfo) -> float | None:
    """End of the quiet period ``now`` falls in, or None outside quiet hours.

    A window may cross midnight (22:00-07:00). Equal from/to means no quiet hours.
    """
    if quiet is None:
        return None
    start, end = _parse_hhmm(quiet.from_), _parse_hhmm(quiet.to)
    if start == end:
        return None
    local = datetime.fromtimestamp(now, tz)
    t = local.time()
    if start < end:
        inside = start <= t < end
        end_day = local.date()
    else:
        inside = t >= start or t < end
        end_day = local.date() + timedelta(days=1) if t >= start else local.date()
    if not inside:
        return None
    return datetime.combine(end_day, end, tzinfo=tz).timestamp()


def is_urgent(n: Notification) -> bool:
    """Critical and firing: never held by quiet hours."""
    return bool(n.firing) and severity_rank(n.severity) == 0


def split_by_budget(
    recipients: Sequence[str], used: Mapping[str, int], max_emails: int, resolved_only: bool
) -> tuple[list[str], list[str]]:
    """(send now, fold into catch-up). Resolved-only notifications never use up the budget."""
    if resolved_only:
        return list(recipients), []
    now_ = [r for r in recipients if used.get(r, 0) < max_emails]
    return now_, [r for r in recipients if used.get(r, 0) >= max_emails]


@dataclass(frozen=True)
class GroupSummary:
    """The latest state of one alert group within a digest window."""

    group_key: str
    receiver: str
    title_labels: dict[str, str]
    severity: str
    firing: tuple[Alert, ...]
    resolved: tuple[Alert, ...]
    first_seen: float
    last_seen: float
    notifications: int
    external_url: str

    @property
    def is_firing(self) -> bool:
        return bool(self.firing)


@dataclass(frozen=True)
class Digest:
    start: float
    end: float
    groups_firing: tuple[GroupSummary, ...]
    groups_resolved: tuple[GroupSummary, ...]
    flapped: tuple[Alert, ...]  # fired and resolved within the window
    notifications: int
    counts: dict[str, int] = field(default_factory=dict)


def _group_order(g: GroupSummary) -> tuple[int, float]:
    return (severity_rank(g.severity), -g.last_seen)


def build_digest(items: Sequence[tuple[float, Notification]], start: float, end: float) -> Digest:
    """Summarise the notifications of one window: most severe and newest first."""
    latest: dict[tuple[str, str], tuple[float, Notification]] = {}
    first: dict[tuple[str, str], float] = {}
    count: dict[tuple[str, str], int] = {}
    flapped: dict[tuple[str, str], Alert] = {}
    for received_at, n in sorted(items, key=lambda it: it[0]):
        key = (n.receiver, n.group_key)
        latest[key] = (received_at, n)
        first.setdefault(key, received_at)
        count[key] = count.get(key, 0) + 1
        for a in n.resolved:
            if a.starts_at and start <= a.starts_at.timestamp() < end:
                flapped[(a.fingerprint, a.starts_at.isoformat())] = a
    groups = [
        GroupSummary(
            group_key=n.group_key,
            receiver=n.receiver,
            title_labels=dict(n.group_labels),
            severity=n.severity,
            firing=tuple(sorted(n.firing, key=Alert.sort_key)),
            resolved=tuple(sorted(n.resolved, key=Alert.sort_key)),
            first_seen=first[key],
            last_seen=received_at,
            notifications=count[key],
            external_url=n.external_url,
        )
        for key, (received_at, n) in latest.items()
    ]
    firing = tuple(sorted((g for g in groups if g.is_firing), key=_group_order))
    resolved = tuple(sorted((g for g in groups if not g.is_firing), key=_group_order))
    flaps = tuple(sorted(flapped.values(), key=lambda a: (severity_rank(a.severity), a.name)))
    return Digest(
        start=start,
        end=end,
        groups_firing=firing,
        groups_resolved=resolved,
        flapped=flaps,
        notifications=len(items),
        counts={
            "groups_firing": len(firing),
            "groups_resolved": len(resolved),
            "alerts_firing": sum(len(g.firing) for g in firing),
            "flapped": len(flaps),
        },
    )
