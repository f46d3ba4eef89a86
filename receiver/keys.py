"""Typed keys for what the aiohttp application holds."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from receiver.metrics import ReceiverMetrics
from receiver.runtime import Runtime
from receiver.store_async import AsyncStore

if TYPE_CHECKING:
    from receiver.delivery import EmailWorker
    from receiver.dispatcher import Dispatcher

RUNTIME = web.AppKey("runtime", Runtime)
METRICS = web.AppKey("metrics", ReceiverMetrics)
STORE = web.AppKey("store", AsyncStore)
DISPATCHER: web.AppKey[Dispatcher] = web.AppKey("dispatcher")
EMAIL_WORKER: web.AppKey[EmailWorker] = web.AppKey("email_worker")
