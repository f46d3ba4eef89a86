from __future__ import annotations

import pytest

from receiver.config import config_from_dict
from receiver.matchers import parse_matcher, unquote_receiver
from receiver.model import parse_notification
from receiver.routing import routes_for, select_routes
from tests.conftest import load_fixture

SMTP = {"from": "a@example.com", "servers": [{"host": "127.0.0.1"}]}
ROUTES = [
    {"name": "crit", "matchers": ['severity="critical"'], "email": ["oncall@example.com"]},
    {
        "name": "warn-not-db",
        "matchers": ['severity=~"warning|info"', 'team!="db"'],
        "email": ["team@example.com"],
        "continue": True,
    },
    {"name": "dot-receiver", "matchers": ['receiver="team.a"'], "email": ["a@example.com"]},
    {"name": "default", "email": ["catchall@example.com"]},
]
CONFIG = config_from_dict({"smtp": SMTP, "routes": ROUTES})


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"severity": "critical"}, ["crit"]),
        ({"severity": "warning"}, ["warn-not-db", "default"]),  # continue: true
        ({"severity": "warning", "team": "db"}, ["default"]),  # negation
        ({"severity": "warningish"}, ["default"]),  # regexes are anchored
        ({"severity": "xwarning"}, ["default"]),
        ({"severity": "info", "team": "web"}, ["warn-not-db", "default"]),
        ({}, ["default"]),  # a missing label is "" for !=
        ({"receiver": "team.a"}, ["dot-receiver"]),
        ({"receiver": "teamXa"}, ["default"]),
    ],
)
def test_route_selection(labels: dict[str, str], expected: list[str]) -> None:
    assert [m.key for m in select_routes(CONFIG.routes, labels)] == expected


def test_group_level_matching_uses_common_and_group_labels() -> None:
    # severity=critical is common to the whole group: the group goes to "crit" as one.
    n = parse_notification(load_fixture("mixed_group_one_resolved.json"))
    assert [m.key for m in routes_for(CONFIG.routes, n)] == ["crit"]
    # A label that differs between alerts (service) is not a group label: no split.
    cfg = config_from_dict(
        {"smtp": SMTP, "routes": [{"matchers": ['service="api"'], "email": ["x@example.com"]}]}
    )
    assert routes_for(cfg.routes, n) == []


def test_quoted_receiver_name_from_path() -> None:
    n = parse_notification(load_fixture("firing_single.json"), receiver_override="team\\.a")
    raw_labels = {"severity": "none"}
    assert unquote_receiver("team\\.a") == "team.a"
    assert [m.key for m in routes_for(CONFIG.routes, n)] == ["crit"]
    cfg = config_from_dict({"smtp": SMTP, "routes": ROUTES[2:]})
    assert [m.key for m in routes_for(cfg.routes, n)] == ["dot-receiver"]
    assert select_routes(cfg.routes, raw_labels)[0].key == "default"


@pytest.mark.parametrize(
    ("text", "labels", "result"),
    [
        ('a="b"', {"a": "b"}, True),
        ("a=b", {"a": "b"}, True),
        ('{a="b"}', {"a": "c"}, False),
        ('a!="b"', {}, True),
        ('a=~"b|c"', {"a": "c"}, True),
        ('a!~"b.*"', {"a": "bcd"}, False),
        ('a=""', {}, True),
        ('a="x\\"y"', {"a": 'x"y'}, True),
    ],
)
def test_matchers(text: str, labels: dict[str, str], result: bool) -> None:
    assert parse_matcher(text).matches(labels) is result


@pytest.mark.parametrize("bad", ["severity", '=="x"', 'a=~"("', 'a="unclosed'])
def test_bad_matchers(bad: str) -> None:
    with pytest.raises(ValueError, match="matcher"):
        parse_matcher(bad)
