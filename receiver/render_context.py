"""What templates see: plain, already-sanitized views over a Notification. Pure functions.

Label and annotation values come from logs, so every string here is treated as untrusted:
control characters are removed, values are capped in length, and a URL only becomes a link
(``Link.href``) when it is http(s). Escaping is left to the templates' autoescaping; values are
passed as data and never rendered as templates. Digest, report and Slack contexts reuse
``alert_view`` and the status helpers so every channel words things the same way.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

from receiver.model import Alert, Notification, severity_rank
from receiver.units import format_duration

MAX_ALERTS = 50
"""DESIGN.md "Size": one email lists at most this many alerts."""

MAX_LABEL_VALUE = 512
MAX_ANNOTATION = 4096
MAX_SHORT_DESCRIPTION = 300
MAX_URL = 8192
MAX_SILENCE_URL = 4096

# Distinguishing labels people recognise, in the order they are preferred for "on api, db".
_PREFERRED_KEYS = (
    "service",
    "instance",
    "job",
    "namespace",
    "pod",
    "host",
    "node",
    "cluster",
    "env",
)
_RUNBOOK_KEYS = ("runbook_url", "runbook")
_SHOWN_ANNOTATIONS = frozenset({"summary", "description", *_RUNBOOK_KEYS})

# C0/C1 controls except TAB and LF, DEL, line/paragraph separators: none belong in an email
# body (NUL breaks SMTP, ESC sequences confuse terminals that show the text part).
_BODY_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
# For one-line values (headers, titles): every control character including TAB/CR/LF, and
# bidi overrides that could make a subject read differently from what it says.
_LINE_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]+")
_SPACES_RE = re.compile(r"\s+")
_CSS_CLASS_RE = re.compile(r"^[a-z0-9-]{1,32}$")


class Detail(IntEnum):
    """How much per-alert detail an email carries; lowered until the HTML fits the budget."""

    FULL = 0
    # Descriptions shortened, extra annotations and per-alert labels tables dropped (the
    # group's common labels are shown once instead; the differing ones are in each heading).
    SHORT = 1
    MINIMAL = 2  # no descriptions either


@dataclass(frozen=True, slots=True)
class Link:
    """A link that templates may only turn into an <a href> when ``href`` is set."""

    text: str
    href: str | None


@dataclass(frozen=True, slots=True)
class AlertView:
    name: str
    status: str  # "firing" | "resolved"
    firing: bool
    severity: str
    severity_class: str  # safe for a CSS class: critical, warning, ..., "other"
    fingerprint: str
    distinguishing: str  # labels that differ from the group's common labels: "service=api"
    summary: str
    description: str
    labels: tuple[tuple[str, str], ...]  # alertname first, then sorted; empty below FULL
    annotations: tuple[tuple[str, str], ...]  # the ones not shown elsewhere; empty below FULL
    starts_at: str  # "2026-12-03 17:28:37 CET" in the configured timezone, "" when unknown
    ends_at: str  # "" while firing
    timing: str  # "firing for 12m" | "resolved after 1h 5m"
    runbook: Link | None
    source: Link | None
    silence: Link | None
    graph_cid: str | None


@dataclass(frozen=True, slots=True)
class Counts:
    firing: int
    resolved: int
    by_severity: tuple[tuple[str, int], ...]  # firing alerts only, most severe first

    @property
    def total(self) -> int:
        return self.firing + self.resolved


# --- string hygiene -----------------------------------------------------------------------


def clean_text(value: str, limit: int | None = None) -> str:
    """Multi-line body text: newlines normalised, control characters removed, length capped."""
    if _plain(value):
        text = value  # most label values: nothing to normalise, and this runs ~100x per email
    else:
        text = value.replace("\r\n", "\n").replace("\r", "\n")
        text = _BODY_CONTROL_RE.sub("", text)
    return truncate(text, limit) if limit else text


def one_line(value: str, limit: int | None = None) -> str:
    """A single line (header values, titles): no CR/LF/control characters can survive."""
    if _plain(value) and "  " not in value:
        text = value.strip()  # the regexes below could change nothing else
    else:
        text = _LINE_CONTROL_RE.sub(" ", value)
        text = _SPACES_RE.sub(" ", text).strip()
    return truncate(text, limit) if limit else text


def _plain(value: str) -> bool:
    """Printable ASCII: no control character, no whitespace but the plain space."""
    return value.isascii() and value.isprintable()


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 1)].rstrip() + "…"


def safe_href(url: str) -> str | None:
    """The URL if it may become a link (absolute http/https, no whitespace), else None.

    ``javascript:``, ``data:`` and relative URLs stay plain text: a value from a log line
    must not turn into something that runs when a tired person clicks it.
    """
    url = url.strip()
    if not url or len(url) > MAX_URL or _SPACES_RE.search(url) or _LINE_CONTROL_RE.search(url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url


def make_link(value: str) -> Link | None:
    value = clean_text(value).strip()
    if not value:
        return None
    return Link(text=one_line(value, MAX_URL), href=safe_href(value))


# --- times ---------------------------------------------------------------------------------


def aware(dt: datetime) -> datetime:
    """Naive datetimes are taken as UTC (the model only produces aware ones)."""
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def format_time(dt: datetime | None, tz: ZoneInfo) -> str:
    """Local wall time with the zone abbreviation shown: 2026-12-03 17:28:37 CET."""
    if dt is None:
        return ""
    return aware(dt).astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %Z")


def alert_timing(alert: Alert, now: datetime) -> str:
    if alert.firing:
        if alert.starts_at is None:
            return "firing"
        return f"firing for {format_duration((aware(now) - alert.starts_at).total_seconds())}"
    if alert.starts_at is None or alert.ends_at is None:
        return "resolved"
    return f"resolved after {format_duration((alert.ends_at - alert.starts_at).total_seconds())}"


# --- links ---------------------------------------------------------------------------------


def matcher_filter(labels: Iterable[tuple[str, str]]) -> str:
    """``{alertname="X",service="api"}``: the filter syntax Alertmanager's UI reads.

    Values are quoted as Alertmanager's matcher parser expects (backslash, quote, newline).
    """
    parts = []
    for key, value in labels:
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        parts.append(f'{key}="{escaped}"')
    return "{" + ",".join(parts) + "}"


def ordered_labels(labels: Mapping[str, str]) -> list[tuple[str, str]]:
    """alertname first (what people scan for), the rest sorted for a stable order."""
    head = [("alertname", labels["alertname"])] if "alertname" in labels else []
    return head + sorted((k, v) for k, v in labels.items() if k != "alertname")


def silence_url(external_url: str, labels: Mapping[str, str]) -> str | None:
    """Alertmanager's "new silence" form prefilled with exactly this alert's labels."""
    base = safe_href(external_url)
    if base is None or not labels:
        return None
    filt = matcher_filter(ordered_labels(labels))
    url = f"{base.rstrip('/')}/#/silences/new?filter={quote(filt, safe='')}"
    # Huge label sets would make a link no browser or mail client handles well.
    return url if len(url) <= MAX_SILENCE_URL else None


def alerts_url(external_url: str, labels: Mapping[str, str]) -> str | None:
    """Alertmanager's alert list filtered to the group."""
    base = safe_href(external_url)
    if base is None:
        return None
    url = f"{base.rstrip('/')}/#/alerts"
    if labels:
        url += "?filter=" + quote(matcher_filter(ordered_labels(labels)), safe="")
    return url if len(url) <= MAX_SILENCE_URL else None


# --- views ---------------------------------------------------------------------------------


def _distinguishing(alert: Alert, common: Mapping[str, str]) -> str:
    pairs = [
        f"{k}={one_line(v, 80)}"
        for k, v in sorted(alert.labels.items())
        if k != "alertname" and common.get(k) != v
    ]
    return one_line(", ".join(pairs), 200)


def alert_view(
    alert: Alert,
    *,
    tz: ZoneInfo,
    now: datetime,
    external_url: str,
    common_labels: Mapping[str, str],
    detail: Detail = Detail.FULL,
    graph_cid: str | None = None,
) -> AlertView:
    ann = alert.annotations
    description = clean_text(ann.get("description", ""), MAX_ANNOTATION).strip()
    if detail >= Detail.MINIMAL:
        description = ""
    elif detail >= Detail.SHORT:
        description = truncate(description, MAX_SHORT_DESCRIPTION)
    runbook_raw = next((ann[k] for k in _RUNBOOK_KEYS if ann.get(k, "").strip()), "")
    labels: tuple[tuple[str, str], ...] = ()
    if detail == Detail.FULL:
        labels = tuple(
            (one_line(k, 128), clean_text(v, MAX_LABEL_VALUE))
            for k, v in ordered_labels(alert.labels)
        )
    annotations: tuple[tuple[str, str], ...] = ()
    if detail == Detail.FULL:
        annotations = tuple(
            (one_line(k, 128), clean_text(v, MAX_ANNOTATION))
            for k, v in sorted(ann.items())
            if k not in _SHOWN_ANNOTATIONS
        )
    severity = one_line(alert.severity, 64)
    silence = silence_url(external_url, alert.labels)
    return AlertView(
        name=one_line(alert.name, 200) or "(no alertname)",
        status=alert.status,
        firing=alert.firing,
        severity=severity,
        severity_class=severity.lower() if _CSS_CLASS_RE.match(severity.lower()) else "other",
        fingerprint=one_line(alert.fingerprint, 64),
        distinguishing=_distinguishing(alert, common_labels),
        summary=one_line(clean_text(ann.get("summary", "")), 500),
        description=description,
        labels=labels,
        annotations=annotations,
        starts_at=format_time(alert.starts_at, tz),
        ends_at="" if alert.firing else format_time(alert.ends_at, tz),
        timing=alert_timing(alert, now),
        runbook=make_link(runbook_raw),
        source=make_link(alert.generator_url),
        silence=Link(text=silence, href=silence) if silence else None,
        graph_cid=graph_cid,
    )


def count_alerts(alerts: Sequence[Alert]) -> Counts:
    firing = [a for a in alerts if a.firing]
    by_sev = Counter(one_line(a.severity, 64).lower() for a in firing)
    ordered = sorted(by_sev.items(), key=lambda kv: (severity_rank(kv[0]), kv[0]))
    return Counts(
        firing=len(firing), resolved=len(alerts) - len(firing), by_severity=tuple(ordered)
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _pick_key(pool: Sequence[Alert], all_alerts: Sequence[Alert]) -> str | None:
    keys = {k for a in all_alerts for k in a.labels} - {"alertname", "severity"}
    varying = {k for k in keys if len({a.labels.get(k) for a in all_alerts}) > 1}
    candidates = varying or {k for k in keys if k in pool[0].labels}
    for key in _PREFERRED_KEYS:
        if key in candidates:
            return key
    # Without a recognisable key, only a varying label says anything about "where".
    return min(varying) if varying else None


def headline(alerts: Sequence[Alert]) -> str:
    """Which alerts, and where (firing ones when any fire): "HighErrorRate on api, db"."""
    if not alerts:
        return ""
    pool = [a for a in alerts if a.firing] or list(alerts)
    pool.sort(key=Alert.sort_key)
    names = list(dict.fromkeys(one_line(a.name, 80) or "(no alertname)" for a in pool))
    text = ", ".join(names[:3]) + (f" +{len(names) - 3}" if len(names) > 3 else "")
    key = _pick_key(pool, alerts)
    if key is not None:
        # Most severe first, alphabetical within a severity: "on api, db", not fingerprint order.
        by_value = sorted(pool, key=lambda a: (severity_rank(a.severity), a.labels.get(key, "")))
        values = list(
            dict.fromkeys(one_line(a.labels[key], 60) for a in by_value if a.labels.get(key))
        )
        if values:
            more = f" +{len(values) - 4}" if len(values) > 4 else ""
            text += " on " + ", ".join(values[:4]) + more
    return text


def status_line(counts: Counts, alerts: Sequence[Alert]) -> str:
    """The first thing read at 3 a.m.: "FIRING: 2 critical, 1 resolved — HighErrorRate on api"."""
    what = headline(alerts)
    if counts.firing:
        parts = [f"{n} {sev}" if sev else _plural(n, "alert") for sev, n in counts.by_severity]
        if counts.resolved:
            parts.append(f"{counts.resolved} resolved")
        head = "FIRING: " + ", ".join(parts)
    elif counts.resolved:
        head = "RESOLVED: " + _plural(counts.resolved, "alert")
    else:
        head = "NO ALERTS"
    return f"{head} — {what}" if what else head


def group_title(n: Notification) -> str:
    """Stable for the whole thread: built from groupLabels only, never from status or counts.

    commonLabels and the alert list change between messages of one incident; groupLabels
    (what Alertmanager grouped on) do not, so Gmail and Outlook keep the thread together.
    """
    labels = n.group_labels
    name = one_line(labels.get("alertname", ""), 100)
    rest = ", ".join(
        f"{one_line(k, 60)}={one_line(v, 60)}"
        for k, v in sorted(labels.items())
        if k != "alertname"
    )
    if name and rest:
        return f"{name} ({rest})"
    if name or rest:
        return name or rest
    return f"alerts for {one_line(n.receiver, 100) or 'all'}"


def notification_context(
    n: Notification,
    *,
    tz: ZoneInfo,
    now: datetime,
    max_alerts: int = MAX_ALERTS,
    detail: Detail = Detail.FULL,
    graph_cids: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Everything alert.html.j2 / alert.txt.j2 may use (see templates/README.md)."""
    ordered = sorted(n.alerts, key=Alert.sort_key)
    shown, hidden = ordered[:max_alerts], ordered[max_alerts:]
    counts = count_alerts(ordered)
    cids = graph_cids or {}
    views = tuple(
        alert_view(
            a,
            tz=tz,
            now=now,
            external_url=n.external_url,
            common_labels=n.common_labels,
            detail=detail,
            graph_cid=cids.get(a.fingerprint),
        )
        for a in shown
    )
    hidden_counts = count_alerts(hidden)
    line = status_line(counts, ordered)
    am = alerts_url(n.external_url, n.group_labels)
    return {
        "title": group_title(n),
        "status": "firing" if counts.firing else "resolved",
        "status_line": line,
        "preheader": line,
        "counts": counts,
        "alerts": views,
        "hidden_count": len(hidden),
        "hidden_firing": hidden_counts.firing,
        "hidden_resolved": hidden_counts.resolved,
        "truncated_alerts": n.truncated_alerts,
        "detail_reduced": detail > Detail.FULL,
        "receiver": one_line(n.receiver, 200),
        "group_labels": _pairs(n.group_labels),
        "common_labels": _pairs(n.common_labels),
        "alertmanager": Link(text=am, href=am) if am else None,
        "generated_at": format_time(now, tz),
        "timezone": tz.key,
    }


def _pairs(labels: Mapping[str, str], limit: int = MAX_LABEL_VALUE) -> tuple[tuple[str, str], ...]:
    return tuple((one_line(k, 128), one_line(v, limit)) for k, v in ordered_labels(labels))


def subject_context(n: Notification) -> dict[str, Any]:
    """alert.subject.j2 only gets what is stable across a thread (see group_title)."""
    return {
        "title": group_title(n),
        "receiver": one_line(n.receiver, 200),
        "group_labels": _pairs(n.group_labels, 100),
    }
