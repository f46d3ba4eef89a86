"""The alert section of a report: Prometheus's firing history plus what we emailed.

Firing history comes from ``ALERTS{alertstate="firing"}`` over the range (see report_stats);
the store adds which emails went out about each alertname and to whom.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from receiver.prometheus import PrometheusClient, PrometheusError
from receiver.report_data import aligned
from receiver.report_stats import AlertSummary, alert_history, alerts_step
from receiver.store_reports import NotifiedEmail


@dataclass
class AlertSection:
    summaries: list[AlertSummary] = field(default_factory=list)
    firing_now: list[dict[str, str]] = field(default_factory=list)
    notified: list[NotifiedEmail] = field(default_factory=list)
    error: str | None = None


async def alert_section(
    prom: PrometheusClient, notified: list[NotifiedEmail], start: float, end: float
) -> AlertSection:
    step = alerts_step(end - start)
    a, b = aligned(start, end, step)
    section = AlertSection(notified=notified)
    try:
        series = await prom.query_range('ALERTS{alertstate="firing"}', a, b, step)
    except PrometheusError as exc:
        section.error = f"alert history unavailable: {exc}"
        return section
    section.summaries = alert_history(series, step, b)
    for s in series:
        if s.values and s.values[-1][0] >= b - step / 2:
            section.firing_now.append(
                {k: v for k, v in s.labels.items() if k not in ("__name__", "alertstate")}
            )
    return section
