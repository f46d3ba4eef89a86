"""The graph in every alert email: the alert's expression, charted around its start.

Best effort by design: a picture must never delay or block a notification. The whole job is
bounded by ``prometheus.query_timeout``; a slow or failing Prometheus, an expression we may
not chart or a drawing error means "no picture", and the reason goes to ``on_skip`` (a
counter). Drawing runs in a separate process so matplotlib's CPU time never stalls the event
loop that acknowledges webhooks.

Safety: the generatorURL comes from the payload, i.e. from whoever can reach the webhook. We
only parse it, never fetch it, and chart its expression only when its origin is the
configured Prometheus or listed in ``external_urls``; the query always goes to the
configured ``prometheus.url``, so a payload cannot steer our requests at other hosts.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, tzinfo
from urllib.parse import parse_qs, urlsplit

import aiohttp

from receiver.config import PrometheusConfig
from receiver.model import Alert
from receiver.prometheus import (
    PrometheusClient,
    PrometheusError,
    PrometheusTimeoutError,
    Series,
    choose_step,
    split_threshold,
)
from receiver.render import InlineImage

log = logging.getLogger(__name__)

WIDTH, HEIGHT = 600, 250
MAX_GRAPHS = 5  # per email: each is ~20-40 KB of attachment and a query against Prometheus
LEAD_S = 3600.0  # history shown before the alert started: what "normal" looked like
MIN_WINDOW_S = 3600.0
MAX_WINDOW_S = 86400.0
MIN_TRIMMED_S = 300.0
MAX_SERIES = 20  # beyond this an unfiltered comparison's left side is restricted (see below)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) with defaults filled in, or None for anything not http(s)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]


def generator_expr(url: str) -> str | None:
    """The ``g0.expr`` of a Prometheus generatorURL (``/graph?g0.expr=...&g0.tab=1``)."""
    try:
        values = parse_qs(urlsplit(url).query).get("g0.expr")
    except ValueError:
        return None
    expr = (values or [""])[0].strip()
    return expr or None


@dataclass(frozen=True)
class GraphRequest:
    """Everything the drawing process needs; plain data so it pickles cheaply."""

    series: list[Series]
    title: str
    start: float
    end: float
    step: float
    query: str  # what is charted: the expression, or its left side (split_threshold)
    markers: list[float] = field(default_factory=list)
    spans: list[tuple[float, float]] = field(default_factory=list)
    threshold: float | None = None
    tz: tzinfo = UTC


def draw(req: GraphRequest) -> bytes:
    """Runs in the worker process (top-level so it pickles by reference)."""
    from receiver import charts

    return charts.timeseries_png(
        req.series,
        width=WIDTH,
        height=HEIGHT,
        title=req.title,
        fallback_name=req.query,
        thresholds=[charts.Threshold(req.threshold)] if req.threshold is not None else [],
        start=req.start,
        end=req.end,
        step=req.step,
        markers=req.markers,
        spans=req.spans,
        tz=req.tz,
    )


def _warm_up() -> None:
    # Import matplotlib and build its font cache before the first real draw needs them: a
    # cold worker takes around a second, half the default budget.
    from receiver import charts

    charts.timeseries_png([], width=100, height=60)


def _matches_alert(series: Series, alerts: Sequence[Alert]) -> bool:
    # An alert's labels are its series' labels (minus __name__) plus the rule's labels.
    items = {(k, v) for k, v in series.labels.items() if k != "__name__"}
    return any(items <= set(a.labels.items()) for a in alerts)


def _trimmed_start(start: float, end: float, series: Sequence[Series]) -> float:
    """Start the x axis shortly before the first sample: a Prometheus (or a metric) younger
    than the window would otherwise leave the picture empty but for a sliver at the right."""
    first = min((s.values[0][0] for s in series if s.values), default=None)
    if first is None or first <= start:
        return start
    return max(start, min(first - (end - first) * 0.1, end - MIN_TRIMMED_S))


class AlertGrapher:
    def __init__(
        self,
        config: PrometheusConfig,
        session: aiohttp.ClientSession,
        *,
        executor: Executor | None = None,
        on_skip: Callable[[str], None] = lambda reason: None,
        tz: tzinfo = UTC,
    ) -> None:
        self.config = config
        self.on_skip = on_skip
        self.tz = tz
        self._allowed = {o for u in (config.url, *config.external_urls) if (o := origin(u))}
        self._client = PrometheusClient(
            config.url,
            session,
            timeout=config.query_timeout,
            semaphore=asyncio.Semaphore(config.max_concurrent_queries),
        )
        self._executor = executor
        self._pool: ProcessPoolExecutor | None = None

    def _get_executor(self) -> Executor:
        if self._executor is not None:
            return self._executor
        if self._pool is None:
            # spawn: forking a process that runs an event loop and threads can copy held
            # locks into the child; a fresh interpreter is safe.
            self._pool = ProcessPoolExecutor(
                max_workers=2, mp_context=multiprocessing.get_context("spawn")
            )
            self._pool.submit(_warm_up)
        return self._pool

    def warm_up(self) -> None:
        """Start the drawing process now (optional: the first graphs_for does it otherwise)."""
        self._get_executor()

    async def graphs_for(self, alerts: Sequence[Alert], now: datetime) -> dict[str, InlineImage]:
        """fingerprint -> image. Alerts sharing an expression share one image."""
        groups: dict[str, list[Alert]] = {}
        skipped: set[tuple[str, str]] = set()
        for alert in sorted(alerts, key=Alert.sort_key):
            expr = generator_expr(alert.generator_url) if alert.generator_url else None
            if expr is not None and origin(alert.generator_url) in self._allowed:
                if expr in groups or len(groups) < MAX_GRAPHS:
                    groups.setdefault(expr, []).append(alert)
                continue
            reason = "no_expr" if expr is None else "host_not_allowed"
            if (reason, alert.generator_url) not in skipped:  # once per distinct URL
                skipped.add((reason, alert.generator_url))
                self.on_skip(reason)
        if not groups:
            return {}
        executor = self._get_executor()
        deadline = asyncio.get_running_loop().time() + self.config.query_timeout
        images = await asyncio.gather(
            *(self._graph(expr, group, now, deadline, executor) for expr, group in groups.items())
        )
        out: dict[str, InlineImage] = {}
        for (_expr, group), image in zip(groups.items(), images, strict=True):
            if image is not None:
                for alert in group:
                    out[alert.fingerprint] = image
        return out

    def _request(self, expr: str, group: list[Alert], now: datetime) -> GraphRequest:
        end = now.timestamp()
        starts = sorted({a.starts_at.timestamp() for a in group if a.starts_at is not None})
        start = (starts[0] if starts else end) - LEAD_S
        start = min(max(start, end - MAX_WINDOW_S), end - MIN_WINDOW_S)
        step = choose_step(end - start, WIDTH)
        spans = [
            (a.starts_at.timestamp(), a.ends_at.timestamp() if a.ends_at and not a.firing else end)
            for a in group
            if a.starts_at is not None
        ]
        split = split_threshold(expr)
        return GraphRequest(
            series=[],
            title=group[0].name or "alert",
            start=start,
            end=end,
            step=step,
            query=split[0] if split else expr,
            markers=starts[:MAX_GRAPHS],
            spans=spans,
            threshold=split[1] if split else None,
            tz=self.tz,
        )

    async def _graph(
        self, expr: str, group: list[Alert], now: datetime, deadline: float, executor: Executor
    ) -> InlineImage | None:
        req = self._request(expr, group, now)
        try:
            async with asyncio.timeout_at(deadline):
                # Align to the step so consecutive emails sample the same instants.
                start = req.start - req.start % req.step
                series = await self._client.query_range(req.query, start, req.end, req.step)
        except (TimeoutError, PrometheusTimeoutError):
            self._skip("timeout", expr)
            return None
        except PrometheusError as exc:
            log.info("alert graph query failed for %r: %s", expr, exc)
            self._skip("query_error", expr)
            return None
        if req.threshold is not None and len(series) > MAX_SERIES:
            series = [s for s in series if _matches_alert(s, group)] or series[:MAX_SERIES]
        req = replace(req, series=series, start=_trimmed_start(req.start, req.end, series))
        try:
            async with asyncio.timeout_at(deadline):
                loop = asyncio.get_running_loop()
                png = await loop.run_in_executor(executor, draw, req)
        except TimeoutError:
            self._skip("timeout", expr)
            return None
        except Exception as exc:  # anything from the drawing side: no picture, never a crash
            log.warning("alert graph drawing failed for %r: %s", expr, exc, exc_info=True)
            if isinstance(exc, BrokenProcessPool) and self._pool is not None:
                broken, self._pool = self._pool, None  # a worker died: a fresh pool next time
                broken.shutdown(wait=False, cancel_futures=True)
            self._skip("draw_error", expr)
            return None
        cid = "graph." + hashlib.sha256(expr.encode()).hexdigest()[:16] + "@alertmail"
        return InlineImage(cid=cid, data=png, subtype="png", filename="graph.png")

    def _skip(self, reason: str, expr: str) -> None:
        log.debug("no alert graph for %r: %s", expr, reason)
        self.on_skip(reason)

    async def close(self) -> None:
        """Stop our own drawing processes (an executor passed in stays the caller's)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
