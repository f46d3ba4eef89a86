"""Grafana stood in for by pytest-httpserver: dashboards by uid, renders, per-panel fallback."""

from __future__ import annotations

import io
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from receiver.grafana import GrafanaClient, GrafanaError
from receiver.report_draw import Drawer
from receiver.reports import ReportRunner
from receiver.runtime import build_runtime
from receiver.store_async import AsyncStore
from tests.promfill import PromFill, prometheus_fill
from tests.receiver.test_charts import png_size
from tests.receiver.test_reports import dashboard, make_config, parse, text_of

__all__ = ["prometheus_fill"]

TOKEN = "glsa_test"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def grafana_png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (17, 18, 23)).save(buf, format="PNG")
    return buf.getvalue()


def serve_dashboard(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/api/dashboards/uid/report-test", headers=AUTH).respond_with_json(
        {
            "dashboard": dashboard(),
            "meta": {"slug": "report-test", "url": "/d/report-test/report-test", "type": "db"},
        }
    )


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def test_client_dashboard_and_render(
    httpserver: HTTPServer, session: aiohttp.ClientSession
) -> None:
    serve_dashboard(httpserver)
    png = grafana_png(640, 260)
    httpserver.expect_request(
        "/render/d-solo/report-test/report-test",
        headers=AUTH,
        query_string={
            "from": "1000", "to": "2000", "var-service": "api", "tz": "Europe/Berlin",
            "panelId": "2", "width": "640", "height": "260",
        },
    ).respond_with_data(png, content_type="image/png")  # fmt: skip
    client = GrafanaClient(httpserver.url_for("/").rstrip("/"), TOKEN, session)
    dash = await client.dashboard("report-test")
    assert (dash.slug, dash.url, dash.model["uid"]) == (
        "report-test", "/d/report-test/report-test", "report-test",
    )  # fmt: skip
    got = await client.render_panel(
        "report-test", "report-test", 2, start_ms=1000, end_ms=2000, width=640, height=260,
        tz="Europe/Berlin", variables={"service": ["api"]},
    )  # fmt: skip
    assert got == png


@pytest.mark.parametrize(
    ("status", "body", "ctype", "message"),
    [
        (500, b'{"message":"Rendering failed: no image renderer"}', "application/json", "HTTP 500"),
        (404, b"not found", "text/plain", "HTTP 404"),
        (200, b"<html>Grafana login</html>", "text/html", "not a PNG (text/html)"),
        (200, b"GIF89a....", "image/png", "not a PNG (image/png)"),
    ],
)
async def test_client_render_errors(
    httpserver: HTTPServer,
    session: aiohttp.ClientSession,
    status: int,
    body: bytes,
    ctype: str,
    message: str,
) -> None:
    httpserver.expect_request("/render/d-solo/u/s").respond_with_data(
        body, status=status, content_type=ctype
    )
    client = GrafanaClient(httpserver.url_for("/").rstrip("/"), TOKEN, session)
    with pytest.raises(GrafanaError, match=message.replace("(", r"\(").replace(")", r"\)")):
        await client.render_panel(
            "u", "s", 1, start_ms=0, end_ms=1, width=100, height=50, tz="UTC", variables={}
        )


async def test_client_timeout_and_missing_dashboard(
    httpserver: HTTPServer, session: aiohttp.ClientSession
) -> None:
    def slow(request: Request) -> Response:
        time.sleep(1.0)
        return Response(grafana_png(10, 10), content_type="image/png")

    httpserver.expect_request("/render/d-solo/u/s").respond_with_handler(slow)
    httpserver.expect_request("/api/dashboards/uid/gone").respond_with_json(
        {"message": "Dashboard not found"}, status=404
    )
    client = GrafanaClient(httpserver.url_for("/").rstrip("/"), TOKEN, session, timeout=0.2)
    with pytest.raises(GrafanaError, match=r"HTTP 404: .*Dashboard not found"):
        await client.dashboard("gone")
    # Last: the test server answers one request at a time, and this one sleeps.
    with pytest.raises(GrafanaError, match=r"no answer within 0\.2s"):
        await client.render_panel(
            "u", "s", 1, start_ms=0, end_ms=1, width=100, height=50, tz="UTC", variables={}
        )


@pytest.mark.e2e
async def test_report_uses_renders_and_falls_back_per_panel(
    tmp_path: Path,
    httpserver: HTTPServer,
    prometheus_fill: PromFill,
    session: aiohttp.ClientSession,
) -> None:
    """Panel 2 comes from Grafana; the stat (500), repeat api (404) and repeat web (an HTML
    page with 200) are drawn locally. Links point at Grafana with the report's range."""
    serve_dashboard(httpserver)
    render = "/render/d-solo/report-test/report-test"
    png = grafana_png(640, 260)
    requests: list[dict[str, Any]] = []

    def handler(request: Request) -> Response:
        args = request.args
        requests.append({k: args.getlist(k) for k in args})
        if request.headers.get("Authorization") != AUTH["Authorization"]:
            return Response("unauthorized", status=401)
        panel, service = args.get("panelId"), args.get("var-service")
        if panel == "2":
            return Response(png, content_type="image/png")
        if panel == "3":
            return Response('{"message":"Rendering failed"}', 500, content_type="application/json")
        if service == "api":
            return Response("Not found", 404)
        return Response("<html>login</html>", content_type="text/html")

    httpserver.expect_request(render).respond_with_handler(handler)
    config = make_config(
        tmp_path,
        prometheus_fill.url,
        grafana={"url": httpserver.url_for("/").rstrip("/"), "token": TOKEN},
        report={"dashboards": [{"uid": "report-test"}]},
    )
    store = await AsyncStore.open(config.storage.path)
    drawer = Drawer()
    end = prometheus_fill.end
    try:
        runner = ReportRunner(store, build_runtime(config, None, None), session, drawer=drawer)
        msg, pngs = await runner.build("daily", datetime.fromtimestamp(end, UTC))
    finally:
        await drawer.close()
        await store.close()
    images = dict(pngs)
    assert images["report-test-panel-2.png"] == png  # Grafana's image, as it came
    for name in ("panel-3", "panel-6-api", "panel-6-web"):
        local = images[f"report-test-{name}.png"]
        assert local != png and png_size(local) == ((310, 130) if name == "panel-3" else (640, 260))
    assert len(requests) == 4
    by_panel = {(r["panelId"][0], tuple(r.get("var-service", []))): r for r in requests}
    assert set(by_panel) == {("2", ("api", "web")), ("3", ("api", "web")),
                             ("6", ("api",)), ("6", ("web",))}  # fmt: skip
    first = by_panel[("2", ("api", "web"))]
    assert first["from"] == [str(int((end - 86400) * 1000))] and first["to"] == [
        str(int(end * 1000))
    ]
    assert first["width"] == ["640"] and first["height"] == ["260"] and first["tz"] == ["UTC"]

    msg = parse(msg.as_bytes())
    text = text_of(msg)
    assert text.count("drawn by alertmail: Grafana render failed") == 3
    assert "HTTP 500" in text and "HTTP 404" in text and "not a PNG (text/html)" in text
    assert "api: avg 5 req/s" in text  # numbers come from Prometheus either way
    link = httpserver.url_for("/d/report-test/report-test")
    assert f"{link}?from={int((end - 86400) * 1000)}&to={int(end * 1000)}" in text
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "viewPanel=6" in html and "var-service=api&amp;viewPanel=6" in html


@pytest.mark.e2e
async def test_dashboard_missing_in_grafana(
    tmp_path: Path,
    httpserver: HTTPServer,
    prometheus_fill: PromFill,
    session: aiohttp.ClientSession,
) -> None:
    httpserver.expect_request("/api/dashboards/uid/report-test").respond_with_data(
        "<html>oops</html>", status=502, content_type="text/html"
    )
    config = make_config(
        tmp_path,
        prometheus_fill.url,
        grafana={"url": httpserver.url_for("/").rstrip("/"), "token": TOKEN},
        report={"dashboards": [{"uid": "report-test"}]},
    )
    store = await AsyncStore.open(config.storage.path)
    try:
        runner = ReportRunner(store, build_runtime(config, None, None), session)
        msg, pngs = await runner.build("daily", datetime.fromtimestamp(prometheus_fill.end, UTC))
        await runner.close()
    finally:
        await store.close()
    assert pngs == []
    text = text_of(parse(msg.as_bytes()))
    assert "Could not be loaded:" in text and "HTTP 502" in text
    assert "Flapping (info): fired 8x" in text  # the rest of the report still comes
    assert json.dumps(dashboard())  # the fixture stays serialisable
