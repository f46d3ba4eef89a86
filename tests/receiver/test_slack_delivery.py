"""Slack through the durable outbox, against a stand-in speaking Slack's documented API."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from receiver.keys import STORE
from tests.conftest import load_fixture
from tests.receiver.apphelpers import make_config, running, server, wait_for, wait_mail
from tests.smtp_servers import smtp_sink


def slack_cfg(httpserver: HTTPServer, **target: Any) -> dict[str, Any]:
    return {
        "webhooks": {"ops": target or {"url": httpserver.url_for("/services/T0/B0/SECRET")}},
        "api_url": httpserver.url_for("/api"),
        "retry": {"initial": "100ms", "max": "1s"},
    }


async def outbox_states(rx: Any, channel: str) -> list[str]:
    store = rx.app[STORE]
    return [r.state for r in await store.run(store.store.list_outbox, None, 100, channel)]


async def test_webhook_post_and_slack_failure_never_delays_email(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/services/T0/B0/SECRET", method="POST").respond_with_data(
        "rollup_error", status=500
    )
    routes = [{"email": ["oncall@example.com"], "slack": ["ops"]}]
    async with smtp_sink() as sink:
        cfg = make_config(tmp_path, [server(sink)], routes=routes, slack=slack_cfg(httpserver))
        async with running(cfg) as rx:
            await rx.post(load_fixture("firing_single.json"))
            await wait_mail(sink, 1)  # email goes out although Slack keeps failing
            await wait_for(lambda: len(httpserver.log) >= 2, what="slack retries")
            # Between attempts it waits as retrying (during one, it is sending): never dead.
            states = await outbox_states(rx, "slack")
            for _ in range(100):
                if states != ["sending"]:
                    break
                await asyncio.sleep(0.02)
                states = await outbox_states(rx, "slack")
            assert states == ["retrying"]
    body = json.loads(httpserver.log[0][0].get_data())
    assert body["blocks"][0]["type"] == "header"
    assert "HighErrorRate" in json.dumps(body)
    assert "channel" not in body  # an incoming webhook is bound to its channel


async def test_rate_limit_waits_for_retry_after_then_delivers(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    calls: list[float] = []

    def handler(request: Request) -> Response:
        calls.append(time.monotonic())
        if len(calls) == 1:
            return Response("rate_limited", status=429, headers={"Retry-After": "2"})
        return Response("ok", status=200)

    httpserver.expect_request("/services/T0/B0/SECRET").respond_with_handler(handler)
    cfg = make_config(
        tmp_path,
        [{"host": "127.0.0.1", "port": 9}],
        routes=[{"slack": ["ops"]}],
        slack=slack_cfg(httpserver),
    )
    async with running(cfg) as rx:
        await rx.post(load_fixture("firing_single.json"))
        await wait_for(lambda: len(calls) >= 2, timeout=10, what="retry after 429")
        await asyncio.sleep(0.3)
        assert await outbox_states(rx, "slack") == ["sent"]
    # Retry-After (2 s) is honoured although the configured backoff maximum is 1 s.
    assert calls[1] - calls[0] >= 1.9


async def test_channel_not_found_is_dead_with_slacks_error(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/services/T0/B0/SECRET").respond_with_data(
        "channel_not_found", status=404
    )
    cfg = make_config(
        tmp_path,
        [{"host": "127.0.0.1", "port": 9}],
        routes=[{"slack": ["ops"]}],
        slack=slack_cfg(httpserver),
    )
    async with running(cfg) as rx:
        await rx.post(load_fixture("firing_single.json"))
        store = rx.app[STORE]

        async def dead() -> list[Any]:
            return [r for r in await store.run(store.store.list_outbox, ["dead"]) if r]

        for _ in range(100):
            if await dead():
                break
            await asyncio.sleep(0.05)
        (row,) = await dead()
    assert "channel_not_found" in (row.reason or "")
    assert "SECRET" not in (row.reason or "") and "SECRET" not in (row.last_error or "")


async def test_bot_token_threads_later_messages_under_the_first(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    posts: list[dict[str, Any]] = []

    def handler(request: Request) -> Response:
        assert request.headers["Authorization"] == "Bearer xoxb-test"
        posts.append(json.loads(request.get_data()))
        ts = f"1700000000.00010{len(posts)}"
        return Response(
            json.dumps({"ok": True, "channel": "C123", "ts": ts}), content_type="application/json"
        )

    httpserver.expect_request("/api/chat.postMessage", method="POST").respond_with_handler(handler)
    slack = slack_cfg(httpserver, token="xoxb-test", channel="#ops")
    cfg = make_config(
        tmp_path, [{"host": "127.0.0.1", "port": 9}], routes=[{"slack": ["ops"]}], slack=slack
    )
    async with running(cfg) as rx:
        await rx.post(load_fixture("firing_single.json"))
        await wait_for(lambda: len(posts) >= 1, what="first post")
        await asyncio.sleep(0.3)
        await rx.post(load_fixture("resolved_single.json"))
        await wait_for(lambda: len(posts) >= 2, timeout=10, what="second post")
    assert posts[0]["channel"] == "#ops" and "thread_ts" not in posts[0]
    assert posts[1]["thread_ts"] == "1700000000.000101"
