from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from receiver import wire
from receiver.errors import PayloadError
from receiver.model import parse_notification
from tests.conftest import load_fixture

FIXTURES = [
    "firing_group_3_alerts.json",
    "firing_single.json",
    "mixed_group_one_resolved.json",
    "resolved_single.json",
    "warning_route_firing.json",
]

Edit = Callable[[dict[str, Any]], None]


def _set(path: str, value: object) -> Edit:
    def edit(raw: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = raw
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value

    return edit


_DELETE = object()

# Bodies in Alertmanager's exact shape, some of them unusual: both paths must agree.
SAME_SHAPE: dict[str, Edit] = {
    "as sent": lambda raw: None,
    "nanoseconds and an offset": _set("alerts.0.startsAt", "2026-12-03T18:42:53.744746984+02:00"),
    "Go zero startsAt": _set("alerts.0.startsAt", "0001-01-01T00:00:00Z"),
    "empty timestamp": _set("alerts.0.endsAt", ""),
    "no fingerprint": _set("alerts.0.fingerprint", _DELETE),
    "empty fingerprint": _set("alerts.0.fingerprint", ""),
    "no groupKey": _set("groupKey", _DELETE),
    "no status": _set("status", _DELETE),
    "no alert status": _set("alerts.0.status", _DELETE),
    "negative truncatedAlerts": _set("truncatedAlerts", -3),
    "many truncatedAlerts": _set("truncatedAlerts", 12),
    "no common maps": _set("commonLabels", _DELETE),
    "html escapes": _set("alerts.0.annotations.summary", "<b>&amp;</b> \u2603"),
    "no alerts firing or not": _set("alerts", []),
}


@pytest.mark.parametrize("fixture", FIXTURES)
@pytest.mark.parametrize("case", sorted(SAME_SHAPE))
def test_fast_path_builds_what_the_lenient_path_builds(fixture: str, case: str) -> None:
    raw = copy.deepcopy(load_fixture(fixture))
    SAME_SHAPE[case](raw)
    body = orjson.dumps(raw)
    for override in (None, "team-x"):
        fast = wire.decode(body, receiver_override=override)
        assert fast is not None, "a body in Alertmanager's shape must take the fast path"
        assert fast == parse_notification(raw, receiver_override=override)


# Not in the exact shape: the fast path steps aside and the lenient path decides.
OTHER_SHAPE: dict[str, bytes] = {
    "unknown top-level field": orjson.dumps({**load_fixture("firing_single.json"), "x": 1}),
    "unknown alert field": orjson.dumps(
        {"alerts": [{**load_fixture("firing_single.json")["alerts"][0], "new": True}]}
    ),
    "number as a label value": orjson.dumps({"alerts": [{"labels": {"code": 503}}]}),
    "null labels": orjson.dumps({"alerts": [{"labels": None}]}),
    "version as a number": orjson.dumps({"version": 4, "alerts": []}),
    "escaped lone surrogate": b'{"alerts": [{"labels": {"a": "\\ud800"}}]}',
    "escaped surrogate pair": b'{"alerts": [{"labels": {"a": "\\ud83d\\ude00"}}]}',
    "invalid UTF-8": b'{"alerts": [{"labels": {"a": "\xff"}}]}',
    "truncated JSON": b'{"alerts": [',
    "not an object": b"[]",
    "no alerts": b"{}",
    "unknown status": b'{"alerts": [{"status": "exploded"}]}',
}


@pytest.mark.parametrize("case", sorted(OTHER_SHAPE))
def test_anything_else_is_left_to_the_lenient_path(case: str) -> None:
    assert wire.decode(OTHER_SHAPE[case]) is None


def test_surrogate_pair_reads_the_same_on_the_lenient_path() -> None:
    body = OTHER_SHAPE["escaped surrogate pair"]
    assert parse_notification(orjson.loads(body)).alerts[0].labels == {"a": "\U0001f600"}


def test_a_bad_timestamp_in_the_exact_shape_is_refused_as_the_lenient_path_refuses_it() -> None:
    raw = load_fixture("firing_single.json")
    raw["alerts"][0]["startsAt"] = "yesterday"
    with pytest.raises(PayloadError, match=r"alerts\[0\]\.startsAt: not an RFC 3339") as fast:
        wire.decode(orjson.dumps(raw))
    with pytest.raises(PayloadError) as lenient:
        parse_notification(raw)
    assert str(fast.value) == str(lenient.value)
