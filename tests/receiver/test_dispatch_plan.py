"""What a notification turns into before rendering, and which ones are settled at ingest."""

from __future__ import annotations

from typing import Any

from receiver.config import Config, config_from_dict
from receiver.dispatch_plan import DEADMAN_SEEN_KEY, plan_routes, settle_at_ingest, split_by_root
from receiver.model import Notification, parse_notification
from receiver.store_types import Thread
from tests.conftest import load_fixture

NOW = 1_796_299_200.0  # 2026-12-03T10:00:00Z


SMTP = {"from": "a@example.com", "servers": [{"host": "127.0.0.1", "port": 25}]}


def config(routes: list[dict[str, Any]], **extra: Any) -> Config:
    return config_from_dict({"routes": routes, "timezone": "UTC", "smtp": SMTP, **extra})


def notification(fixture: str = "firing_group_3_alerts.json") -> Notification:
    return parse_notification(load_fixture(fixture))


def test_no_route_is_settled_with_its_history() -> None:
    n = notification()
    plan = settle_at_ingest(config([]), n, NOW)
    assert plan is not None
    assert plan.reason == "no route matched"
    assert [a.fingerprint for a in plan.alerts] == [a.fingerprint for a in n.alerts]
    assert plan.messages == [] and plan.digest_entries == [] and plan.kv == []


def test_digest_routes_are_settled_with_their_bucket() -> None:
    routes = [{"name": "hourly", "mode": "digest", "every": "1h", "email": ["a@example.com"]}]
    plan = settle_at_ingest(config(routes), notification(), NOW + 1800)
    assert plan is not None and plan.reason is None
    assert plan.digest_entries == [("hourly", NOW)]  # the bucket the half hour falls in


def test_a_route_that_sends_now_is_left_to_the_dispatcher() -> None:
    assert settle_at_ingest(config([{"email": ["a@example.com"]}]), notification(), NOW) is None
    # A digest route first and an immediate one after it (continue): still the dispatcher's,
    # and the digest part is planned there the same way.
    routes = [
        {"name": "d", "mode": "digest", "email": ["a@example.com"], "continue": True},
        {"name": "now", "email": ["b@example.com"]},
    ]
    assert settle_at_ingest(config(routes), notification(), NOW) is None
    plan, sending = plan_routes(config(routes), notification(), 7, NOW, NOW)
    assert plan.notification_id == 7
    assert [m.key for m in sending] == ["now"]
    assert [route for route, _ in plan.digest_entries] == ["d"]


def test_an_immediate_route_with_no_channel_sends_nothing() -> None:
    plan = settle_at_ingest(config([{"name": "mute"}]), notification(), NOW)
    assert plan is not None and plan.reason is None and plan.messages == []


def test_the_dead_mans_heartbeat_is_settled_and_recorded() -> None:
    body = load_fixture("firing_single.json")
    body["alerts"][0]["labels"]["alertname"] = "Watchdog"
    n = parse_notification(body)
    cfg = config(
        [{"email": ["a@example.com"]}],
        deadman={"alertname": "Watchdog", "after": "10m", "email": ["a@example.com"]},
    )
    plan = settle_at_ingest(cfg, n, NOW)
    assert plan is not None
    assert plan.kv == [(DEADMAN_SEEN_KEY, repr(NOW))]
    assert plan.reason == "dead man's switch heartbeat"


def _thread(root: str | None, reached: frozenset[str] | None, sent: bool = True) -> Thread:
    return Thread(1, "r", "g", NOW, "s", root, sent, reached)


def test_only_recipients_of_the_first_message_get_replies_to_it() -> None:
    both = ["a@x", "b@x"]
    assert split_by_root(both, _thread("<r>", frozenset({"a@x"}))) == [
        (["a@x"], True),
        (["b@x"], False),
    ]
    assert split_by_root(both, _thread("<r>", frozenset(both))) == [(both, True)]
    assert split_by_root(both, _thread("<r>", frozenset({"c@x"}))) == [(both, False)]
    # No first message yet (this one becomes it), or its recipients unknown: one group.
    assert split_by_root(both, _thread(None, None)) == [(both, True)]
    assert split_by_root(both, _thread("<r>", None)) == [(both, True)]
    # Unsent (queued, retrying, dead): rendered both ways, the outbox decides; no split.
    assert split_by_root(both, _thread("<r>", frozenset(), sent=False)) == [(both, True)]
    assert split_by_root([], _thread("<r>", frozenset({"a@x"}))) == []
