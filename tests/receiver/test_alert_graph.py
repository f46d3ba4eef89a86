"""Alert graphs: allowed hosts only, real Prometheus queries, timeouts, errors, sharing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote_plus

import aiohttp
import pytest
from aiohttp import web

from receiver.alert_graph import HEIGHT, WIDTH, AlertGrapher, generator_expr, origin
from receiver.config import PrometheusConfig
from receiver.model import Alert
from tests.promfill import PromFill, prometheus_fill
from tests.receiver.test_charts import colours, pixels, png_size

__all__ = ["prometheus_fill"]

EXTERNAL = "http://prometheus.example.com:9090"


def gen_url(expr: str, base: str = EXTERNAL) -> str:
    return f"{base}/graph?g0.expr={quote_plus(expr)}&g0.tab=1"


def alert(
    expr: str | None,
    starts_at: datetime,
    *,
    fp: str = "fp1",
    name: str = "HighLatency",
    base: str = EXTERNAL,
    labels: dict[str, str] | None = None,
) -> Alert:
    return Alert(
        status="firing",
        labels={"alertname": name, "severity": "critical", **(labels or {})},
        annotations={},
        starts_at=starts_at,
        ends_at=None,
        generator_url=gen_url(expr, base) if expr is not None else "",
        fingerprint=fp,
    )


class Skips:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    def __call__(self, reason: str) -> None:
        self.reasons.append(reason)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def threads() -> Any:
    with ThreadPoolExecutor(2) as pool:
        yield pool


def test_origin_and_generator_expr() -> None:
    assert origin("http://Prom.example.com/graph") == ("http", "prom.example.com", 80)
    assert origin("https://p:8443/x") == ("https", "p", 8443)
    assert origin("https://p:443") == origin("https://p")
    assert origin("ftp://p/") is None
    assert origin("http://p:99999/") is None
    assert origin("javascript:alert(1)") is None
    assert generator_expr(gen_url('rate(x{a="b c"}[5m]) > 1')) == 'rate(x{a="b c"}[5m]) > 1'
    assert generator_expr("http://p:9090/graph?g0.tab=1") is None
    assert generator_expr("") is None


async def test_host_not_allowed_and_no_expr_never_query(session: aiohttp.ClientSession) -> None:
    hits = 0

    async def count(request: web.Request) -> web.Response:
        nonlocal hits
        hits += 1
        return web.json_response({})

    url = await _serve(count)
    skips = Skips()
    config = PrometheusConfig(url=url, external_urls=[EXTERNAL])
    grapher = AlertGrapher(config, session, on_skip=skips)
    now = datetime.now(UTC)
    alerts = [
        alert("up == 0", now, fp="a", base="http://evil.example.com:9090"),
        alert("up == 0", now, fp="b", base="http://prometheus.example.com:9091"),  # other port
        alert("up == 0", now, fp="c", base="https://prometheus.example.com:9090"),  # other scheme
        alert(None, now, fp="d"),
    ]
    assert await grapher.graphs_for(alerts, now) == {}
    assert sorted(skips.reasons) == ["host_not_allowed"] * 3 + ["no_expr"]
    assert hits == 0
    await grapher.close()


async def test_hanging_prometheus_times_out(session: aiohttp.ClientSession, threads: Any) -> None:
    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.json_response({})

    url = await _serve(hang)
    skips = Skips()
    config = PrometheusConfig(url=url, query_timeout=0.5, max_concurrent_queries=1)
    grapher = AlertGrapher(config, session, executor=threads, on_skip=skips)
    now = datetime.now(UTC)
    # Three expressions through one query slot: the budget is for the whole email, not each.
    alerts = [alert(f"x{i} > 1", now, fp=f"f{i}", base=url) for i in range(3)]
    t0 = time.monotonic()
    assert await grapher.graphs_for(alerts, now) == {}
    assert time.monotonic() - t0 < 0.5 + 0.5
    assert skips.reasons == ["timeout"] * 3


_runners: list[web.AppRunner] = []


async def _serve(handler: Callable[[web.Request], Any]) -> str:
    app = web.Application()
    app.router.add_route("*", "/api/v1/{endpoint}", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    _runners.append(runner)
    return f"http://127.0.0.1:{runner.addresses[0][1]}"


@pytest.fixture(autouse=True)
async def _cleanup_servers() -> AsyncIterator[None]:
    yield
    while _runners:
        await _runners.pop().cleanup()


class FailingExecutor(Executor):
    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_exception(ValueError("drawing exploded"))
        return future


def _config(fill: PromFill, timeout: float = 10.0) -> PrometheusConfig:
    return PrometheusConfig(url=fill.url, external_urls=[EXTERNAL], query_timeout=timeout)


@pytest.mark.e2e
async def test_graph_for_allowed_host(
    prometheus_fill: PromFill, session: aiohttp.ClientSession, threads: Any
) -> None:
    skips = Skips()
    grapher = AlertGrapher(_config(prometheus_fill), session, executor=threads, on_skip=skips)
    now = datetime.fromtimestamp(prometheus_fill.end, UTC)
    started = now - timedelta(hours=2)
    alerts = [
        alert("demo_latency_seconds > 0.25", started, fp="a", labels={"service": "api"}),
        alert("demo_latency_seconds > 0.25", started + timedelta(minutes=5), fp="b"),
        alert("rate(demo_requests_total[5m])", started, fp="c", name="Traffic"),
        # The configured URL's own origin is allowed too.
        alert("demo_memory_bytes", started, fp="d", base=prometheus_fill.url),
    ]
    images = await grapher.graphs_for(alerts, now)
    assert skips.reasons == []
    assert set(images) == {"a", "b", "c", "d"}
    assert images["a"] is images["b"]  # one graph per distinct expression
    assert len({img.cid for img in images.values()}) == 3
    for img in images.values():
        assert img.subtype == "png"
        assert png_size(img.data) == (WIDTH, HEIGHT)
        assert colours(pixels(img.data)[40:190, 60:590]) > 10


@pytest.mark.e2e
async def test_bad_expression_and_draw_error(
    prometheus_fill: PromFill, session: aiohttp.ClientSession, threads: Any
) -> None:
    skips = Skips()
    grapher = AlertGrapher(_config(prometheus_fill), session, executor=threads, on_skip=skips)
    now = datetime.fromtimestamp(prometheus_fill.end, UTC)
    assert await grapher.graphs_for([alert("rate(demo_requests_total[5m]", now)], now) == {}
    assert skips.reasons == ["query_error"]
    failing = AlertGrapher(
        _config(prometheus_fill), session, executor=FailingExecutor(), on_skip=skips
    )
    assert await failing.graphs_for([alert("demo_memory_bytes", now)], now) == {}
    assert skips.reasons == ["query_error", "draw_error"]


@pytest.mark.e2e
async def test_at_most_five_graphs(
    prometheus_fill: PromFill, session: aiohttp.ClientSession, threads: Any
) -> None:
    grapher = AlertGrapher(_config(prometheus_fill), session, executor=threads)
    now = datetime.fromtimestamp(prometheus_fill.end, UTC)
    alerts = [alert(f"demo_memory_bytes * {i}", now, fp=f"f{i}") for i in range(1, 9)]
    images = await grapher.graphs_for(alerts, now)
    assert len({img.cid for img in images.values()}) == 5


@pytest.mark.e2e
async def test_default_process_pool(
    prometheus_fill: PromFill, session: aiohttp.ClientSession
) -> None:
    # Generous budget: the first call starts a fresh interpreter that imports matplotlib.
    skips = Skips()
    grapher = AlertGrapher(_config(prometheus_fill, timeout=30), session, on_skip=skips)
    now = datetime.fromtimestamp(prometheus_fill.end, UTC)
    try:
        images = await grapher.graphs_for([alert("demo_latency_seconds", now)], now)
        assert skips.reasons == []
        assert png_size(images["fp1"].data) == (WIDTH, HEIGHT)
        # Warm now: a second email's graph is well inside the default 2 s budget.
        t0 = time.monotonic()
        again = await grapher.graphs_for([alert("demo_memory_bytes", now)], now)
        assert "fp1" in again and time.monotonic() - t0 < 2
    finally:
        await grapher.close()


def test_axis_starts_shortly_before_the_first_sample() -> None:
    from receiver.alert_graph import _trimmed_start
    from receiver.prometheus import Series

    end = 10_000.0
    young = [Series({"a": "1"}, [(9_700.0, 1.0), (10_000.0, 2.0)])]
    # Data only in the last 300 s of an hour: the axis starts just before it.
    assert _trimmed_start(end - 3600, end, young) == end - 330
    # Never narrower than five minutes, never wider than asked, unchanged with old data.
    tiny = [Series({}, [(9_990.0, 1.0)])]
    assert _trimmed_start(end - 3600, end, tiny) == end - 300
    old = [Series({}, [(1_000.0, 1.0)])]
    assert _trimmed_start(end - 3600, end, old) == end - 3600
    assert _trimmed_start(end - 3600, end, []) == end - 3600
