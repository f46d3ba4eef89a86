"""Slack Block Kit payloads: content, Slack's limits, and untrusted values kept inert."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from receiver.model import Notification, parse_notification
from receiver.render import Renderer
from receiver.slack_message import (
    COLOR_CRITICAL,
    COLOR_RESOLVED,
    COLOR_WARNING,
    MAX_BLOCKS,
    MAX_HEADER,
    MAX_SECTION,
    block_count,
    digest_slack_message,
    escape,
    escape_limited,
    fit_lines,
    slack_message,
)
from tests.conftest import load_fixture

NOW = datetime(2026, 12, 3, 17, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(None, ZoneInfo("Europe/Berlin"))


def notification(name: str, **changes: Any) -> Notification:
    raw = load_fixture(name)
    raw.update(changes)
    return parse_notification(raw)


def message(renderer: Renderer, n: Notification, **kw: Any) -> dict[str, Any]:
    payload = slack_message(n, renderer=renderer, now=NOW, **kw)
    json.dumps(payload)  # what is posted must serialise
    return payload


def texts(payload: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(type, text) of every text object in the message, the fallback as mrkdwn."""
    yield "mrkdwn", payload["text"]
    blocks = list(payload.get("blocks", []))
    for att in payload.get("attachments", []):
        blocks.extend(att.get("blocks", []))
    for block in blocks:
        objs = [block["text"]] if "text" in block else list(block.get("elements", []))
        for obj in objs:
            yield obj["type"], obj["text"]


def mrkdwn(payload: dict[str, Any]) -> str:
    if payload.get("type") == "context":  # one block
        return "\n".join(e["text"] for e in payload["elements"])
    return "\n".join(t for kind, t in texts(payload) if kind == "mrkdwn")


def links(payload: dict[str, Any]) -> list[str]:
    return re.findall(r"<([^>|]*)\|", mrkdwn(payload))


def test_single_firing(renderer: Renderer) -> None:
    n = notification("firing_single.json")
    p = message(renderer, n)
    assert p["text"].startswith("FIRING:")
    header = p["blocks"][0]
    assert header["type"] == "header"
    assert header["text"]["type"] == "plain_text"
    assert header["text"]["text"].startswith("FIRING: ")
    att = p["attachments"][0]
    assert att["color"] == COLOR_CRITICAL
    body = mrkdwn(p)
    alert = n.alerts[0]
    assert alert.name in body
    assert "critical" in body
    assert alert.annotations["summary"] in body
    assert "|Source graph>" in body and "|Silence>" in body
    assert any("#/silences/new?filter=" in u for u in links(p))
    assert "channel" not in p and "thread_ts" not in p


def test_channel_and_thread(renderer: Renderer) -> None:
    p = message(renderer, notification("firing_single.json"), channel="#ops", thread_ts="1.23")
    assert p["channel"] == "#ops"
    assert p["thread_ts"] == "1.23"


@pytest.mark.parametrize(
    ("fixture", "color"),
    [
        ("firing_group_3_alerts.json", COLOR_CRITICAL),
        ("warning_route_firing.json", COLOR_WARNING),
        ("resolved_single.json", COLOR_RESOLVED),
        ("mixed_group_one_resolved.json", COLOR_CRITICAL),
    ],
)
def test_colour_by_status(renderer: Renderer, fixture: str, color: str) -> None:
    assert message(renderer, notification(fixture))["attachments"][0]["color"] == color


def test_resolved_says_so(renderer: Renderer) -> None:
    p = message(renderer, notification("resolved_single.json"))
    assert p["text"].startswith("RESOLVED")
    assert p["blocks"][0]["text"]["text"].startswith("RESOLVED: ")


def test_firing_listed_before_resolved(renderer: Renderer) -> None:
    blocks = message(renderer, notification("mixed_group_one_resolved.json"))["attachments"][0][
        "blocks"
    ]
    icons = [b["text"]["text"].split(" ", 1)[0] for b in blocks[1:] if b["type"] == "section"]
    assert icons == [":red_circle:", ":red_circle:", ":large_green_circle:"]


def _many(count: int) -> Notification:
    raw = load_fixture("firing_single.json")
    template = raw["alerts"][0]
    alerts = []
    for i in range(count):
        a = copy.deepcopy(template)
        a["labels"]["instance"] = f"host-{i:03d}"
        a["fingerprint"] = f"{i:016x}"
        alerts.append(a)
    raw["alerts"] = alerts
    return parse_notification(raw)


def test_sixty_alerts_fit_and_say_more(renderer: Renderer) -> None:
    p = message(renderer, _many(60))
    assert block_count(p) <= MAX_BLOCKS
    blocks = p["attachments"][0]["blocks"]
    listed = sum(1 for b in blocks if "text" in b and b["text"]["text"].startswith(":red_circle:"))
    more = blocks[-1]
    assert more["type"] == "context"
    assert f"and {60 - listed} more alerts ({60 - listed} firing, 0 resolved)" in mrkdwn(more)
    assert 0 < listed < 60


def test_truncated_alerts_from_alertmanager_stated(renderer: Renderer) -> None:
    p = message(renderer, notification("firing_single.json", truncatedAlerts=12))
    assert "12 more not sent by Alertmanager" in mrkdwn(p)


def test_long_description_truncated_per_section(renderer: Renderer) -> None:
    raw = load_fixture("firing_single.json")
    raw["alerts"][0]["annotations"]["description"] = "x" * 5000
    raw["alerts"][0]["annotations"]["summary"] = "<&>" * 400  # grows 4x when escaped
    p = message(renderer, parse_notification(raw))
    for kind, text in texts(p):
        limit = MAX_HEADER if kind == "plain_text" else MAX_SECTION
        assert len(text) <= limit
    body = mrkdwn(p)
    assert "…" in body
    assert "|Source graph>" in body  # the description is cut before the links are


def test_long_header_capped(renderer: Renderer) -> None:
    n = notification("firing_single.json", groupLabels={"alertname": "A" * 400})
    header = message(renderer, n)["blocks"][0]["text"]["text"]
    assert len(header) <= MAX_HEADER


def test_untrusted_values_cannot_link_or_mention(renderer: Renderer) -> None:
    raw = load_fixture("firing_single.json")
    evil = "<!channel> <http://evil.example|click> <@U123> & @here"
    alert = raw["alerts"][0]
    alert["labels"]["service"] = evil
    alert["labels"]["alertname"] = "<!everyone>"
    alert["annotations"]["summary"] = evil
    alert["annotations"]["description"] = evil
    raw["commonLabels"]["service"] = "x"  # so service shows as distinguishing
    p = message(renderer, parse_notification(raw))
    body = mrkdwn(p)
    for bad in ("<!channel>", "<!everyone>", "<http://evil", "<@U123>", "@here"):
        assert bad not in body
    assert "&lt;!channel&gt;" in body
    assert "&lt;http://evil.example|click&gt;" in body
    assert "&amp;" in body
    assert all(not u.startswith("http://evil") for u in links(p))
    # Blocks are verbatim: Slack auto-links nothing in them.
    for block in p["attachments"][0]["blocks"]:
        objs = [block["text"]] if "text" in block else block["elements"]
        assert all(o["verbatim"] is True for o in objs)


def test_javascript_runbook_is_not_a_link(renderer: Renderer) -> None:
    raw = load_fixture("firing_single.json")
    raw["alerts"][0]["annotations"]["runbook_url"] = "javascript:alert(document.cookie)"
    p = message(renderer, parse_notification(raw))
    assert "Runbook: javascript:alert(document.cookie)" in mrkdwn(p)
    assert all(u.startswith(("http://", "https://")) for u in links(p))


def test_http_runbook_is_a_link(renderer: Renderer) -> None:
    raw = load_fixture("firing_single.json")
    raw["alerts"][0]["annotations"]["runbook_url"] = "https://wiki.example/run|book?a=1&b=<2>"
    p = message(renderer, parse_notification(raw))
    assert "<https://wiki.example/run%7Cbook?a=1&amp;b=%3C2%3E|Runbook>" in mrkdwn(p)


def test_escape_helpers() -> None:
    assert escape("a & <b> @channel") == "a &amp; &lt;b&gt; @\u200bchannel"
    cut = escape_limited("&" * 100, 12)
    assert len(cut) <= 12 and cut.endswith("…") and "&am…" not in cut
    lines = ["<http://a|A>", "b" * 50]
    assert fit_lines(lines, 30) == "<http://a|A>\n…"
    assert fit_lines(["<http://x|" + "y" * 50 + ">"], 20) == "…"


def test_digest(renderer: Renderer) -> None:
    groups = [
        notification("warning_route_firing.json"),
        notification("resolved_single.json"),
        notification("firing_group_3_alerts.json"),
    ]
    p = digest_slack_message(groups, renderer=renderer, now=NOW, channel="#ops")
    json.dumps(p)
    assert p["channel"] == "#ops"
    assert "3 alert groups, 2 firing" in p["text"]
    assert p["attachments"][0]["color"] == COLOR_CRITICAL
    blocks = p["attachments"][0]["blocks"]
    assert "HighErrorRate" in blocks[1]["text"]["text"]  # the critical group first
    many = digest_slack_message(groups * 30, renderer=renderer, now=NOW)
    assert block_count(many) <= MAX_BLOCKS
    assert "and 50 more groups" in mrkdwn(many)
