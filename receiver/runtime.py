"""What a config reload swaps as a whole: the config and everything built from it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from receiver.channels.email import SmtpChain
from receiver.config import Config, load_config
from receiver.errors import ConfigError
from receiver.metrics import ReceiverMetrics
from receiver.render import Renderer

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    config: Config
    renderer: Renderer
    smtp: SmtpChain | None
    config_path: Path | None = None

    def replace_with(self, other: Runtime) -> None:
        """Swap in a reloaded runtime; holders of this object see the new one at once."""
        self.config = other.config
        self.renderer = other.renderer
        self.smtp = other.smtp


def build_renderer(config: Config, file: str = "<config>") -> Renderer:
    renderer = Renderer(config.templates_dir, config.tz)
    problems = renderer.check()
    if problems:
        raise ConfigError(str(config.templates_dir or "templates"), "", "; ".join(problems))
    del file
    return renderer


def build_smtp(config: Config, metrics: ReceiverMetrics | None) -> SmtpChain | None:
    if config.smtp is None:
        return None

    def on_failover(server: str) -> None:
        if metrics is not None:
            metrics.failovers.labels(server).inc()

    return SmtpChain(
        config.smtp.servers,
        max_connections=config.smtp.pool.max_connections,
        on_failover=on_failover,
    )


def build_runtime(config: Config, path: Path | None, metrics: ReceiverMetrics | None) -> Runtime:
    renderer = build_renderer(config, str(path) if path else "<config>")
    return Runtime(config, renderer, build_smtp(config, metrics), path)


async def reload_runtime(current: Runtime, metrics: ReceiverMetrics) -> Runtime:
    """A new runtime from the config file, or ConfigError with the old one left untouched."""
    if current.config_path is None:
        raise ConfigError("<config>", "", "started without a config file; nothing to reload")
    try:
        config = load_config(current.config_path)
        new = build_runtime(config, current.config_path, metrics)
    except ConfigError:
        metrics.reload_ok.set(0)
        metrics.reloads.labels("failure").inc()
        raise
    if config.storage.path != current.config.storage.path:
        log.warning("storage.path changed; it takes effect on restart only")
    metrics.reload_ok.set(1)
    metrics.reload_time.set_to_current_time()
    metrics.reloads.labels("success").inc()
    if current.smtp is not None:
        await current.smtp.close()
    return new
