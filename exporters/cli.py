"""Entry point for ``alertmail export [--one-shot] --config FILE``."""

from __future__ import annotations

import logging
import sys

from prometheus_client import CollectorRegistry, generate_latest

from exporters.config import load_config
from exporters.metrics import Store
from exporters.oneshot import run_once

log = logging.getLogger(__name__)


def run(config_path: str, one_shot: bool = False) -> int:
    """Run the exporter; returns the exit code. Raises ConfigError for a bad config."""
    cfg = load_config(config_path)
    if one_shot:
        registry = CollectorRegistry()
        store = Store(cfg, registry)
        run_once(cfg, store)
        sys.stdout.write(generate_latest(registry).decode("utf-8"))
        sys.stdout.flush()
        return 0
    from aiohttp import web  # not needed (nor imported) for one-shot runs

    from exporters.server import create_app

    host, _, port = cfg.listen.rpartition(":")
    log.info("exporter listening on %s", cfg.listen)
    web.run_app(create_app(cfg), host=host or None, port=int(port), print=None)
    return 0
