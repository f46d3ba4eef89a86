"""Alertmanager webhook payload (version 4) -> plain dataclasses. Pure parsing.

Strict only where a payload cannot be understood at all: Alertmanager never retries
a 4xx, so unknown extra fields are accepted and missing optional ones tolerated.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from receiver.errors import PayloadError

# Go's zero time: what Alertmanager sends as endsAt for a firing alert.
_GO_ZERO_YEAR = 1

SEVERITY_RANK: dict[str, int] = {"critical": 0, "error": 1, "warning": 2, "info": 3}
"""Lower sends first. Unknown severities rank between warning and info."""
UNKNOWN_SEVERITY_RANK = 3
NONE_SEVERITY_RANK = 4


def severity_rank(severity: str | None) -> int:
    if not severity:
        return NONE_SEVERITY_RANK
    return SEVERITY_RANK.get(severity.lower(), UNKNOWN_SEVERITY_RANK)


def parse_timestamp(value: object, what: str) -> datetime | None:
    """RFC 3339 with up to nanoseconds; Go's zero time and empty values are None."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise PayloadError(f"{what}: expected an RFC 3339 timestamp, got {type(value).__name__}")
    try:
        # fromisoformat (3.11) takes Z, offsets and 9 fractional digits (kept to 6), and is
        # an order of magnitude cheaper than a regex on the ingest path.
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:  # RFC 3339 allows a lower-case "t" and "z"
            parsed = datetime.fromisoformat(value.upper())
        except ValueError as exc:
            raise PayloadError(f"{what}: not an RFC 3339 timestamp: {value[:64]!r}") from exc
    if parsed.year <= _GO_ZERO_YEAR:
        return None
    if parsed.tzinfo is UTC:  # "Z", as Alertmanager writes it
        return parsed
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-01:00: later than anything
        return datetime.max.replace(tzinfo=UTC)


def _str_map(value: object, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if type(value) is dict:  # decoded JSON: its keys are strings
        for v in value.values():
            if type(v) is not str:
                break
        else:
            return dict(value)  # what Alertmanager sends: the common case, checked cheaply
    if not isinstance(value, Mapping):
        raise PayloadError(f"{what}: expected an object of strings")
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(k, str):
            raise PayloadError(f"{what}: keys must be strings")
        # Alertmanager only sends strings; tolerate numbers from hand-made payloads.
        out[k] = v if isinstance(v, str) else json.dumps(v)
    return out


@dataclass(frozen=True, slots=True)
class Alert:
    status: str  # "firing" | "resolved"
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime | None
    ends_at: datetime | None
    generator_url: str
    fingerprint: str

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "")

    @property
    def firing(self) -> bool:
        return self.status == "firing"

    def sort_key(self) -> tuple[int, int, str, str]:
        """Firing first, then most severe, then by name: the order emails list alerts in."""
        return (0 if self.firing else 1, severity_rank(self.severity), self.name, self.fingerprint)


@dataclass(frozen=True, slots=True)
class Notification:
    receiver: str
    status: str
    alerts: tuple[Alert, ...]
    group_labels: dict[str, str]
    common_labels: dict[str, str]
    common_annotations: dict[str, str]
    external_url: str
    group_key: str
    truncated_alerts: int = 0
    version: str = "4"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def firing(self) -> tuple[Alert, ...]:
        return tuple(a for a in self.alerts if a.firing)

    @property
    def resolved(self) -> tuple[Alert, ...]:
        return tuple(a for a in self.alerts if not a.firing)

    @property
    def severity(self) -> str:
        """The most severe severity among firing alerts (or all alerts if none fire)."""
        pool = self.firing or self.alerts
        if not pool:
            return self.common_labels.get("severity", "")
        return min((a.severity for a in pool), key=severity_rank)

    @property
    def priority(self) -> int:
        """Outbox priority: lower is sent first. Resolved-only notifications go last."""
        rank = severity_rank(self.severity)
        return rank if self.firing else rank + 10

    def route_labels(self) -> dict[str, str]:
        """What routes match on: groupLabels + commonLabels (common wins on conflicts)."""
        return {**self.group_labels, **self.common_labels}

    def dedup_key(self) -> str:
        """(receiver, groupKey, firing fps, resolved fps) per Notification semantics.

        Bodies of HA pairs and retries differ slightly, so only identities are compared.
        Resolved alerts are identified by fingerprint + startsAt (their occurrence).
        """
        firing: list[str] = []
        resolved: list[str] = []
        for a in self.alerts:
            (firing if a.status == "firing" else resolved).append(
                f"{a.fingerprint}@{_iso(a.starts_at)}"
            )
        firing.sort()
        resolved.sort()
        raw = json.dumps([self.receiver, self.group_key, firing, resolved])
        return hashlib.sha256(raw.encode()).hexdigest()


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value else ""


def fallback_fingerprint(labels: Mapping[str, str]) -> str:
    raw = json.dumps(sorted(labels.items()))
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def derived_group_key(group_labels: Mapping[str, str]) -> str:
    """For hand-made payloads without a groupKey: a stable one from the group labels."""
    return "{}:" + json.dumps(sorted(group_labels.items()))


def parse_alert(raw: object, index: int) -> Alert:
    what = f"alerts[{index}]"
    if type(raw) is not dict and not isinstance(raw, Mapping):
        raise PayloadError(f"{what}: expected an object")
    labels = _str_map(raw.get("labels"), f"{what}.labels")
    status = raw.get("status", "firing")
    if status not in ("firing", "resolved"):
        raise PayloadError(f"{what}.status: expected 'firing' or 'resolved', got {status!r}")
    fingerprint = raw.get("fingerprint") or fallback_fingerprint(labels)
    if not isinstance(fingerprint, str):
        raise PayloadError(f"{what}.fingerprint: expected a string")
    gen = raw.get("generatorURL") or ""
    return Alert(
        status=status,
        labels=labels,
        annotations=_str_map(raw.get("annotations"), f"{what}.annotations"),
        starts_at=parse_timestamp(raw.get("startsAt"), f"{what}.startsAt"),
        ends_at=parse_timestamp(raw.get("endsAt"), f"{what}.endsAt"),
        generator_url=gen if isinstance(gen, str) else "",
        fingerprint=fingerprint,
    )


_KNOWN_KEYS = frozenset(
    {
        "receiver",
        "status",
        "alerts",
        "groupLabels",
        "commonLabels",
        "commonAnnotations",
        "externalURL",
        "version",
        "groupKey",
        "truncatedAlerts",
    }
)


def parse_notification(raw: object, receiver_override: str | None = None) -> Notification:
    """Parse a decoded JSON body. Raises PayloadError with what is wrong."""
    if not isinstance(raw, Mapping):
        raise PayloadError("body: expected a JSON object (an Alertmanager notification)")
    version = raw.get("version", "4")
    if str(version) != "4":
        raise PayloadError(f"version: only webhook payload version 4 is supported, got {version!r}")
    alerts_raw = raw.get("alerts")
    if not isinstance(alerts_raw, list):
        raise PayloadError("alerts: expected a list of alerts")
    alerts = tuple(parse_alert(a, i) for i, a in enumerate(alerts_raw))
    status = raw.get("status") or ("firing" if any(a.firing for a in alerts) else "resolved")
    if status not in ("firing", "resolved"):
        raise PayloadError(f"status: expected 'firing' or 'resolved', got {status!r}")
    receiver = raw.get("receiver") or ""
    if not isinstance(receiver, str):
        raise PayloadError("receiver: expected a string")
    group_labels = _str_map(raw.get("groupLabels"), "groupLabels")
    group_key = raw.get("groupKey")
    if not isinstance(group_key, str) or not group_key:
        group_key = derived_group_key(group_labels)
    truncated = raw.get("truncatedAlerts", 0)
    if not isinstance(truncated, int) or isinstance(truncated, bool):
        truncated = 0
    ext = raw.get("externalURL") or ""
    return Notification(
        receiver=receiver_override or receiver,
        status=status,
        alerts=alerts,
        group_labels=group_labels,
        common_labels=_str_map(raw.get("commonLabels"), "commonLabels"),
        common_annotations=_str_map(raw.get("commonAnnotations"), "commonAnnotations"),
        external_url=ext if isinstance(ext, str) else "",
        group_key=group_key,
        truncated_alerts=max(0, truncated),
        version="4",
        extra={k: v for k, v in raw.items() if k not in _KNOWN_KEYS},
    )


def notification_to_json(n: Notification) -> dict[str, Any]:
    """Back to the v4 wire shape (for storage and previews)."""

    def ts(v: datetime | None) -> str:
        return v.isoformat().replace("+00:00", "Z") if v else "0001-01-01T00:00:00Z"

    return {
        "receiver": n.receiver,
        "status": n.status,
        "alerts": [
            {
                "status": a.status,
                "labels": a.labels,
                "annotations": a.annotations,
                "startsAt": ts(a.starts_at),
                "endsAt": ts(a.ends_at),
                "generatorURL": a.generator_url,
                "fingerprint": a.fingerprint,
            }
            for a in n.alerts
        ],
        "groupLabels": n.group_labels,
        "commonLabels": n.common_labels,
        "commonAnnotations": n.common_annotations,
        "externalURL": n.external_url,
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": n.truncated_alerts,
        **n.extra,
    }
