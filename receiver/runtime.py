"""What a config reload swaps as a whole: the config and everything built from it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from receiver.channels.email import SmtpChain
from receiver.config import Config, load_config
from receiver.errors import ConfigError, TemplateError
from receiver.metrics import ReceiverMetrics
from receiver.render import Renderer
from receiver.render_pool import RenderPool

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    config: Config
    renderer: Renderer
    smtp: SmtpChain | None
    config_path: Path | None = None
    render_pool: RenderPool | None = None

    def replace_with(self, other: Runtime) -> None:
        """Swap in a reloaded runtime; holders of this object see the new one at once."""
        old_pool = self.render_pool
        self.config = other.config
        self.renderer = other.renderer
        self.smtp = other.smtp
        self.render_pool = other.render_pool
        if old_pool is not None:
            old_pool.close()


def build_renderer(config: Config, file: str = "<config>") -> Renderer:
    renderer = Renderer(config.templates_dir, config.tz)
    problems = renderer.check() or check_batch_templates(renderer)
    if problems:
        raise ConfigError(str(config.templates_dir or "templates"), "", "; ".join(problems))
    del file
    return renderer


def check_batch_templates(renderer: Renderer) -> list[str]:
    """Digest and dead man's switch templates render from sample data (file:line on error)."""
    from datetime import UTC, datetime

    from receiver.batching import build_digest
    from receiver.render_digest import digest_email
    from receiver.render_samples import sample_notifications

    now = datetime(2026, 12, 3, 17, 0, tzinfo=UTC)
    items = [(now.timestamp() - 60, n) for n in sample_notifications(now)]
    errors: list[str] = []
    try:
        for kind in ("digest", "catch-up"):
            digest_email(
                build_digest(items, now.timestamp() - 3600, now.timestamp()),
                renderer=renderer,
                sender="alerts@example.com",
                recipients=["team@example.com"],
                message_id="<check@example.com>",
                now=now,
                kind=kind,
                route="check",
            )
        for state in ("silent", "back"):
            ctx = {
                "state": state,
                "alertname": "Watchdog",
                "after": 600.0,
                "last_seen": now,
                "now": now,
            }
            for name in ("deadman.subject.j2", "deadman.txt.j2"):
                renderer.render_string(name, **ctx)
            renderer.render_html("deadman.html.j2", **ctx)
    except TemplateError as exc:
        errors.append(str(exc))
    from receiver.report_context import check_report_templates

    errors.extend(check_report_templates(renderer))
    return errors


def build_smtp(config: Config, metrics: ReceiverMetrics | None) -> SmtpChain | None:
    if config.smtp is None:
        return None

    def on_failover(server: str) -> None:
        if metrics is not None:
            metrics.failovers.labels(server).inc()

    if metrics is not None:
        for server in config.smtp.servers:
            metrics.failovers.labels(server.name)  # exported at 0 so increase() sees the first
    return SmtpChain(
        config.smtp.servers,
        max_connections=config.smtp.pool.max_connections,
        on_failover=on_failover,
    )


def build_runtime(config: Config, path: Path | None, metrics: ReceiverMetrics | None) -> Runtime:
    renderer = build_renderer(config, str(path) if path else "<config>")
    pool = RenderPool(renderer, config.render_workers)
    return Runtime(config, renderer, build_smtp(config, metrics), path, pool)


async def reload_runtime(current: Runtime, metrics: ReceiverMetrics) -> Runtime:
    """A new runtime from the config file, or ConfigError with the old one left untouched."""
    if current.config_path is None:
        raise ConfigError("<config>", "", "started without a config file; nothing to reload")
    try:
        config = load_config(current.config_path)
        new = build_runtime(config, current.config_path, metrics)
    except Exception as exc:  # whatever fails, the running config stays
        metrics.reload_ok.set(0)
        metrics.reloads.labels("failure").inc()
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(str(current.config_path), "", f"cannot load: {exc!r}") from exc
    if config.storage.path != current.config.storage.path:
        log.warning("storage.path changed; it takes effect on restart only")
    metrics.reload_ok.set(1)
    metrics.reload_time.set_to_current_time()
    metrics.reloads.labels("success").inc()
    if current.smtp is not None:
        await current.smtp.close()
    return new
