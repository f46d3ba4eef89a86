"""Notification -> Slack Block Kit payload. Pure: no I/O, no clock (``now`` is passed in).

Wording comes from render_context (status line, headline, per-alert views and links) so Slack
and email say the same thing. Label and annotation values are untrusted (they come from logs):
in every ``mrkdwn`` text they are escaped (``&``, ``<``, ``>``) so they cannot form a link, a
mention (``<!channel>``) or a user/channel reference, and the text objects are ``verbatim`` so
Slack does not auto-link names either. Only links we build from http(s) URLs are clickable.

Slack's limits (https://api.slack.com/reference/block-kit): at most 50 blocks per message,
3000 characters per section text, 150 per header. Blocks are built in code rather than from a
user template because a template could easily produce JSON Slack rejects as invalid_blocks,
and a rejected alert is worse than a plain one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from receiver.model import Alert, Notification, severity_rank
from receiver.render import Renderer
from receiver.render_context import (
    AlertView,
    Detail,
    Link,
    alert_view,
    alerts_url,
    aware,
    count_alerts,
    group_title,
    one_line,
    status_line,
    truncate,
)

MAX_BLOCKS = 50
MAX_SECTION = 3000
MAX_HEADER = 150
MAX_FALLBACK = 1000
MAX_SLACK_ALERTS = 20
"""Alerts listed per message: a channel is read on phones; the rest is linked and counted."""
DESCRIPTION_BUDGET = 12_000
"""Description characters shared by the listed alerts: one alert may say a lot, twenty
cannot each say 3000 (huge payloads are slow to post and unreadable in a channel)."""
MAX_DIGEST_GROUPS = 40

COLOR_CRITICAL = "#E01E5A"
COLOR_WARNING = "#F2952F"
COLOR_INFO = "#36C5F0"
COLOR_RESOLVED = "#2EB67D"

# Plain-text "@channel" is not a mention in blocks (verbatim), but the `text` fallback shown in
# notifications is parsed more loosely; a zero-width space keeps it from ever becoming one.
_BROADCAST_RE = re.compile(r"@(channel|here|everyone)\b", re.IGNORECASE)


def escape(value: str) -> str:
    """Untrusted text -> mrkdwn that shows exactly that text."""
    text = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _BROADCAST_RE.sub("@\u200b\\1", text)


def escape_limited(value: str, limit: int) -> str:
    """escape(), cut so the *escaped* text fits `limit` without splitting an entity."""
    text = escape(value)
    if len(text) <= limit:
        return text
    cut = text[: max(0, limit - 1)]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]  # a half "&amp;" would show as garbage
    return cut.rstrip() + "…"


def link(url: str | None, label: str) -> str:
    """``<url|label>`` for an http(s) URL we already vetted (safe_href); label is ours.

    Inside ``<...>`` a ``|`` ends the URL and ``>`` the link, so those are percent-encoded;
    ``&`` is entity-escaped as Slack's own link format does.
    """
    if not url:
        return escape(label)
    safe = url.replace("&", "&amp;").replace("<", "%3C").replace(">", "%3E").replace("|", "%7C")
    return f"<{safe}|{escape(label)}>"


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(fit_lines(text.split("\n"), MAX_SECTION))}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [_mrkdwn(fit_lines(text.split("\n"), MAX_SECTION))]}


def _header(text: str) -> dict[str, Any]:
    # plain_text shows its text literally (no links or mentions), so it is not escaped.
    return {
        "type": "header",
        "text": {"type": "plain_text", "text": one_line(text, MAX_HEADER), "emoji": False},
    }


def fit_lines(lines: Sequence[str], limit: int) -> str:
    """Whole escaped lines up to `limit` characters, "…" when some were left out.

    Cutting at line boundaries never splits a ``<url|label>`` link or an entity.
    """
    out: list[str] = []
    used = 0
    for line in lines:
        cost = len(line) + (1 if out else 0)
        if used + cost > limit - 2:
            if not out:  # one huge first line: cut it without splitting a link or entity
                return escape_limited_raw(line, limit)
            return "\n".join(out) + "\n…"
        out.append(line)
        used += cost
    return "\n".join(out)


def escape_limited_raw(escaped: str, limit: int) -> str:
    """Cut already-escaped mrkdwn, dropping a trailing half entity or half link."""
    cut = escaped[: max(0, limit - 1)]
    for opener in ("&", "<"):
        pos = cut.rfind(opener)
        closer = ";" if opener == "&" else ">"
        if pos != -1 and closer not in cut[pos:]:
            cut = cut[:pos]
    return cut.rstrip() + "…"


def color_for(n: Notification) -> str:
    if not n.firing:
        return COLOR_RESOLVED
    rank = severity_rank(n.severity)
    if rank <= severity_rank("error"):
        return COLOR_CRITICAL
    if n.severity.lower() == "info" or rank > severity_rank("info"):
        return COLOR_INFO
    return COLOR_WARNING  # warning, and unknown severities: better noticed than not


def _links(view: AlertView) -> str:
    parts: list[str] = []
    if view.source is not None and view.source.href:
        parts.append(link(view.source.href, "Source graph"))
    if view.silence is not None and view.silence.href:
        parts.append(link(view.silence.href, "Silence"))
    parts.append(_runbook(view.runbook))
    return " · ".join(p for p in parts if p)


def _runbook(runbook: Link | None) -> str:
    if runbook is None:
        return ""
    if runbook.href:
        return link(runbook.href, "Runbook")
    # Not http(s) (javascript:, a wiki page name...): shown as text, never as a link.
    return "Runbook: " + escape_limited(runbook.text, 300)


def alert_text(view: AlertView, description_limit: int) -> str:
    icon = ":red_circle:" if view.firing else ":large_green_circle:"
    head = f"{icon} *{escape(view.name)}*"
    if view.severity:
        head += f" · {escape(view.severity)}"
    if view.distinguishing:
        head += f" · {escape(view.distinguishing)}"
    lines = [head]
    if view.summary:
        lines.append(escape(view.summary))
    when = view.timing + (f" (since {view.starts_at})" if view.starts_at else "")
    lines.append(f"_{escape(when)}_")
    links = _links(view)
    if links:
        lines.append(links)
    # Description last: when the section is cut to Slack's limit, it goes before the links do.
    if view.description and description_limit > 0:
        desc = truncate(view.description, description_limit)
        lines.extend(f">{escape(line)}" for line in desc.split("\n") if line.strip())
    return "\n".join(lines)


def _more_text(hidden: Sequence[Alert], truncated: int, external_url: str, n: Notification) -> str:
    parts: list[str] = []
    if hidden:
        c = count_alerts(hidden)
        word = "alert" if len(hidden) == 1 else "alerts"
        parts.append(f"and {len(hidden)} more {word} ({c.firing} firing, {c.resolved} resolved)")
    if truncated:
        parts.append(f"{truncated} more not sent by Alertmanager (max_alerts)")
    am = alerts_url(external_url, n.group_labels)
    if am:
        parts.append(link(am, "all alerts in Alertmanager"))
    return " · ".join(parts)


def slack_message(
    n: Notification,
    *,
    renderer: Renderer,
    now: datetime,
    channel: str | None = None,
    thread_ts: str | None = None,
) -> dict[str, Any]:
    """Block Kit payload for one notification: header, coloured attachment with one section per
    alert (firing and most severe first), then what was left out. `text` is the notification
    fallback. `channel`/`thread_ts` are added when given (bot-token posts and threads)."""
    ordered = sorted(n.alerts, key=Alert.sort_key)
    counts = count_alerts(ordered)
    line = status_line(counts, ordered)
    # header + status section + footer; the rest may be alerts.
    shown = ordered[: min(MAX_SLACK_ALERTS, MAX_BLOCKS - 3)]
    hidden = ordered[len(shown) :]
    desc_limit = max(200, min(MAX_SECTION - 500, DESCRIPTION_BUDGET // max(1, len(shown))))
    views = [
        alert_view(
            a,
            tz=renderer.timezone,
            now=now,
            external_url=n.external_url,
            common_labels=n.common_labels,
            detail=Detail.FULL,  # descriptions are cut to desc_limit here instead
        )
        for a in shown
    ]
    status = "FIRING" if counts.firing else "RESOLVED"
    blocks: list[dict[str, Any]] = [_section(f"*{escape(line)}*")]
    blocks.extend(_section(alert_text(v, desc_limit)) for v in views)
    more = _more_text(hidden, n.truncated_alerts, n.external_url, n)
    if more:
        blocks.append(_context(more))
    payload: dict[str, Any] = {
        "text": escape_limited(line, MAX_FALLBACK),
        "blocks": [_header(f"{status}: {group_title(n)}")],
        # Colour needs a legacy attachment; its blocks count toward the same 50.
        "attachments": [{"color": color_for(n), "blocks": blocks}],
    }
    return _addressed(payload, channel, thread_ts)


def digest_slack_message(
    groups: Sequence[Notification],
    *,
    renderer: Renderer,
    now: datetime,
    title: str = "Alert digest",
    channel: str | None = None,
) -> dict[str, Any]:
    """A digest: one line per group (its status line and an Alertmanager link)."""
    ordered = sorted(groups, key=lambda g: (g.priority, group_title(g)))
    shown, hidden = ordered[:MAX_DIGEST_GROUPS], ordered[MAX_DIGEST_GROUPS:]
    firing = sum(1 for g in groups if g.firing)
    summary = f"{len(groups)} alert groups, {firing} firing" if groups else "No alert groups"
    blocks: list[dict[str, Any]] = [_section(f"*{escape(summary)}*")]
    for g in shown:
        ordered_alerts = sorted(g.alerts, key=Alert.sort_key)
        text = f"*{escape(one_line(group_title(g), 200))}*\n" + escape_limited(
            status_line(count_alerts(ordered_alerts), ordered_alerts), 1000
        )
        am = alerts_url(g.external_url, g.group_labels)
        if am:
            text += "\n" + link(am, "Alertmanager")
        blocks.append(_section(text))
    if hidden:
        blocks.append(_context(f"and {len(hidden)} more groups"))
    stamp = aware(now).astimezone(renderer.timezone).strftime("%Y-%m-%d %H:%M %Z")
    worst = min(shown, key=lambda g: g.priority) if shown else None
    payload: dict[str, Any] = {
        "text": escape_limited(f"{title}: {summary}", MAX_FALLBACK),
        "blocks": [_header(f"{title} — {stamp}")],
        "attachments": [{"color": color_for(worst) if worst else COLOR_RESOLVED, "blocks": blocks}],
    }
    return _addressed(payload, channel, None)


def _addressed(
    payload: dict[str, Any], channel: str | None, thread_ts: str | None
) -> dict[str, Any]:
    if channel:
        payload["channel"] = channel
    if thread_ts:
        payload["thread_ts"] = thread_ts
    return payload


def block_count(payload: dict[str, Any]) -> int:
    """Blocks in the message and its attachments (Slack's 50-block limit covers both)."""
    total = len(payload.get("blocks", []))
    for att in payload.get("attachments", []):
        total += len(att.get("blocks", []))
    return total
