"""Sample notifications that ``Renderer.check()`` (and previews) render templates against.

They cover what templates must cope with: a firing/resolved mix with truncated alerts, a
resolved-only group, and an empty one.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from receiver.model import Notification, parse_notification


def sample_notifications(now: datetime) -> list[Notification]:
    """Notifications check() renders: firing+resolved mix, resolved only, and empty."""
    started = (now - timedelta(minutes=12)).isoformat().replace("+00:00", "Z")
    ended = (now - timedelta(minutes=1)).isoformat().replace("+00:00", "Z")

    def alert(status: str, service: str, severity: str) -> dict[str, Any]:
        return {
            "status": status,
            "labels": {"alertname": "HighErrorRate", "service": service, "severity": severity},
            "annotations": {
                "summary": f"High error rate on {service}",
                "description": f"{service} logs errors.\nSecond line.",
                "runbook_url": "https://runbooks.example.com/high-error-rate",
                "dashboard": "https://grafana.example.com/d/abc",
            },
            "startsAt": started,
            "endsAt": ended if status == "resolved" else "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.example.com:9090/graph?g0.expr=up",
            "fingerprint": f"{service}{severity}",
        }

    def payload(alerts: list[dict[str, Any]], truncated: int = 0) -> Notification:
        return parse_notification(
            {
                "receiver": "sample",
                "status": "firing",
                "alerts": alerts,
                "groupLabels": {"alertname": "HighErrorRate"},
                "commonLabels": {"alertname": "HighErrorRate"},
                "commonAnnotations": {},
                "externalURL": "http://alertmanager.example.com:9093",
                "version": "4",
                "groupKey": '{}:{alertname="HighErrorRate"}',
                "truncatedAlerts": truncated,
            }
        )

    mixed = [
        alert("firing", "api", "critical"),
        alert("firing", "db", "warning"),
        alert("resolved", "worker", "critical"),
    ]
    return [
        payload(mixed, truncated=2),
        payload([alert("resolved", "api", "critical")]),
        payload([]),
    ]
