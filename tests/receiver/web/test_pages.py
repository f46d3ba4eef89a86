"""Operator pages and JSON API against the real app, real SQLite and a real SMTP sink."""

from __future__ import annotations

import asyncio
import copy
import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from receiver.keys import STORE
from tests.conftest import load_fixture
from tests.receiver.apphelpers import TOKEN, FakeClock, Running, at, server, wait_mail
from tests.receiver.test_deadman import watchdog
from tests.receiver.web.webhelpers import UI_AUTH, get, get_json, running_ui, ui_config
from tests.smtp_servers import CONNECT_REFUSED, closed_port, smtp_sink

PAGES = ["/", "/deliveries", "/preview", "/api/overview", "/api/alerts", "/api/deliveries"]


async def wait_state(rx: Running, outbox_id: int, *states: str, timeout: float = 10.0) -> None:
    store = rx.app[STORE]
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        row = await store.run(store.store.get_outbox, outbox_id)
        if row is not None and row.state in states:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"delivery {outbox_id} is {row and row.state}, not {states}")
        await asyncio.sleep(0.05)


async def first_delivery(rx: Running, timeout: float = 10.0) -> int:
    """The id of the newest delivery, once the dispatcher has queued one."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        items = (await get_json(rx, "/api/deliveries"))["items"]
        if items:
            return int(items[0]["id"])
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("no delivery was queued")
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("path", PAGES)
async def test_ui_needs_its_own_credentials(tmp_path: Path, path: str) -> None:
    cfg = ui_config(tmp_path, [{"host": "127.0.0.1", "port": 9}])
    async with running_ui(cfg) as rx:
        none, _, r0 = await get(rx, path, auth=None)
        wrong, _, _ = await get(rx, path, auth=aiohttp.encode_basic_auth("ops", "nope"))
        bearer, _, _ = await get(rx, path, auth=None, headers={"Authorization": f"Bearer {TOKEN}"})
        ok, _, r1 = await get(rx, path)
    assert (none, wrong, bearer, ok) == (401, 401, 401, 200)
    assert r0.headers["WWW-Authenticate"].startswith("Basic ")
    assert r1.headers["X-Content-Type-Options"] == "nosniff"
    csp = r1.headers["Content-Security-Policy"]
    assert "frame-ancestors 'self'" in csp and "script-src 'self';" in csp
    assert "unsafe-inline" not in csp


async def test_webhook_basic_credentials_do_not_open_the_ui(tmp_path: Path) -> None:
    cfg = ui_config(
        tmp_path,
        [{"host": "127.0.0.1", "port": 9}],
        auth={"basic_auth": {"username": "am", "password": "pw"}},
    )
    async with running_ui(cfg) as rx:
        status, _, _ = await get(rx, "/", auth=aiohttp.encode_basic_auth("am", "pw"))
        hook = await rx.post(
            load_fixture("firing_single.json"),
            token=None,
            headers={"Authorization": UI_AUTH},
        )
    assert status == 401
    assert hook.status == 401


async def test_delivery_appears_with_history_and_message(tmp_path: Path) -> None:
    async with smtp_sink() as sink, running_ui(ui_config(tmp_path, [server(sink)])) as rx:
        assert (await rx.post(load_fixture("firing_single.json"))).status == 200
        await wait_mail(sink, 1)
        listing = await get_json(rx, "/api/deliveries")
        (item,) = listing["items"]
        await wait_state(rx, item["id"], "sent")
        overview = await get_json(rx, "/api/overview")
        alerts = await get_json(rx, "/api/alerts")
        detail = await get_json(rx, f"/api/deliveries/{item['id']}")
        html_status, html, html_resp = await get(rx, detail["message"]["html_url"])
        text_part = next(p for p in detail["message"]["parts"] if p["content_type"] == "text/plain")
        part_status, part_text, part_resp = await get(rx, text_part["url"])
        page_status, page, _ = await get(rx, f"/deliveries/{item['id']}")
        home_status, home, _ = await get(rx, "/")

    assert listing["total"] == 1 and listing["page"] == 1 and listing["pages"] == 1
    assert item["recipients"] == ["oncall@example.com"] and item["channel"] == "email"
    assert set(overview) >= {"generated_at", "alerts", "deliveries", "digests", "reports", "smtp"}
    by_state = {s["state"]: s["count"] for s in overview["deliveries"]["by_state"]}
    assert by_state["sent"] == 1 and by_state["dead"] == 0
    assert overview["deliveries"]["recent"][0]["id"] == item["id"]
    (health,) = overview["smtp"]
    assert health["server"] == sink.name and health["health"] == "ok"
    assert health["successes"] == 1 and health["failovers"] == 0
    assert alerts["total"] == 1
    assert alerts["items"][0]["alertname"] == "HighErrorRate"
    assert alerts["items"][0]["severity"] == "critical"

    assert detail["state"] == "sent" and detail["server"] == sink.name
    assert detail["reply"].startswith("250")
    (attempt,) = detail["history"]
    assert attempt["ok"] is True and attempt["server"] == sink.name
    assert isinstance(attempt["elapsed_ms"], int)
    assert detail["message"]["subject"] == item["subject"] != ""
    assert detail["notification"]["receiver"] == "webhook-default"
    assert detail["recipients_result"] == {"oncall@example.com": "250 accepted"}

    assert html_status == 200 and "High error log rate" in html
    csp = html_resp.headers["Content-Security-Policy"]
    assert csp.startswith("sandbox;") and "default-src 'none'" in csp
    assert part_status == 200 and part_resp.content_type == "text/plain"
    assert "High error log rate" in part_text
    assert page_status == 200 and home_status == 200
    assert '<iframe class="email" sandbox src="/deliveries/' in page
    assert "HighErrorRate" in home and f'href="/deliveries/{item["id"]}"' in home


async def test_filters_and_pagination(tmp_path: Path) -> None:
    routes = [
        {"matchers": ['severity="critical"'], "email": ["oncall@example.com"]},
        {"email": ["team@example.com"]},
    ]
    async with (
        smtp_sink() as sink,
        running_ui(ui_config(tmp_path, [server(sink)], routes=routes)) as rx,
    ):
        await rx.post(load_fixture("firing_single.json"))
        await rx.post(load_fixture("warning_route_firing.json"))
        await wait_mail(sink, 2)

        async def ids(query: str) -> list[int]:
            data = await get_json(rx, "/api/deliveries?" + query)
            return [d["id"] for d in data["items"]]

        every = await ids("")
        by_rcpt = await ids("recipient=team@")
        by_name = await ids("alertname=errorrate")
        by_state = await ids("state=dead")
        by_channel = await ids("channel=slack")
        by_text = await ids("q=WarningLines")
        since = await ids("since=1h")
        until = await ids("until=2000-01-01T00:00")
        page1 = await get_json(rx, "/api/deliveries?per_page=1")
        page2 = await get_json(rx, "/api/deliveries?per_page=1&page=2")
        bad, _, _ = await get(rx, "/api/deliveries?since=yesterday-ish")
        html_status, html, _ = await get(rx, "/deliveries?recipient=team%40&state=sent")
    newest, oldest = every
    assert by_rcpt == [newest] and by_name == [oldest] and by_text == [newest]
    assert by_state == [] and by_channel == [] and until == []
    assert since == every
    assert page1["pages"] == 2 and page1["items"][0]["id"] == newest
    assert page2["items"][0]["id"] == oldest
    assert bad == 400
    assert html_status == 200 and "1 matching" in html and "team@example.com" in html
    assert 'value="team@"' in html


async def test_retrying_delivery_shows_next_attempt_and_error(tmp_path: Path) -> None:
    async with closed_port() as dead:
        cfg = ui_config(tmp_path, [server(dead)])
        cfg = cfg.model_copy(
            update={
                "smtp": cfg.smtp.model_copy(  # type: ignore[union-attr]
                    update={"retry": cfg.smtp.retry.model_copy(update={"initial": 60.0})}  # type: ignore[union-attr]
                )
            }
        )
        async with running_ui(cfg) as rx:
            await rx.post(load_fixture("firing_single.json"))
            outbox_id = await first_delivery(rx)
            await wait_state(rx, outbox_id, "retrying")
            detail = await get_json(rx, f"/api/deliveries/{outbox_id}")
            overview = await get_json(rx, "/api/overview")
            _, page, _ = await get(rx, f"/deliveries/{outbox_id}")
    assert detail["state"] == "retrying" and detail["next_attempt"].startswith("in ")
    assert detail["last_error"] and detail["history"][0]["ok"] is False
    assert "retry in" in detail["status_text"]
    assert overview["smtp"][0]["health"] == "failing"
    assert overview["smtp"][0]["failures"] == 1
    assert "Last error" in page and re.search(CONNECT_REFUSED, page)
    assert "/requeue" not in page and "Re-queueing from this page is off" in page


async def test_failovers_counted_per_server(tmp_path: Path) -> None:
    async with (
        closed_port() as dead,
        smtp_sink() as sink,
        running_ui(ui_config(tmp_path, [server(dead), server(sink)])) as rx,
    ):
        await rx.post(load_fixture("firing_single.json"))
        await wait_mail(sink, 1)
        await wait_state(rx, await first_delivery(rx), "sent")
        smtp = (await get_json(rx, "/api/overview"))["smtp"]
    first, second = smtp
    assert (first["server"], first["failovers"], first["health"]) == (dead.name, 1, "failing")
    assert (second["server"], second["successes"], second["health"]) == (sink.name, 1, "ok")


HOSTILE = '<script>alert(1)</script><img src=x onerror="alert(2)">'


def hostile_payload() -> dict[str, Any]:
    body = copy.deepcopy(load_fixture("firing_single.json"))
    alert = body["alerts"][0]
    alert["annotations"]["summary"] = HOSTILE
    alert["labels"]["service"] = HOSTILE
    alert["labels"]["alertname"] = "Evil" + HOSTILE
    body["commonLabels"] = {}
    body["groupLabels"] = {"alertname": "Evil" + HOSTILE}
    return body


async def test_hostile_values_are_escaped(tmp_path: Path) -> None:
    async with smtp_sink() as sink, running_ui(ui_config(tmp_path, [server(sink)])) as rx:
        await rx.post(hostile_payload())
        await wait_mail(sink, 1)
        outbox_id = await first_delivery(rx)
        pages = [
            (await get(rx, path))[1]
            for path in ("/", "/deliveries", f"/deliveries/{outbox_id}", "/preview")
        ]
        api = await get_json(rx, "/api/alerts")
    for html in pages[:3]:
        assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[0]
    assert "&lt;script&gt;" in pages[2]
    assert api["items"][0]["summary"] == HOSTILE  # JSON carries the value as it is


async def test_not_found_and_bad_ids(tmp_path: Path) -> None:
    async with running_ui(ui_config(tmp_path, [{"host": "127.0.0.1", "port": 9}])) as rx:
        s1, page, _ = await get(rx, "/deliveries/999")
        s2, body, _ = await get(rx, "/api/deliveries/999")
        s3, _, _ = await get(rx, "/deliveries/abc")
        s4, _, _ = await get(rx, "/static/nope.js")
        s5, js, js_resp = await get(rx, "/static/ui.js")
    assert (s1, s2, s3, s4, s5) == (404, 404, 404, 404, 200)
    assert "no delivery 999" in page and json.loads(body)["error"].startswith("no delivery 999")
    assert js_resp.content_type == "text/javascript" and "textContent" in js


async def test_open_digest_window_and_its_flush_time(tmp_path: Path) -> None:
    routes = [
        {"name": "team-digest", "email": ["team@example.com"], "mode": "digest", "every": "1h"}
    ]
    cfg = ui_config(tmp_path, [{"host": "127.0.0.1", "port": 9}], routes=routes)
    async with running_ui(cfg) as rx:
        assert (await rx.post(load_fixture("warning_route_firing.json"))).status == 200
        deadline = asyncio.get_running_loop().time() + 10
        while not (data := await get_json(rx, "/api/overview"))["digest_windows"]:
            assert asyncio.get_running_loop().time() < deadline, "no digest window opened"
            await asyncio.sleep(0.05)
        _, page, _ = await get(rx, "/")
    (window,) = data["digest_windows"]
    assert window["route"] == "team-digest" and window["notifications"] == 1
    # The top of the next hour, whenever the test runs: "2026-12-04 17:00:00 (in 42m)".
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:00:00 \(in \d+[smh]( \d+[sm])?\)", window["next_flush"]
    )
    assert "team-digest" in page


async def test_watchdog_is_shown_as_the_dead_mans_switch_not_a_firing_alert(
    tmp_path: Path,
) -> None:
    clock = FakeClock(at("2026-12-03T10:00:00"))
    deadman = {"alertname": "Watchdog", "after": "10m", "email": ["oncall@example.com"]}
    async with (
        smtp_sink() as sink,
        running_ui(
            ui_config(tmp_path, [server(sink)], deadman=deadman), clock=clock, run_scheduler=False
        ) as rx,
    ):
        before = (await get_json(rx, "/api/overview"))["deadman"]
        assert (await rx.post(watchdog())).status == 200
        assert (await rx.post(load_fixture("firing_single.json"))).status == 200
        for _ in range(50):  # until both are dispatched (alert history written)
            seen = (await get_json(rx, "/api/overview"))["deadman"]["state"]
            if seen == "ok" and (await get_json(rx, "/api/alerts"))["total"] == 1:
                break
            await asyncio.sleep(0.05)
        overview = await get_json(rx, "/api/overview")
        alerts = await get_json(rx, "/api/alerts")
        clock.now += 11 * 60
        late = (await get_json(rx, "/api/overview"))["deadman"]
        _, home, _ = await get(rx, "/")
    assert before["configured"] and before["state"] == "not seen yet"
    assert before["last_seen"] == "never"
    assert overview["deadman"]["state"] == "ok"
    assert overview["deadman"]["last_seen"].startswith("0s ago")
    assert [a["alertname"] for a in overview["alerts"]["items"]] == ["HighErrorRate"]
    assert overview["alerts"]["total"] == alerts["total"] == 1
    assert late["state"].startswith("silent") and late["last_seen"].startswith("11m ago")
    assert "Dead man&#39;s switch" in home or "Dead man's switch" in home
    assert "Watchdog" in home


async def test_no_dead_mans_switch_configured(tmp_path: Path) -> None:
    async with smtp_sink() as sink, running_ui(ui_config(tmp_path, [server(sink)])) as rx:
        overview = await get_json(rx, "/api/overview")
        _, home, _ = await get(rx, "/")
    assert overview["deadman"] == {"configured": False}
    assert "Dead man" not in home
