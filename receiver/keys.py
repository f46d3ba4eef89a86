"""Typed keys for what the aiohttp application holds."""

from __future__ import annotations

from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

from receiver.alert_graph import AlertGrapher
from receiver.metrics import ReceiverMetrics
from receiver.runtime import Runtime
from receiver.store_async import AsyncStore

if TYPE_CHECKING:
    from receiver.delivery import EmailWorker
    from receiver.dispatcher import Dispatcher
    from receiver.reports import ReportRunner
    from receiver.scheduler import Scheduler
    from receiver.slack_delivery import SlackWorker

RUNTIME = web.AppKey("runtime", Runtime)
METRICS = web.AppKey("metrics", ReceiverMetrics)
STORE = web.AppKey("store", AsyncStore)
DISPATCHER: web.AppKey[Dispatcher] = web.AppKey("dispatcher")
EMAIL_WORKER: web.AppKey[EmailWorker] = web.AppKey("email_worker")
SLACK_WORKER: web.AppKey[SlackWorker] = web.AppKey("slack_worker")
SCHEDULER: web.AppKey[Scheduler] = web.AppKey("scheduler")
REPORTS: web.AppKey[ReportRunner] = web.AppKey("reports")
HTTP_SESSION = web.AppKey("http_session", aiohttp.ClientSession)
GRAPHER = web.AppKey("grapher", AlertGrapher)
