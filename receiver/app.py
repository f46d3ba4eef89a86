"""create_app(config) -> web.Application: routes, and long-lived resources in cleanup_ctx."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from receiver.alert_graph import AlertGrapher
from receiver.channels.slack import SlackClient
from receiver.config import Config
from receiver.cron import parse_cron
from receiver.delivery import EmailWorker
from receiver.dispatcher import Dispatcher
from receiver.errors import AlertmailError, ConfigError, StoreError
from receiver.keys import (
    DISPATCHER,
    EMAIL_WORKER,
    GRAPHER,
    HTTP_SESSION,
    METRICS,
    REPORTS,
    RUNTIME,
    SCHEDULER,
    SLACK_WORKER,
    STORE,
)
from receiver.metrics import ReceiverMetrics
from receiver.reports import ReportRunner
from receiver.runtime import build_runtime, reload_runtime
from receiver.scheduler import Scheduler
from receiver.slack_delivery import SlackWorker
from receiver.store_async import AsyncStore
from receiver.web import REPORT_NEXT_RUN, setup_web
from receiver.webhook import check_auth, expect_continue, handle_webhook

log = logging.getLogger(__name__)

TASKS = web.AppKey("tasks", list)
PRUNE_EVERY = 3600.0
# A receiver started while the previous one still runs on the same database (an
# overlapping restart) waits this long for it to exit.
RECEIVER_LOCK_WAIT = 15.0


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    """Ready = can accept and store a webhook. Never depends on SMTP or Slack."""
    store = request.app[STORE]
    try:
        await asyncio.wait_for(store.run_urgent(store.store.ping), timeout=5.0)
    except (StoreError, TimeoutError) as exc:
        return web.Response(status=503, text=f"store not writable: {exc}\n")
    return web.Response(text="ready\n")


async def metrics_handler(request: web.Request) -> web.Response:
    app = request.app
    metrics = app[METRICS]
    store = app[STORE]
    try:
        counts, oldest = await store.run(store.store.outbox_stats)
        metrics.set_outbox(counts, oldest, app[DISPATCHER].clock())
    except StoreError as exc:
        log.warning("outbox gauges not updated: %s", exc)
    body = generate_latest(metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def reload_handler(request: web.Request) -> web.Response:
    # Like the webhook, it needs the `auth` credentials when they are set: a reload builds
    # a new renderer and worker pool, which no anonymous caller should set off at will.
    if not check_auth(request.app[RUNTIME].config.auth, request.headers.get("Authorization")):
        return web.json_response(
            {"status": "error", "error": "missing or wrong credentials"}, status=401
        )
    try:
        await reload_app(request.app)
    except ConfigError as exc:
        return web.json_response({"status": "error", "error": str(exc)}, status=400)
    return web.json_response({"status": "ok"})


async def reload_app(app: web.Application) -> None:
    """Re-read config and templates; a bad new config is refused and the old one kept."""
    runtime = app[RUNTIME]
    try:
        new = await reload_runtime(runtime, app[METRICS])
    except ConfigError as exc:
        log.error("config reload refused, keeping the running config: %s", exc)
        raise
    runtime.replace_with(new)
    app[EMAIL_WORKER].wake()
    app[SLACK_WORKER].wake()
    log.info("config reloaded from %s", runtime.config_path)


def _spawn(app: web.Application, coro: Coroutine[Any, Any, None], name: str) -> None:
    task = asyncio.create_task(coro, name=name)
    task.add_done_callback(_log_crash)
    app[TASKS].append(task)


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background task %s crashed", task.get_name(), exc_info=task.exception())


async def _prune_loop(app: web.Application) -> None:
    store = app[STORE]
    while True:
        retention = app[RUNTIME].config.storage.retention
        try:
            removed = await store.run(store.store.prune, time.time() - retention)
            if removed:
                log.info("pruned %d rows older than the retention", removed)
        except AlertmailError as exc:
            log.warning("pruning failed: %s", exc)
        await asyncio.sleep(PRUNE_EVERY)


def create_app(
    config: Config,
    *,
    config_path: Path | None = None,
    clock: Callable[[], float] = time.time,
    metrics: ReceiverMetrics | None = None,
    run_scheduler: bool = True,
) -> web.Application:
    metrics = metrics or ReceiverMetrics()
    runtime = build_runtime(config, config_path, metrics)
    # Bodies are read and bounded by the webhook handler itself (max_body can be reloaded).
    app = web.Application(client_max_size=1 << 40)
    app[RUNTIME] = runtime
    app[METRICS] = metrics
    app[TASKS] = []

    async def resources(app: web.Application) -> AsyncIterator[None]:
        store = await AsyncStore.open(config.storage.path, receiver_wait=RECEIVER_LOCK_WAIT)
        app[STORE] = store
        recovered = await store.run(store.store.recover_sending)
        if recovered:
            log.warning(
                "%d message(s) were being sent when alertmail stopped; resending", recovered
            )
        session = aiohttp.ClientSession()
        app[HTTP_SESSION] = session
        if runtime.render_pool is not None and config.smtp is not None and config.routes:
            runtime.render_pool.warm_up()
        grapher = AlertGrapher(
            config.prometheus,
            session,
            tz=config.tz,
            on_skip=lambda reason: metrics.graphs.labels(reason).inc(),
        )
        app[GRAPHER] = grapher
        if config.prometheus.external_urls:
            # Charting is configured: start the drawing process now, so the first alert
            # email does not lose its graph to the interpreter's cold start.
            grapher.warm_up()
        email = EmailWorker(store, runtime, metrics, clock=clock)
        slack = SlackWorker(store, runtime, metrics, clock=clock)
        slack.client = SlackClient(
            session, api_url=config.slack.api_url, timeout=config.slack.timeout
        )

        def wake_workers() -> None:
            email.wake()
            slack.wake()

        dispatcher = Dispatcher(
            store,
            runtime,
            clock=clock,
            on_queued=wake_workers,
            metrics=metrics,
            grapher=grapher,
        )
        scheduler = Scheduler(store, runtime, metrics, clock=clock, on_queued=wake_workers)
        app[EMAIL_WORKER] = email
        app[SLACK_WORKER] = slack
        app[DISPATCHER] = dispatcher
        app[SCHEDULER] = scheduler
        # Its own task: a build takes a second or two and must not delay digests or the
        # dead man's switch.
        reports = ReportRunner(store, runtime, session, clock=clock, on_queued=wake_workers)
        app[REPORTS] = reports
        _spawn(app, dispatcher.run(), "alertmail-dispatcher")
        _spawn(app, email.run(), "alertmail-email-worker")
        _spawn(app, slack.run(), "alertmail-slack-worker")
        if run_scheduler:
            _spawn(app, scheduler.run(), "alertmail-scheduler")
            _spawn(app, reports.run(), "alertmail-reports")
        _spawn(app, _prune_loop(app), "alertmail-prune")
        try:
            yield
        finally:
            timeout = app[RUNTIME].config.shutdown_timeout
            await asyncio.gather(email.stop(timeout), slack.stop(timeout))
            for task in app[TASKS]:
                task.cancel()
            await asyncio.gather(*app[TASKS], return_exceptions=True)
            await reports.close()
            chain = app[RUNTIME].smtp
            if chain is not None:
                await chain.close()
            pool = app[RUNTIME].render_pool
            if pool is not None:
                pool.close()
            await grapher.close()
            await session.close()
            with contextlib.suppress(StoreError):
                await store.close()

    app.cleanup_ctx.append(resources)
    app.router.add_post("/webhook", handle_webhook, expect_handler=expect_continue)
    app.router.add_post("/webhook/{receiver}", handle_webhook, expect_handler=expect_continue)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_post("/-/reload", reload_handler)
    setup_web(app)

    def report_next_run(name: str) -> float | None:
        report = next((r for r in runtime.config.reports if r.name == name), None)
        if report is None:
            return None
        now = datetime.fromtimestamp(clock(), runtime.config.tz)
        return parse_cron(report.schedule).next_after(now).timestamp()

    app[REPORT_NEXT_RUN] = report_next_run
    return app
