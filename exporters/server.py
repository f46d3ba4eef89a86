"""The exporter's HTTP side: /metrics from an explicit registry, /healthz, the tail task."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from exporters.config import ExporterConfig
from exporters.metrics import Store
from exporters.tail import Tailer, read_stream

log = logging.getLogger(__name__)
REGISTRY = web.AppKey("registry", CollectorRegistry)
STORE = web.AppKey("store", Store)
TAILER = web.AppKey("tailer", Tailer)
HEALTH = web.AppKey("health", dict)


def create_app(cfg: ExporterConfig) -> web.Application:
    registry = CollectorRegistry()
    store = Store(cfg, registry)
    app = web.Application()
    app[REGISTRY] = registry
    app[STORE] = store
    app[TAILER] = Tailer(cfg, store)
    app[HEALTH] = {"ok": True, "error": ""}
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    app.cleanup_ctx.append(_tail_ctx)
    return app


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _healthz(request: web.Request) -> web.Response:
    health = request.app[HEALTH]
    if not health["ok"]:
        return web.Response(status=503, text=f"tailing stopped: {health['error']}\n")
    return web.Response(text="ok\n")


async def _tail_loop(app: web.Application, cfg: ExporterConfig) -> None:
    tailer = app[TAILER]
    loop = asyncio.get_running_loop()
    last_save = loop.time()
    try:
        while True:
            await asyncio.to_thread(tailer.poll)
            if loop.time() - last_save >= cfg.positions_interval:
                await asyncio.to_thread(tailer.save_positions)
                last_save = loop.time()
            await asyncio.sleep(cfg.poll_interval)
    except asyncio.CancelledError:
        raise
    except Exception as e:
        log.exception("tailing failed")
        app[HEALTH].update(ok=False, error=str(e))


async def _tail_ctx(app: web.Application) -> AsyncIterator[None]:
    tailer = app[TAILER]
    cfg = tailer.cfg
    stop = threading.Event()
    for source, matcher in zip(cfg.sources, tailer.matchers, strict=True):
        if source.path == "-":
            args = (sys.stdin.fileno(), cfg.max_line_bytes, app[STORE], matcher, stop)
            threading.Thread(target=read_stream, args=args, daemon=True).start()
    task = asyncio.create_task(_tail_loop(app, cfg))
    yield
    stop.set()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await asyncio.to_thread(tailer.poll)  # read what is there, then remember where we are
    await asyncio.to_thread(tailer.save_positions)
    tailer.close()
