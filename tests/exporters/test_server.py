"""The HTTP side: /metrics and /healthz on 127.0.0.1:0, tailing in the background."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from exporters.server import create_app
from tests.exporters.conftest import make_config, samples, value


async def test_metrics_and_healthz_while_tailing(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("old level=info\n")
    raw = {
        "positions": str(tmp_path / "pos.json"),
        "poll_interval": "20ms",
        "sources": [{"path": str(log)}],
        "metrics": [
            {
                "name": "lines_total",
                "type": "counter",
                "match": r"level=(?P<l>\w+)",
                "labels": ["l"],
            }
        ],
    }
    cfg = make_config(tmp_path, raw)
    got: dict[Any, float] = {}
    client = TestClient(TestServer(create_app(cfg), host="127.0.0.1", port=0))
    await client.start_server()
    try:
        resp = await client.get("/healthz")
        assert resp.status == 200
        for _ in range(200):  # until the first poll has started following the file
            got = samples(await (await client.get("/metrics")).text())
            if value(got, "alertmail_exporter_lines_read_total", file=str(log)) is not None:
                break
            await asyncio.sleep(0.02)
        with log.open("a") as fh:
            fh.write("level=info a\nlevel=error b\n")
        for _ in range(200):  # wait for the tail task (no timing assertion)
            resp = await client.get("/metrics")
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
            got = samples(await resp.text())
            if value(got, "lines_total", l="error") == 1:
                break
            await asyncio.sleep(0.02)
        assert value(got, "lines_total", l="error") == 1
        assert value(got, "lines_total", l="info") == 1  # the old line: first start = end
        assert value(got, "alertmail_exporter_build_info", version="0.1.0") in (1, None)
        assert any(k[0] == "alertmail_exporter_build_info" for k in got)
    finally:
        await client.close()
    assert (tmp_path / "pos.json").exists()  # saved on shutdown
