"""Digest and catch-up emails: a Digest (batching.py) -> template context -> EmailMessage."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

from receiver.batching import Digest, GroupSummary
from receiver.render import HTML_BUDGET, Renderer
from receiver.render_context import (
    Detail,
    alert_view,
    alerts_url,
    format_time,
    make_link,
    one_line,
)
from receiver.units import format_duration

MAX_GROUPS = 200
# (alerts listed per group in the HTML) tried in turn until the HTML fits the size budget;
# the text part always lists every alert so nothing folded into a catch-up goes unmentioned.
HTML_ALERTS_PER_GROUP = (10, 3, 0)
TEXT_ALERTS_PER_GROUP = 1000


def _group_view(
    g: GroupSummary, renderer: Renderer, now: datetime, per_group: int
) -> dict[str, Any]:
    title = ", ".join(f"{k}={v}" for k, v in sorted(g.title_labels.items())) or g.group_key
    alerts = (*g.firing, *g.resolved)
    url = alerts_url(g.external_url, g.title_labels) if g.external_url else None
    return {
        "title": one_line(title, 200),
        "severity": one_line(g.severity or "none", 32),
        "status": "firing" if g.is_firing else "resolved",
        "firing": len(g.firing),
        "resolved": len(g.resolved),
        "notifications": g.notifications,
        "first_seen": format_time(datetime.fromtimestamp(g.first_seen, UTC), renderer.timezone),
        "last_seen": format_time(datetime.fromtimestamp(g.last_seen, UTC), renderer.timezone),
        "alerts": [
            alert_view(
                a,
                tz=renderer.timezone,
                now=now,
                external_url=g.external_url,
                common_labels=g.title_labels,
                detail=Detail.SHORT,
            )
            for a in alerts[:per_group]
        ],
        "more_alerts": max(0, len(alerts) - per_group),
        "alertmanager": make_link(url) if url else None,
    }


def digest_context(
    d: Digest, *, renderer: Renderer, now: datetime, kind: str, route: str, per_group: int
) -> dict[str, Any]:
    groups = [*d.groups_firing, *d.groups_resolved]
    shown = groups[:MAX_GROUPS]
    tz = renderer.timezone
    start = format_time(datetime.fromtimestamp(d.start, UTC), tz)
    end = format_time(datetime.fromtimestamp(d.end, UTC), tz)
    c = d.counts
    headline = (
        f"{c['groups_firing']} group{'s' if c['groups_firing'] != 1 else ''} firing, "
        f"{c['groups_resolved']} resolved, {c['flapped']} alert"
        f"{'s' if c['flapped'] != 1 else ''} fired and resolved"
    )
    return {
        "kind": kind,  # "digest" | "catch-up"
        "route": one_line(route, 100),
        "window_start": start,
        "window_end": end,
        "window_length": format_duration(d.end - d.start),
        "headline": headline,
        "groups_firing": [_group_view(g, renderer, now, per_group) for g in shown if g.is_firing],
        "groups_resolved": [
            _group_view(g, renderer, now, per_group) for g in shown if not g.is_firing
        ],
        "detail_reduced": per_group < HTML_ALERTS_PER_GROUP[0],
        "hidden_groups": len(groups) - len(shown),
        "flapped": [
            alert_view(a, tz=tz, now=now, external_url="", common_labels={}, detail=Detail.MINIMAL)
            for a in d.flapped[:MAX_GROUPS]
        ],
        "hidden_flapped": max(0, len(d.flapped) - MAX_GROUPS),
        "notifications": d.notifications,
        "generated_at": format_time(now, tz),
        "timezone": tz.key,
    }


def digest_email(
    d: Digest,
    *,
    renderer: Renderer,
    sender: str,
    recipients: Sequence[str],
    message_id: str,
    now: datetime,
    kind: str,
    route: str,
) -> EmailMessage:
    """A digest or catch-up: a message of its own (its own thread), never a reply."""

    def context(per_group: int) -> dict[str, Any]:
        return digest_context(
            d, renderer=renderer, now=now, kind=kind, route=route, per_group=per_group
        )

    html = ""
    for per_group in HTML_ALERTS_PER_GROUP:
        ctx = context(per_group)
        html = renderer.render_html("digest.html.j2", **ctx)
        if len(html.encode()) <= HTML_BUDGET:
            break
    text_ctx = context(TEXT_ALERTS_PER_GROUP)
    return renderer.message(
        sender=sender,
        to=recipients,
        subject=renderer.render_string("digest.subject.j2", **text_ctx),
        message_id=message_id,
        now=now,
        html=html,
        text=renderer.render_string("digest.txt.j2", **text_ctx),
    )
