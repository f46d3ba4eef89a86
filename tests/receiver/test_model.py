from __future__ import annotations

import copy
import hashlib
import json
import random
from datetime import UTC, datetime

import pytest

from receiver.errors import PayloadError
from receiver.model import notification_to_json, parse_notification, parse_timestamp
from tests.conftest import load_fixture


def test_parses_every_fixture_field() -> None:
    n = parse_notification(load_fixture("mixed_group_one_resolved.json"))
    assert n.receiver == "webhook-default"
    assert n.group_key == '{}:{alertname="HighErrorRate"}'
    assert n.status == "firing"
    assert [a.status for a in n.alerts] == ["resolved", "firing", "firing"]
    assert n.alerts[1].ends_at is None  # Go zero time
    assert n.alerts[0].ends_at == datetime(2026, 12, 3, 16, 28, 49, 865000, tzinfo=UTC)
    assert n.external_url == "http://127.0.0.1:19093"
    assert n.common_annotations == {}
    assert n.truncated_alerts == 0
    assert len(n.firing) == 2 and len(n.resolved) == 1


def test_nanosecond_timestamps_and_offsets() -> None:
    ts = parse_timestamp("2026-12-03T16:42:53.744746184Z", "x")
    assert ts == datetime(2026, 12, 3, 16, 42, 53, 744746, tzinfo=UTC)
    assert parse_timestamp("2026-12-03T18:00:00+02:00", "x") == datetime(
        2026, 12, 3, 16, 0, tzinfo=UTC
    )
    assert parse_timestamp("0001-01-01T00:00:00Z", "x") is None
    # RFC 3339 allows lower case; a far-future end in a negative offset is past datetime.max
    assert parse_timestamp("2026-12-03t16:00:00z", "x") == datetime(2026, 12, 3, 16, tzinfo=UTC)
    assert parse_timestamp("9999-12-31T23:59:59-01:00", "x") == datetime.max.replace(tzinfo=UTC)
    with pytest.raises(PayloadError, match="not an RFC 3339"):
        parse_timestamp("yesterday", "alerts[0].startsAt")


def test_extra_fields_accepted_and_kept() -> None:
    raw = load_fixture("firing_single.json")
    raw["notification_reason"] = "new_alert"
    raw["alerts"][0]["someNewField"] = 1
    n = parse_notification(raw)
    assert n.extra == {"notification_reason": "new_alert"}
    assert notification_to_json(n)["notification_reason"] == "new_alert"


def test_missing_optional_fields_tolerated() -> None:
    n = parse_notification({"alerts": [{"labels": {"alertname": "X"}}]})
    assert n.status == "firing"
    assert n.alerts[0].fingerprint  # derived from labels
    assert n.group_key


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "expected a JSON object"),
        ({"version": "3", "alerts": []}, "version 4"),
        ({"alerts": "x"}, "alerts: expected a list"),
        ({"alerts": [{"status": "exploded"}]}, "alerts\\[0\\].status"),
        ({"alerts": [{"labels": ["a"]}]}, "alerts\\[0\\].labels"),
    ],
)
def test_rejects_what_is_not_a_notification(body: object, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        parse_notification(body)


def test_dedup_key_ignores_bodies_but_not_identities() -> None:
    a = parse_notification(load_fixture("firing_group_3_alerts.json"))
    raw = load_fixture("firing_group_3_alerts.json")
    # An HA peer or a retry: same alerts, different annotation values and order.
    raw2 = copy.deepcopy(raw)
    raw2["alerts"].reverse()
    raw2["alerts"][0]["annotations"]["description"] = "4.17 lines/s"
    assert parse_notification(raw2).dedup_key() == a.dedup_key()
    mixed = parse_notification(load_fixture("mixed_group_one_resolved.json"))
    assert mixed.dedup_key() != a.dedup_key()
    assert parse_notification(raw, receiver_override="other").dedup_key() != a.dedup_key()


def test_priority_orders_critical_before_warning_before_resolved() -> None:
    crit = parse_notification(load_fixture("firing_single.json"))
    warn = parse_notification(load_fixture("warning_route_firing.json"))
    resolved = parse_notification(load_fixture("resolved_single.json"))
    assert crit.priority < warn.priority < resolved.priority


def test_dedup_key_is_the_hash_earlier_versions_stored() -> None:
    # Keys written before an upgrade must still match: the same JSON text is hashed.
    rng = random.Random(3)
    alphabet = 'aZ0 "\\\n\t\x00\x7fé€😀\ud800{}[],:'
    raw = load_fixture("mixed_group_one_resolved.json")
    for _ in range(50):
        word = "".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))
        raw["receiver"], raw["groupKey"] = word, word[::-1]
        for a in raw["alerts"]:
            a["fingerprint"] = "".join(rng.choice(alphabet) for _ in range(6))
        n = parse_notification(raw)
        firing = sorted(f"{a.fingerprint}@{a.starts_at.isoformat()}" for a in n.firing)
        resolved = sorted(
            f"{a.fingerprint}@{a.starts_at.isoformat() if a.starts_at else ''}"
            for a in n.alerts
            if a.status != "firing"
        )
        before = json.dumps([n.receiver, n.group_key, firing, resolved])
        assert n.dedup_key() == hashlib.sha256(before.encode()).hexdigest()
