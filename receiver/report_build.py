"""One report build, start to finish, in a worker process: queries, drawing, rendering.

The receiver's event loop acknowledges webhooks; a report is seconds of JSON decoding,
numpy, matplotlib and Jinja. Any of that on the loop (or in a thread, holding the GIL)
shows up in ingest latency, so the whole build runs in a drawing process (niced, see
report_draw) with its own event loop and HTTP session. The receiver only reads the store
beforehand (notified emails) and queues the result afterwards.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import aiohttp

from receiver.config import Config
from receiver.grafana import GrafanaClient
from receiver.prometheus import PrometheusClient
from receiver.render import InlineImage, Renderer
from receiver.report_alerts import alert_section
from receiver.report_context import ReportData, file_stem, report_email
from receiver.report_data import Collector, PanelResult
from receiver.report_draw import draw
from receiver.store_reports import NotifiedEmail

log = logging.getLogger(__name__)

QUERY_TIMEOUT = 30.0  # a week of a busy panel takes longer than an alert graph's budget
GRAFANA_TIMEOUT = 30.0  # the image renderer starts a browser per panel
# A report is background work: one query at a time. Prometheus runs a query on one core
# but several at once on all of them, and it often shares the host with the receiver,
# whose webhook answers should not wait for a week of range queries.
QUERY_CONCURRENCY = 1

_renderers: dict[tuple[Path | None, str], Renderer] = {}


@dataclass(frozen=True)
class BuildJob:
    """Everything a build needs, as plain picklable data."""

    config: Config
    config_path: Path | None
    name: str
    start: float
    end: float
    now: float
    notified: list[NotifiedEmail]
    sender: str
    message_id: str


Built = tuple[EmailMessage, list[tuple[str, bytes]]]


def build_report(job: BuildJob) -> Built:
    """Runs in a worker process (top level, so it pickles by reference)."""
    return asyncio.run(_build(job))


def _renderer(config: Config) -> Renderer:
    key = (config.templates_dir, config.timezone)
    if key not in _renderers:  # one per worker: the Jinja environment caches templates
        _renderers[key] = Renderer(config.templates_dir, config.tz)
    return _renderers[key]


async def _build(job: BuildJob) -> Built:
    config = job.config
    report = next(r for r in config.reports if r.name == job.name)
    async with aiohttp.ClientSession() as session:
        prom = PrometheusClient(
            config.prometheus.url,
            session,
            timeout=max(config.prometheus.query_timeout, QUERY_TIMEOUT),
            semaphore=asyncio.Semaphore(QUERY_CONCURRENCY),
        )
        grafana = None
        if config.grafana is not None:
            token = config.grafana.token.get_secret_value() if config.grafana.token else None
            grafana = GrafanaClient(config.grafana.url, token, session, timeout=GRAFANA_TIMEOUT)
        bases = [p.parent for p in (job.config_path,) if p is not None] + [Path.cwd()]
        collector = Collector(config, prom, grafana, bases)
        dashboards, alerts = await asyncio.gather(
            asyncio.gather(
                *(collector.dashboard(r, job.start, job.end) for r in report.dashboards)
            ),
            alert_section(prom, job.notified, job.start, job.end),
        )
    data = ReportData(report.name, job.start, job.end, list(dashboards), alerts)
    images = _images(data)
    msg = report_email(
        data,
        images,
        renderer=_renderer(config),
        sender=job.sender,
        to=report.to,
        message_id=job.message_id,
        now=datetime.fromtimestamp(job.now, UTC),
        subject=report.subject,
    )
    return msg, [(img.filename, img.data) for img in images.values()]


def _images(data: ReportData) -> dict[int, InlineImage]:
    """id(panel) -> image: Grafana's renders as they came, the others drawn here."""
    done: list[tuple[str, PanelResult, bytes]] = []
    for d in data.dashboards:
        for p in d.panels:
            png = p.image
            if png is None and p.job is not None:
                try:
                    png = draw(p.job)
                except Exception as exc:  # one bad panel must not cost the whole report
                    log.warning("panel %s could not be drawn: %r", p.panel.title, exc)
                    p.notes.append(f"could not be drawn: {type(exc).__name__}")
            if png is not None:
                done.append((file_stem(d, p), p, png))
    out: dict[int, InlineImage] = {}
    for stem, p, png in done:
        cid = f"{stem}.{hashlib.sha256(png).hexdigest()[:12]}@alertmail"
        out[id(p)] = InlineImage(cid=cid, data=png, subtype="png", filename=f"{stem}.png")
    return out
