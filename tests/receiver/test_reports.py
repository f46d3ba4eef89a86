"""Reports from a real Prometheus with a week of history: images, numbers, alerts, runner."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import json
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from receiver.config import Config, config_from_dict
from receiver.prometheus import PrometheusClient
from receiver.report_data import Collector, aligned
from receiver.report_draw import Drawer
from receiver.reports import ReportRunner, report_command
from receiver.runtime import build_runtime
from receiver.store import IngestItem, NewMessage
from receiver.store_async import AsyncStore
from tests.promfill import API_RATE, WEB_RATE, PromFill, memory_at, prometheus_fill
from tests.receiver.test_charts import colours, pixels, png_size

__all__ = ["prometheus_fill"]
pytestmark = pytest.mark.e2e

DAY = 86400.0


def dashboard() -> dict[str, Any]:
    """A dashboard over promfill's series: a row, a stat, a table, a collapsed row holding a
    panel repeated per service (values looked up from Prometheus), and a text panel."""
    return {
        "uid": "report-test",
        "title": "Report test",
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "current": {}},
            {"name": "service", "type": "query", "multi": True, "includeAll": True,
             "current": {"value": ["$__all"]}, "options": [],
             "definition": "label_values(demo_requests_total, service)"},
        ]},
        "panels": [
            {"id": 1, "type": "row", "title": "Traffic", "gridPos": {"x": 0, "y": 0}},
            {"id": 2, "type": "timeseries", "title": "Requests", "gridPos": {"x": 0, "y": 1},
             "fieldConfig": {"defaults": {"unit": "reqps"}},
             "targets": [{"refId": "A", "legendFormat": "{{service}}", "expr":
                          'sum by (service) (rate(demo_requests_total{service=~"$service"}'
                          "[$__rate_interval]))"}]},
            {"id": 3, "type": "stat", "title": "API latency", "gridPos": {"x": 12, "y": 1},
             "fieldConfig": {"defaults": {"unit": "s", "thresholds": {"steps": [
                 {"value": None, "color": "green"}, {"value": 0.25, "color": "red"}]}}},
             "options": {"reduceOptions": {"calcs": ["mean"]}},
             "targets": [{"refId": "A", "expr": 'demo_latency_seconds{service="api"}'}]},
            {"id": 4, "type": "table", "title": "Memory", "gridPos": {"x": 18, "y": 1},
             "fieldConfig": {"defaults": {"unit": "bytes"}},
             "targets": [{"refId": "A", "expr": "demo_memory_bytes", "instant": True}]},
            {"id": 5, "type": "row", "title": "Per service", "collapsed": True,
             "gridPos": {"x": 0, "y": 9}, "panels": [
                 {"id": 6, "type": "timeseries", "title": "Rate of $service", "repeat": "service",
                  "gridPos": {"x": 0, "y": 10}, "fieldConfig": {"defaults": {"unit": "reqps"}},
                  "targets": [{"refId": "A", "legendFormat": "{{service}}", "expr":
                               'rate(demo_requests_total{service="$service"}[$__rate_interval])'}]},
             ]},
            {"id": 7, "type": "text", "title": "Notes", "gridPos": {"x": 0, "y": 20}},
        ],
    }  # fmt: skip


def make_config(tmp_path: Path, url: str, **extra: Any) -> Config:
    dash = tmp_path / "dash.json"
    dash.write_text(json.dumps(dashboard()))
    report = {
        "name": "daily",
        "schedule": "0 * * * *",
        "range": "1d",
        "dashboards": [{"file": str(dash)}],
        "to": ["leads@example.com"],
        **extra.pop("report", {}),
    }
    data = {
        "storage": {"path": str(tmp_path / "alertmail.db")},
        "prometheus": {"url": url},
        "smtp": {"from": "Alerts <alerts@example.com>", "servers": [{"host": "127.0.0.1"}]},
        "reports": [report],
        **extra,
    }
    return config_from_dict(data)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture(scope="module")
def drawer() -> Any:
    d = Drawer()
    yield d
    if d._pool is not None:
        d._pool.shutdown(wait=True, cancel_futures=True)


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def text_of(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


def html_of(msg: EmailMessage) -> str:
    part = msg.get_body(("html",))
    assert part is not None
    return str(part.get_content())


async def scalar(prom: PrometheusClient, expr: str, at: float) -> float:
    series = await prom.query(expr, at)
    assert len(series) == 1, (expr, series)
    return series[0].values[0][1]


async def test_report_images_and_numbers(
    tmp_path: Path, prometheus_fill: PromFill, session: aiohttp.ClientSession, drawer: Drawer
) -> None:
    config = make_config(tmp_path, prometheus_fill.url)
    store = await AsyncStore.open(config.storage.path)
    end = prometheus_fill.end
    # One alert email in the range: the store's side of the alert section.
    [ingested] = await store.run(store.store.ingest_batch, [IngestItem(
        end - 3600, "", "g1", "firing", "k1",
        json.dumps({"alerts": [{"labels": {"alertname": "HighLatency"}}]}), 0,
    )])  # fmt: skip
    alert_mail = NewMessage("email", json.dumps(["oncall@example.com"]), "alert", 3, b"x", end)
    alert_mail = dataclasses.replace(alert_mail, notification_id=ingested.notification_id)
    await store.run(store.store.enqueue, [alert_mail], end - 3500)
    try:
        runner = ReportRunner(store, build_runtime(config, None, None), session, drawer=drawer)
        msg, pngs = await runner.build("daily", datetime.fromtimestamp(end, UTC))
    finally:
        await store.close()
    msg = parse(msg.as_bytes())
    names = sorted(name for name, _ in pngs)
    assert names == [
        "report-test-panel-2.png", "report-test-panel-3.png",
        "report-test-panel-6-api.png", "report-test-panel-6-web.png",
    ]  # fmt: skip
    for name, png in pngs:
        size = (310, 130) if "panel-3" in name else (640, 260)
        assert png_size(png) == size
        img = pixels(png)
        assert colours(img[30:-40, 60:-20]) > 10, name  # lines and fills, not a blank canvas
    # Every PNG is an inline part the HTML refers to by Content-ID.
    html = html_of(msg)
    cids = {p["Content-ID"].strip("<>") for p in msg.walk() if p.get_content_type() == "image/png"}
    assert len(cids) == 4 and all(f"cid:{c}" in html for c in cids)
    # The table panel: an HTML table and a CSV attachment with the same rows.
    attachments = [p for p in msg.iter_attachments() if p.get_content_type() == "text/csv"]
    assert [a.get_filename() for a in attachments] == ["report-test-panel-4.csv"]
    csv_rows = attachments[0].get_content().splitlines()
    assert csv_rows[0] == "service,Value" and csv_rows[1].startswith("api,")
    assert float(csv_rows[1].split(",")[1]) == memory_at(end)
    assert "Memory" in html and "<table" in html

    text = text_of(msg)
    # Counter slopes are exact: rate is 5/s (api) and 2/s (web), today and yesterday.
    assert f"api: avg {API_RATE:g} req/s, max {API_RATE:g} req/s, p95 {API_RATE:g} req/s" in text
    assert f"web: avg {WEB_RATE:g} req/s, max {WEB_RATE:g} req/s" in text
    assert "vs previous ±0 %" in text
    assert "Rate of api" in text and "Rate of web" in text  # the repeat, titles substituted

    # Alerts: episodes from ALERTS, emails from the store.
    assert "Flapping (info): fired 8x" in text
    assert "HighLatency (warning): fired 3x" in text
    assert "1 email to oncall@example.com" in text
    assert "DiskFull (critical): fired 1x" in text and "1 firing now" in text
    assert "Still firing:\n  - DiskFull service=db, severity=critical" in text


async def test_numbers_match_promql(
    tmp_path: Path, prometheus_fill: PromFill, session: aiohttp.ClientSession
) -> None:
    """Key numbers equal PromQL's own subquery aggregates over the same instants."""
    config = make_config(tmp_path, prometheus_fill.url)
    prom = PrometheusClient(prometheus_fill.url, session, timeout=30)
    collector = Collector(config, prom, None, [tmp_path])
    end = prometheus_fill.end
    result = await collector.dashboard(config.reports[0].dashboards[0], end - DAY, end)
    stat = next(p for p in result.panels if p.panel.id == 3)
    ((_, k),) = stat.numbers
    step = stat.step
    _, b = aligned(end - DAY, end, step)
    sub = f'demo_latency_seconds{{service="api"}}[{DAY:.0f}s:{step:.0f}s]'
    assert math.isclose(k.mean, await scalar(prom, f"avg_over_time({sub})", b), rel_tol=1e-9)
    assert math.isclose(k.max, await scalar(prom, f"max_over_time({sub})", b), rel_tol=1e-9)
    p95 = await scalar(prom, f"quantile_over_time(0.95, {sub})", b)
    assert math.isclose(k.p95, p95, rel_tol=1e-9)
    prev = await scalar(prom, f"avg_over_time({sub} offset {DAY:.0f}s)", b)
    assert k.previous_mean is not None and math.isclose(k.previous_mean, prev, rel_tol=1e-9)
    assert stat.job is not None and stat.job.value == pytest.approx(k.mean)  # reducer: mean
    # Independently of Prometheus: the sine's average over whole days is its offset, 0.2 s.
    assert k.mean == pytest.approx(0.2, abs=0.005)


async def test_alert_history_matches_promql(
    prometheus_fill: PromFill, session: aiohttp.ClientSession
) -> None:
    from receiver.report_alerts import alert_section
    from receiver.report_stats import alerts_step

    prom = PrometheusClient(prometheus_fill.url, session, timeout=30)
    end = prometheus_fill.end
    section = await alert_section(prom, [], end - DAY, end)
    step = alerts_step(DAY)
    _, b = aligned(end - DAY, end, step)
    expected = {
        s.labels["alertname"]: s.values[0][1] * step
        for s in await prom.query(
            f'sum by (alertname) (count_over_time(ALERTS{{alertstate="firing"}}'
            f"[{DAY:.0f}s:{step:.0f}s]))",
            b,
        )
    }
    got = {s.alertname: s.firing_seconds for s in section.summaries}
    assert got == expected
    by = {s.alertname: s for s in section.summaries}
    assert [s.alertname for s in section.summaries] == ["Flapping", "HighLatency", "DiskFull"]
    assert (by["HighLatency"].episodes, by["HighLatency"].resolved_episodes) == (3, 3)
    # Episodes of 60, 30 and 60 minutes; backfilled series have no staleness markers, so each
    # stays visible for up to the 5-minute lookback after its last sample.
    mttr = by["HighLatency"].mean_time_to_resolve
    assert mttr is not None and 50 * 60 <= mttr <= 57 * 60
    assert by["DiskFull"].firing_now == 1 and by["DiskFull"].mean_time_to_resolve is None
    assert [f["alertname"] for f in section.firing_now] == ["DiskFull"]


async def runner_tick(config: Config, session: aiohttp.ClientSession, now: float) -> int:
    """One tick of a fresh runner on a fresh store instance (as after a restart)."""
    store = await AsyncStore.open(config.storage.path)
    try:
        runner = ReportRunner(store, build_runtime(config, None, None), session, clock=lambda: now)
        n = await runner.tick()
        n += await runner.tick()  # a second tick in the same period never queues it again
        await runner.close()
        return n
    finally:
        await store.close()


def reports_in_outbox(config: Config) -> list[tuple[str, str]]:
    import sqlite3

    db = sqlite3.connect(config.storage.path)
    try:
        rows = db.execute("SELECT kind, subject FROM outbox ORDER BY id").fetchall()
        return [(str(k), str(s)) for k, s in rows if k == "report"]
    finally:
        db.close()


async def test_period_unique_across_restart_and_missed_run(
    tmp_path: Path, prometheus_fill: PromFill, session: aiohttp.ClientSession
) -> None:
    config = make_config(tmp_path, prometheus_fill.url, report={"dashboards": []})
    t0 = 1_800_000_000.0 + 600  # 10 minutes past an hour (UTC)
    # First start: the period that ended 10 minutes ago predates the report: not missed.
    assert await runner_tick(config, session, t0) == 0
    # The next hour's period ends while running: sent once, however often it ticks.
    assert await runner_tick(config, session, t0 + 3000 + 5) == 1
    assert await runner_tick(config, session, t0 + 3000 + 30) == 0  # restart, same period
    assert len(reports_in_outbox(config)) == 1
    # Down for three periods: on start, the latest missed one is sent, once.
    assert await runner_tick(config, session, t0 + 4 * 3600) == 1
    assert await runner_tick(config, session, t0 + 4 * 3600 + 60) == 0
    subjects = [s for _, s in reports_in_outbox(config)]
    assert len(subjects) == 2
    end = datetime.fromtimestamp(t0 - 600 + 4 * 3600, UTC).strftime("%Y-%m-%d %H:%M")
    assert end in subjects[1]


async def test_report_command_out_and_send(
    tmp_path: Path, prometheus_fill: PromFill, capsys: pytest.CaptureFixture[str]
) -> None:
    # The range ends now; promfill's data ends a few hours ago, so a 2-day range has data.
    config = make_config(tmp_path, prometheus_fill.url, report={"range": "2d"})
    out = tmp_path / "out"
    assert await report_command(config, "daily", out, send=False) == 0
    eml = out / "daily.eml"
    msg = parse(eml.read_bytes())
    assert msg["To"] == "leads@example.com"
    assert msg["Subject"].startswith("[alertmail] Report daily:")
    inline = {
        p.get_filename(): p.get_content() for p in msg.walk() if p.get_content_type() == "image/png"
    }
    files = {p.name: p.read_bytes() for p in out.glob("*.png")}
    assert files == inline and len(files) == 4
    assert reports_in_outbox(config) == []  # --out alone never sends
    assert await report_command(config, "daily", None, send=True) == 0
    assert len(reports_in_outbox(config)) == 1
    assert "queued as outbox" in capsys.readouterr().out


async def test_unknown_report(tmp_path: Path) -> None:
    from receiver.errors import ConfigError

    config = make_config(tmp_path, "http://127.0.0.1:9")
    with pytest.raises(ConfigError, match="no report named 'nope' \\(daily\\)"):
        await report_command(config, "nope", tmp_path, send=False)
