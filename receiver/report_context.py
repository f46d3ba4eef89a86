"""A gathered report -> template context -> the email (HTML, text, inline PNGs, CSVs). Pure.

Numbers are formatted here with each panel's unit, so the HTML and the text part say the
same thing. Panel images are inline (Content-ID) parts; each table panel is also attached
as CSV with all its rows (the HTML shows at most TABLE_ROWS_HTML of them, fewer when the
email would otherwise pass the size budget).
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

from markupsafe import Markup

from receiver.render import HTML_BUDGET, InlineImage, Renderer
from receiver.render_context import format_time, make_link, one_line
from receiver.report_alerts import AlertSection
from receiver.report_data import TABLE_ROWS_HTML, DashboardResult, PanelResult
from receiver.report_stats import KeyNumbers
from receiver.units import format_duration
from receiver.units_format import format_value, table_html

MAX_ALERT_ROWS = 30
NOISIEST = 5
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass
class ReportData:
    name: str
    start: float
    end: float
    dashboards: list[DashboardResult] = field(default_factory=list)
    alerts: AlertSection = field(default_factory=AlertSection)


def file_stem(dash: DashboardResult, p: PanelResult) -> str:
    """A file name for a panel's PNG or CSV: dashboard uid (or ref) and the panel key."""
    base = _SAFE.sub("_", dash.uid or dash.ref).strip("_") or "dashboard"
    return f"{base}-panel-{p.panel.key}"


def change_text(k: KeyNumbers) -> tuple[str, str]:
    """("+12.3 %", "up") for the change of the mean; ("n/a", "") without a previous period."""
    c = k.change
    if c is None or math.isnan(c):
        return "n/a", ""
    if abs(c) < 0.0005:
        return "±0 %", "flat"
    return f"{c * 100:+.1f} %".replace("-", "−"), "up" if c > 0 else "down"


def _numbers(p: PanelResult) -> list[dict[str, str]]:
    unit, dec = p.panel.unit, p.panel.decimals
    out = []
    for name, k in p.numbers:
        change, direction = change_text(k)
        out.append(
            {
                "name": one_line(name, 120) or p.panel.title,
                "mean": format_value(k.mean, unit, dec),
                "max": format_value(k.max, unit, dec),
                "p95": format_value(k.p95, unit, dec),
                "previous": format_value(k.previous_mean, unit, dec),
                "change": change,
                "direction": direction,
            }
        )
    return out


def table_csv(p: PanelResult) -> bytes:
    assert p.table is not None
    columns, rows = p.table
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if v is None else repr(v) if isinstance(v, float) else v for v in row])
    return buf.getvalue().encode("utf-8")


def _panel_view(dash: DashboardResult, p: PanelResult, cids: dict[int, str], rows: int) -> Any:
    view: dict[str, Any] = {
        "title": one_line(p.panel.title, 200) or f"Panel {p.panel.id}",
        "row": one_line(p.panel.row or "", 200),
        "kind": p.kind,
        "cid": cids.get(id(p)),
        "width": p.width,
        "height": p.height,
        "source": p.source,
        "notes": [one_line(n, 300) for n in p.notes],
        "link": make_link(p.link) if p.link else None,
        "numbers": _numbers(p),
        "more_series": p.more_series,
        "no_data": not p.numbers and p.table is None,
        "table": None,
        "table_hidden_rows": 0,
        "csv_name": None,
    }
    if p.table is not None:
        columns, all_rows = p.table
        units = {c: p.panel.unit for c in columns if c.startswith("Value")} if p.panel.unit else {}
        view["table"] = Markup(table_html(columns, all_rows[:rows], units=units))  # escaped there
        view["table_hidden_rows"] = max(0, len(all_rows) - rows)
        view["table_empty"] = not all_rows
        view["table_text"] = [
            ", ".join(f"{c}={v}" for c, v in zip(columns, r, strict=False) if v is not None)
            for r in all_rows[:rows]
        ]
        view["csv_name"] = file_stem(dash, p) + ".csv"
    return view


def _alerts_view(a: AlertSection) -> dict[str, Any]:
    emails: Counter[str] = Counter()
    recipients: defaultdict[str, set[str]] = defaultdict(set)
    per_recipient: Counter[str] = Counter()
    failed = 0
    for n in a.notified:
        if n.state == "superseded":
            continue  # replaced by a newer message before it went out: nobody got it
        failed += n.state == "dead"
        for r in n.recipients:
            per_recipient[r] += 1
        for name in n.alertnames:
            emails[name] += 1
            recipients[name].update(n.recipients)
    by_name = {s.alertname: s for s in a.summaries}
    # Prometheus's noisiest first, then names only seen in emails (resolved before the range
    # or not firing in this Prometheus), most emailed first.
    only_emailed = sorted(set(emails) - set(by_name), key=lambda x: (-emails[x], x))
    rows = []
    for name in [*by_name, *only_emailed]:
        s = by_name.get(name)
        rows.append(
            {
                "name": one_line(name, 200),
                "severity": one_line(s.severity, 40) if s else "",
                "episodes": s.episodes if s else 0,
                "firing": format_duration(s.firing_seconds) if s else "–",
                "mttr": format_duration(s.mean_time_to_resolve)
                if s and s.mean_time_to_resolve is not None
                else "–",
                "firing_now": s.firing_now if s else 0,
                "emails": emails.get(name, 0),
                "recipients": ", ".join(sorted(recipients.get(name, ()))),
            }
        )
    firing_now = [
        {
            "name": one_line(labels.get("alertname", "?"), 200),
            "labels": one_line(
                ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "alertname"), 300
            ),
        }
        for labels in a.firing_now
    ]
    return {
        "error": a.error,
        "rows": rows[:MAX_ALERT_ROWS],
        "hidden_rows": max(0, len(rows) - MAX_ALERT_ROWS),
        "total_episodes": sum(s.episodes for s in a.summaries),
        "total_firing": format_duration(sum(s.firing_seconds for s in a.summaries)),
        "noisiest": [r["name"] for r in rows if r["episodes"]][:NOISIEST],
        "firing_now": firing_now[:MAX_ALERT_ROWS],
        "emails_total": sum(1 for n in a.notified if n.state != "superseded"),
        "emails_failed": failed,
        "recipients": [{"address": r, "emails": c} for r, c in per_recipient.most_common(20)],
    }


def report_context(
    data: ReportData,
    *,
    renderer: Renderer,
    now: datetime,
    cids: dict[int, str],
    subject: str | None,
    rows: int = TABLE_ROWS_HTML,
) -> dict[str, Any]:
    tz = renderer.timezone
    dashboards = []
    for d in data.dashboards:
        dashboards.append(
            {
                "title": one_line(d.title, 200),
                "ref": one_line(d.ref, 200),
                "link": make_link(d.link) if d.link else None,
                "error": one_line(d.error, 400) if d.error else None,
                "panels": [_panel_view(d, p, cids, rows) for p in d.panels],
            }
        )
    return {
        "name": data.name,
        "subject": one_line(subject, 200) if subject else "",
        "period_start": format_time(datetime.fromtimestamp(data.start, UTC), tz),
        "period_end": format_time(datetime.fromtimestamp(data.end, UTC), tz),
        "range_text": format_duration(data.end - data.start),
        "dashboards": dashboards,
        "alerts": _alerts_view(data.alerts),
        "generated_at": format_time(now, tz),
        "timezone": tz.key,
    }


def report_email(
    data: ReportData,
    images: dict[int, InlineImage],
    *,
    renderer: Renderer,
    sender: str,
    to: Sequence[str],
    message_id: str,
    now: datetime,
    subject: str | None,
) -> EmailMessage:
    """The finished email. ``images`` maps id(PanelResult) -> its PNG as an inline image."""
    cids = {key: img.cid for key, img in images.items()}
    html = ""
    for rows in (TABLE_ROWS_HTML, 10, 0):  # tables shrink first: the CSVs carry every row
        ctx = report_context(
            data, renderer=renderer, now=now, cids=cids, subject=subject, rows=rows
        )
        html = renderer.render_html("report.html.j2", **ctx)
        if len(html.encode()) <= HTML_BUDGET:
            break
    text_ctx = report_context(data, renderer=renderer, now=now, cids=cids, subject=subject)
    msg = renderer.message(
        sender=sender,
        to=to,
        subject=renderer.render_string("report.subject.j2", **text_ctx),
        message_id=message_id,
        now=now,
        html=html,
        text=renderer.render_string("report.txt.j2", **text_ctx),
        images=list(images.values()),
    )
    for d in data.dashboards:
        for p in d.panels:
            if p.table is not None:
                msg.add_attachment(
                    table_csv(p), maintype="text", subtype="csv", filename=file_stem(d, p) + ".csv"
                )
    return msg


def check_report_templates(renderer: Renderer) -> list[str]:
    """report.* templates render from sample data ("file:line: message" on error), for
    ``alertmail check`` and config reloads."""
    from receiver.dashboards import Panel
    from receiver.errors import TemplateError
    from receiver.report_stats import AlertSummary
    from receiver.store_reports import NotifiedEmail

    def panel(pid: int, kind: str, **kw: Any) -> PanelResult:
        p = Panel(pid, f"Panel {pid}", kind, (), "reqps", None, (), "mean", "Row")
        return PanelResult(p, kind, 640, 260, **kw)

    end = datetime(2026, 12, 7, 8, 0, tzinfo=UTC).timestamp()
    k = KeyNumbers(5.0, 7.5, 6.0, 4.0)
    chart = panel(1, "chart", numbers=[("api", k)], more_series=2, notes=["a note"])
    dash = DashboardResult(
        "uid", "uid", "Dashboard", "https://grafana.example.com/d/uid/x",
        [chart, panel(2, "stat", numbers=[("", k)]), panel(3, "table", table=(["a"], [["b"]]))],
    )  # fmt: skip
    alerts = AlertSection(
        [AlertSummary("HighLatency", "warning", 3, 9000.0, 2, 3000.0, 1, 1)],
        [{"alertname": "HighLatency", "service": "api"}],
        [NotifiedEmail(1, "alert", "sent", ("oncall@example.com",), ("HighLatency",))],
    )
    data = ReportData(
        "weekly",
        end - 7 * 86400,
        end,
        [dash, DashboardResult("f", "", "f", None, error="gone")],
        alerts,
    )
    images = {id(chart): InlineImage("p1@alertmail", b"\x89PNG", filename="p1.png")}
    try:
        report_email(
            data, images, renderer=renderer, sender="alerts@example.com", to=["a@example.com"],
            message_id="<check@example.com>", now=datetime.fromtimestamp(end, UTC), subject=None,
        )  # fmt: skip
    except TemplateError as exc:
        return [str(exc)]
    return []
