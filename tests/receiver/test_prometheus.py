"""Prometheus client: step choice, PromQL threshold split, and queries against a real server."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from receiver.errors import AlertmailError
from receiver.prometheus import (
    MAX_POINTS,
    PrometheusClient,
    PrometheusError,
    PrometheusTimeoutError,
    choose_step,
    split_threshold,
)
from tests.promfill import API_RATE, GAP, WEB_RATE, PromFill, latency_at, prometheus_fill

__all__ = ["prometheus_fill"]  # the session fixture, shared with the other chart tests


@pytest.mark.parametrize(
    ("range_s", "width", "step"),
    [
        (3600, 600, 15),  # 12 s raw -> 15
        (86400, 600, 300),  # 288 s raw -> 5 min
        (7 * 86400, 600, 3600),  # 2016 s raw -> 1 h
        (600, 600, 2),  # a short range may go below the 15 s floor
        (300, 1200, 1),
        (6 * 3600, 300, 300),  # 144 s raw -> 5 min
    ],
)
def test_choose_step(range_s: float, width: int, step: float) -> None:
    assert choose_step(range_s, width) == step


def test_choose_step_respects_point_limit_and_floor() -> None:
    for range_s in (60, 3600, 86400, 30 * 86400, 400 * 86400):
        for width in (1, 100, 600, 4000, 100_000):
            step = choose_step(range_s, width)
            assert range_s / step <= MAX_POINTS
            if range_s >= 3600:
                assert step >= 15


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("rate(x[5m]) > 0.5", ("rate(x[5m])", 0.5)),
        ('up{job="a>b"} == 0', ('up{job="a>b"}', 0.0)),
        ("0.9 < avg(x) by (a)", ("avg(x) by (a)", 0.9)),
        (
            "sum(rate(a[5m])) / sum(rate(b[5m])) >= 1e-3",
            ("sum(rate(a[5m])) / sum(rate(b[5m]))", 1e-3),
        ),
        ("x > 1 and y", None),
        ("x > bool 1", None),
        ("x > y", None),
        ("x > 1 < 5", None),
        ("absent(up)", None),
        ("x > 1 # comment", None),
        ("max_over_time((x > 3)[5m:])", None),
    ],
)
def test_split_threshold(expr: str, expected: tuple[str, float] | None) -> None:
    assert split_threshold(expr) == expected


def test_error_is_an_alertmail_error() -> None:
    assert issubclass(PrometheusError, AlertmailError)
    assert issubclass(PrometheusTimeoutError, PrometheusError)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def stand_in() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """Start a small aiohttp server on 127.0.0.1 answering /api/v1/* with a given handler."""
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_route("*", "/api/v1/{endpoint}", handler)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


async def test_timeout_against_a_hanging_server(
    session: aiohttp.ClientSession, stand_in: Callable[[Handler], Awaitable[str]]
) -> None:
    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.json_response({})

    url = await stand_in(hang)
    client = PrometheusClient(url, session, timeout=0.3)
    t0 = time.monotonic()
    with pytest.raises(PrometheusTimeoutError):
        await client.query("up")
    assert time.monotonic() - t0 < 1.5


async def test_non_json_answer_and_unreachable(
    session: aiohttp.ClientSession, stand_in: Callable[[Handler], Awaitable[str]]
) -> None:
    async def proxy_error(request: web.Request) -> web.Response:
        return web.Response(status=502, text="<html>Bad Gateway</html>")

    url = await stand_in(proxy_error)
    with pytest.raises(PrometheusError, match=r"HTTP 502.*Bad Gateway"):
        await PrometheusClient(url, session).query("up")
    with pytest.raises(PrometheusError) as info:
        await PrometheusClient("http://127.0.0.1:1", session, timeout=2).query("up")
    assert not isinstance(info.value, PrometheusTimeoutError)


async def test_semaphore_bounds_concurrency(
    session: aiohttp.ClientSession, stand_in: Callable[[Handler], Awaitable[str]]
) -> None:
    active = peak = 0

    async def slow(request: web.Request) -> web.Response:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.05)
        active -= 1
        return web.json_response(
            {"status": "success", "data": {"resultType": "vector", "result": []}}
        )

    url = await stand_in(slow)
    client = PrometheusClient(url, session, semaphore=asyncio.Semaphore(2))
    await asyncio.gather(*(client.query("up") for _ in range(6)))
    assert peak == 2


@pytest.mark.e2e
async def test_rate_matches_counter_slope(
    prometheus_fill: PromFill, session: aiohttp.ClientSession
) -> None:
    client = PrometheusClient(prometheus_fill.url, session)
    end = prometheus_fill.end
    start = end - 6 * 3600
    step = choose_step(end - start, 600)
    series = await client.query_range("rate(demo_requests_total[5m])", start, end, step)
    by_service = {s.labels["service"]: s for s in series}
    assert set(by_service) == {"api", "web"}
    for service, rate in (("api", API_RATE), ("web", WEB_RATE)):
        values = by_service[service].values
        assert len(values) == int((end - start) // step) + 1
        assert all(v == pytest.approx(rate, rel=1e-9) for _, v in values)
        assert values[0][0] == pytest.approx(start)


@pytest.mark.e2e
async def test_instant_values_match_generated_history(
    prometheus_fill: PromFill, session: aiohttp.ClientSession
) -> None:
    client = PrometheusClient(prometheus_fill.url, session)
    for t in (prometheus_fill.start + 3000, prometheus_fill.end - 30 * 3600, prometheus_fill.end):
        [series] = await client.query('demo_latency_seconds{service="api"}', t)
        assert series.labels == {"__name__": "demo_latency_seconds", "service": "api"}
        assert series.values == [(t, latency_at(t))]
    # Increase over one hour of a counter growing 5/s: 18 000, computed by Prometheus.
    [inc] = await client.query(
        'increase(demo_requests_total{service="api"}[1h])', prometheus_fill.end
    )
    assert inc.values[0][1] == pytest.approx(API_RATE * 3600, rel=1e-6)


@pytest.mark.e2e
async def test_nan_inf_scalar_and_gap(
    prometheus_fill: PromFill, session: aiohttp.ClientSession
) -> None:
    client = PrometheusClient(prometheus_fill.url, session)
    [inf] = await client.query("1/0", prometheus_fill.end)
    [nan] = await client.query("0/0", prometheus_fill.end)
    assert inf.labels == {} and math.isinf(inf.values[0][1]) and inf.values[0][1] > 0
    assert math.isnan(nan.values[0][1])
    # No samples during GAP: Prometheus leaves those steps out (after its 5 min lookback).
    end = prometheus_fill.end
    [s] = await client.query_range("demo_latency_seconds", end - 8 * 3600, end - 5 * 3600, 60)
    times = [t for t, _ in s.values]
    gap_start, gap_end = end - GAP[1], end - GAP[0]
    assert not [t for t in times if gap_start + 300 < t < gap_end]
    assert any(t < gap_start for t in times) and any(t >= gap_end for t in times)


@pytest.mark.e2e
async def test_bad_expression_carries_prometheus_message(
    prometheus_fill: PromFill, session: aiohttp.ClientSession
) -> None:
    client = PrometheusClient(prometheus_fill.url, session)
    with pytest.raises(PrometheusError, match="parse error") as info:
        await client.query_range("rate(demo_requests_total[5m]", 0, 3600, 60)
    assert info.value.error_type == "bad_data"
    assert info.value.status == 400
