"""Run the receiver: listener with a large backlog, signals, graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
from pathlib import Path

from aiohttp import web

from receiver.app import create_app, reload_app
from receiver.config import Config
from receiver.errors import ConfigError

log = logging.getLogger(__name__)

LISTEN_BACKLOG = 2048  # a burst of 1,000 concurrent webhooks must not see refused connects


def _ssl_context(config: Config) -> ssl.SSLContext | None:
    if config.tls is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(config.tls.cert_file), str(config.tls.key_file))
    return ctx


async def serve(
    config: Config, config_path: Path | None, ready: asyncio.Event | None = None
) -> None:
    app = create_app(config, config_path=config_path)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(
        runner,
        config.listen_host,
        config.listen_port,
        backlog=LISTEN_BACKLOG,
        ssl_context=_ssl_context(config),
        reuse_address=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[None]] = set()

    async def reload() -> None:
        with contextlib.suppress(ConfigError):
            await reload_app(app)

    def on_hup() -> None:
        task = loop.create_task(reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    try:
        await site.start()
        scheme = "https" if config.tls else "http"
        log.info("alertmail receiver listening on %s://%s", scheme, config.listen)
        if ready is not None:
            ready.set()
        await stop.wait()
        log.info("stopping: no new webhooks; letting in-flight sends finish")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
