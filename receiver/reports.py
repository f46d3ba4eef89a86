"""Scheduled reports: when a report is due, build it and queue it through the outbox.

A report's period ends at a cron time of its ``schedule`` (in the configured time zone) and
covers ``range`` before that. (report name, period end) is a unique key in the store,
written in the same transaction that queues the email: a restart never sends a period
twice, and a crash while a report is being built just builds it again. A period that ended
while the receiver was down is built once on start (only the latest one: three missed
weekly reports are not worth three emails); one that ended before the report was first
configured is not.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import aiohttp

from receiver.config import Config, ReportConfig
from receiver.cron import CronSchedule, parse_cron
from receiver.errors import AlertmailError, ConfigError
from receiver.render import make_message_id
from receiver.report_build import BuildJob, Built, build_report
from receiver.report_draw import Drawer
from receiver.runtime import Runtime
from receiver.store_async import AsyncStore
from receiver.store_types import NewMessage

log = logging.getLogger(__name__)

REPORT_PRIORITY = 20  # after every alert, digest and catch-up (severity ranks are lower)
RETRY_AFTER = 300.0  # a report that failed to build is tried again this much later
DEFAULT_SENDER = "alertmail <alertmail@localhost>"  # --out without an smtp section


class ReportRunner:
    def __init__(
        self,
        store: AsyncStore,
        runtime: Runtime,
        session: aiohttp.ClientSession,
        *,
        clock: Callable[[], float] = time.time,
        drawer: Drawer | None = None,
        on_queued: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.runtime = runtime
        self.session = session
        self.clock = clock
        self.drawer = drawer or Drawer()
        self._on_queued = on_queued
        self._schedules: dict[str, CronSchedule] = {}
        self._first_seen: dict[str, float] = {}
        self._done: dict[str, float] = {}  # name -> last period end known to be queued
        self._retry_at: dict[str, float] = {}
        self._lock = asyncio.Lock()
        self._q = store.store

    # -- scheduling ---------------------------------------------------------------------
    def _schedule(self, report: ReportConfig) -> CronSchedule:
        cached = self._schedules.get(report.schedule)
        if cached is None:
            cached = self._schedules[report.schedule] = parse_cron(report.schedule)
        return cached

    async def due_period(self, report: ReportConfig, now: float) -> float | None:
        """The end of the period to send now, or None."""
        tz = self.runtime.config.tz
        end = self._schedule(report).last_at_or_before(datetime.fromtimestamp(now, tz))
        period_end = end.timestamp()
        if self._done.get(report.name) == period_end or self._retry_at.get(report.name, 0) > now:
            return None
        if report.name not in self._first_seen:
            first = await self.store.run(self._q.report_first_seen, report.name, now)
            self._first_seen[report.name] = first
        if period_end <= self._first_seen[report.name]:
            return None  # ended before this report existed: not a missed run
        if await self.store.run(self._q.report_period_done, report.name, period_end):
            self._done[report.name] = period_end
            return None
        return period_end

    async def tick(self) -> int:
        """Build and queue every report whose period is due; the number queued."""
        if self._lock.locked():
            return 0  # the previous tick is still drawing
        async with self._lock:
            config = self.runtime.config
            if config.smtp is None or not config.reports:
                return 0
            queued = 0
            for report in config.reports:
                now = self.clock()
                period_end = await self.due_period(report, now)
                if period_end is None:
                    continue
                try:
                    queued += await self._run(report, period_end, now)
                except (AlertmailError, OSError, ValueError) as exc:
                    log.error(
                        "report %s failed, retrying in %.0fs: %s", report.name, RETRY_AFTER, exc
                    )
                    self._retry_at[report.name] = now + RETRY_AFTER
            if queued:
                self._on_queued()
            return queued

    async def _run(self, report: ReportConfig, period_end: float, now: float) -> int:
        started = time.monotonic()
        msg, _ = await self.build(report.name, datetime.fromtimestamp(period_end, UTC))
        message = report_message(msg, report, period_end)
        start = period_end - report.range
        outbox_id = await self.store.run(
            self._q.commit_report, report.name, start, period_end, message, now
        )
        self._done[report.name] = period_end
        if outbox_id is None:
            log.info("report %s for %s was already queued", report.name, _iso(period_end))
            return 0
        log.info(
            "report %s for the period ending %s queued as outbox #%d (built in %.1fs)",
            report.name, _iso(period_end), outbox_id, time.monotonic() - started,
        )  # fmt: skip
        return 1

    async def run(self, every: float = 30.0) -> None:
        """Check every ``every`` seconds (cron has minute resolution)."""
        while True:
            try:
                await self.tick()
            except AlertmailError as exc:
                log.error("report scheduling failed, will retry: %s", exc)
            await asyncio.sleep(every)

    # -- building -----------------------------------------------------------------------
    async def build(self, name: str, now: datetime) -> Built:
        """The report ``name`` for the range ending at ``now``: the email and its PNGs.

        Built in a worker process (report_build); here only the store is read.
        """
        config = self.runtime.config
        report = find_report(config, name)
        end = now.timestamp()
        start = end - report.range
        notified = await self.store.run(self._q.notified_emails, start, end)
        sender = config.smtp.from_ if config.smtp else DEFAULT_SENDER
        job = BuildJob(
            config=config,
            config_path=self.runtime.config_path,
            name=name,
            start=start,
            end=end,
            now=self.clock(),
            notified=notified,
            sender=sender,
            message_id=make_message_id(sender),
        )
        return await self.drawer.run(build_report, job)

    async def close(self) -> None:
        await self.drawer.close()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def find_report(config: Config, name: str) -> ReportConfig:
    for r in config.reports:
        if r.name == name:
            return r
    known = ", ".join(r.name for r in config.reports) or "none configured"
    raise ConfigError("<config>", "reports", f"no report named {name!r} ({known})")


def report_message(msg: EmailMessage, report: ReportConfig, received_at: float) -> NewMessage:
    return NewMessage(
        channel="email",
        target=json.dumps(list(report.to)),
        kind="report",
        priority=REPORT_PRIORITY,
        payload=msg.as_bytes(policy=SMTP),
        received_at=received_at,
        message_id=str(msg["Message-ID"]),
        subject=str(msg["Subject"]),
    )


def write_out(out: Path, name: str, msg: EmailMessage, pngs: list[tuple[str, bytes]]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    eml = out / f"{name}.eml"
    eml.write_bytes(msg.as_bytes(policy=SMTP))
    for filename, data in pngs:
        (out / filename).write_bytes(data)
    return eml


async def report_command(
    config: Config, name: str, out: Path | None, send: bool, *, config_path: Path | None = None
) -> int:
    """``alertmail report NAME [--out DIR] [--send]``: build the report for the range ending
    now; write the .eml and PNGs to DIR, and/or queue it in the outbox."""
    from receiver.runtime import build_runtime

    if out is None and not send:
        print("alertmail report: give --out DIR, --send, or both", file=sys.stderr)
        return 2
    if send and config.smtp is None:
        raise ConfigError("<config>", "smtp", "no smtp section: a report cannot be sent")
    report = find_report(config, name)
    runtime = build_runtime(config, config_path, None)
    store = await AsyncStore.open(config.storage.path)
    try:
        async with aiohttp.ClientSession() as session:
            runner = ReportRunner(store, runtime, session)
            try:
                msg, pngs = await runner.build(name, datetime.now(UTC))
            finally:
                await runner.close()
        if out is not None:
            eml = await asyncio.to_thread(write_out, out, name, msg, pngs)
            print(f"wrote {eml} and {len(pngs)} image(s) to {out}")
        if send:
            now = time.time()
            ids = await store.run(store.store.enqueue, [report_message(msg, report, now)], now)
            print(
                f"queued as outbox #{ids[0]} to {', '.join(report.to)}; a running receiver sends it"
            )
    finally:
        await store.close()
    return 0
