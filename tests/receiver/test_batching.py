from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from receiver.batching import bucket_start, build_digest, quiet_until, split_by_budget
from receiver.config import QuietHours
from receiver.model import parse_notification
from tests.conftest import load_fixture

BERLIN = ZoneInfo("Europe/Berlin")


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN).timestamp()


def test_buckets_align_to_local_clock() -> None:
    assert bucket_start(ts("2026-12-03 10:59:59"), 3600, BERLIN) == ts("2026-12-03 10:00:00")
    assert bucket_start(ts("2026-12-03 11:00:00"), 3600, BERLIN) == ts("2026-12-03 11:00:00")
    assert bucket_start(ts("2026-12-03 10:17:00"), 900, BERLIN) == ts("2026-12-03 10:15:00")
    assert bucket_start(ts("2026-12-03 23:30:00"), 86400, BERLIN) == ts("2026-12-03 00:00:00")


@pytest.mark.parametrize(
    ("now", "until"),
    [
        ("2026-12-03 21:59:00", None),
        ("2026-12-03 22:00:00", "2026-12-04 07:00:00"),
        ("2026-12-04 03:00:00", "2026-12-04 07:00:00"),
        ("2026-12-04 07:00:00", None),
        ("2026-12-04 12:00:00", None),
    ],
)
def test_quiet_hours_across_midnight(now: str, until: str | None) -> None:
    quiet = QuietHours.model_validate({"from": "22:00", "to": "07:00"})
    expected = ts(until) if until else None
    assert quiet_until(ts(now), quiet, BERLIN) == expected


def test_quiet_hours_same_day() -> None:
    quiet = QuietHours.model_validate({"from": "12:00", "to": "13:30"})
    assert quiet_until(ts("2026-12-03 12:10:00"), quiet, BERLIN) == ts("2026-12-03 13:30:00")
    assert quiet_until(ts("2026-12-03 13:30:00"), quiet, BERLIN) is None
    assert quiet_until(ts("2026-12-03 11:00:00"), None, BERLIN) is None


def test_flood_budget_split() -> None:
    used = {"a@x": 10, "b@x": 3}
    assert split_by_budget(["a@x", "b@x", "c@x"], used, 10, False) == (["b@x", "c@x"], ["a@x"])
    # Resolved-only notifications never use up (or get stopped by) the budget.
    assert split_by_budget(["a@x"], used, 10, True) == (["a@x"], [])


def test_digest_groups_latest_state_and_flaps() -> None:
    firing = parse_notification(load_fixture("firing_group_3_alerts.json"))
    mixed = parse_notification(load_fixture("mixed_group_one_resolved.json"))
    warning = parse_notification(load_fixture("warning_route_firing.json"))
    resolved = parse_notification(load_fixture("resolved_single.json"))
    start = datetime.fromisoformat("2026-12-03T16:00:00+00:00").timestamp()
    d = build_digest(
        [(start + 10, firing), (start + 20, mixed), (start + 30, warning), (start + 40, resolved)],
        start,
        start + 3600,
    )
    # The HighErrorRate group: its latest notification is the resolved one.
    assert d.counts["groups_firing"] == 1  # the warning group
    assert d.groups_firing[0].severity == "warning"
    assert d.counts["groups_resolved"] == 1
    assert d.groups_resolved[0].notifications == 3
    # The api alert started at 16:28 and resolved in the window: fired and resolved.
    assert {a.labels["service"] for a in d.flapped} == {"api"}
    assert d.notifications == 4
