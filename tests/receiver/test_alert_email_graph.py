"""The graph in an alert email, drawn from a real Prometheus through the whole receiver."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote_plus

import pytest

from tests.conftest import load_fixture
from tests.promfill import PromFill, prometheus_fill
from tests.receiver.apphelpers import FakeClock, make_config, running, server, wait_mail
from tests.smtp_servers import smtp_sink

__all__ = ["prometheus_fill"]


@pytest.mark.e2e
async def test_alert_email_carries_graph_of_its_expression(
    tmp_path: Path, prometheus_fill: PromFill
) -> None:
    url = prometheus_fill.url
    body = load_fixture("firing_single.json")
    starts = datetime.fromtimestamp(prometheus_fill.end - 1800, UTC)
    body["alerts"][0]["startsAt"] = starts.isoformat().replace("+00:00", "Z")
    expr = 'rate(demo_requests_total{service="api"}[5m]) > 1'
    body["alerts"][0]["generatorURL"] = f"{url}/graph?g0.expr={quote_plus(expr)}&g0.tab=1"
    clock = FakeClock(prometheus_fill.end)
    async with smtp_sink() as sink:
        cfg = make_config(tmp_path, [server(sink)], prometheus={"url": url, "query_timeout": "10s"})
        async with running(cfg, clock=clock) as rx:
            assert (await rx.post(body)).status == 200
            (mail,) = await wait_mail(sink, 1, timeout=30)
            metrics = await (await rx.session.get(rx.url + "/metrics")).text()
    html = mail.get_body(("html",))
    assert html is not None
    related = next(p for p in mail.walk() if p.get_content_type() == "multipart/related")
    image = next(p for p in related.iter_parts() if p.get_content_type() == "image/png")
    cid = str(image["Content-ID"]).strip("<>")
    assert f'src="cid:{cid}"' in html.get_content()
    data = image.get_content()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
    assert 'alertmail_alert_graphs_total{result="drawn"} 1.0' in metrics


async def test_graph_skipped_for_hosts_not_listed(tmp_path: Path) -> None:
    body = load_fixture("firing_single.json")  # generatorURL host 127.0.0.1:19090, not listed
    async with smtp_sink() as sink:
        cfg = make_config(tmp_path, [server(sink)])
        async with running(cfg) as rx:
            await rx.post(body)
            (mail,) = await wait_mail(sink, 1)
            metrics = await (await rx.session.get(rx.url + "/metrics")).text()
    assert not any(p.get_content_type() == "image/png" for p in mail.walk())
    assert 'alertmail_alert_graphs_total{result="host_not_allowed"} 1.0' in metrics
