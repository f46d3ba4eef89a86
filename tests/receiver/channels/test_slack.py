"""The Slack client against a stand-in Slack (pytest-httpserver) answering as Slack documents:
incoming webhooks answer with a status and a plain-text error string, chat.postMessage with
HTTP 200 and {"ok": ..., "error": ...}, both 429 + Retry-After when rate limited."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from receiver.channels.slack import (
    SlackClient,
    SlackPermanent,
    SlackResult,
    SlackRetryable,
    parse_retry_after,
)
from receiver.config import SlackTarget
from receiver.errors import DeliveryError

HOOK_PATH = "/services/T0SECRET/B0SECRET/XXsecretXXwebhookXXpath"
TOKEN = "xoxb-123-456-topsecrettoken"
PAYLOAD: dict[str, Any] = {"text": "FIRING: DiskFull", "blocks": []}


@pytest.fixture(scope="module")
def _slack_server() -> Iterator[HTTPServer]:
    # Threaded: a handler that sleeps (timeout test) must not hold up requests that should
    # arrive concurrently (pacing test). One per module: stopping one takes half a second.
    server = HTTPServer(threaded=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def slack(_slack_server: HTTPServer) -> Iterator[HTTPServer]:
    _slack_server.clear()
    yield _slack_server
    _slack_server.clear()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def hook(server: HTTPServer, path: str = HOOK_PATH) -> SlackTarget:
    return SlackTarget(url=SecretStr(server.url_for(path)))


def bot(channel: str = "#ops") -> SlackTarget:
    return SlackTarget(token=SecretStr(TOKEN), channel=channel)


def client(session: aiohttp.ClientSession, server: HTTPServer, **kw: Any) -> SlackClient:
    kw.setdefault("min_interval", 0.0)
    return SlackClient(session, api_url=server.url_for("/api"), **kw)


def our_logs(caplog: pytest.LogCaptureFixture) -> str:
    """What alertmail logged (the stand-in server's access log names the URL, as it may)."""
    return "\n".join(
        f"{r.getMessage()} {r.exc_text or ''}"
        for r in caplog.records
        if r.name.startswith("receiver")
    )


def assert_no_secrets(text: str) -> None:
    for secret in (HOOK_PATH, "XXsecretXXwebhookXXpath", TOKEN):
        assert secret not in text


# --- incoming webhook -------------------------------------------------------------------------


async def test_webhook_ok(
    slack: HTTPServer, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    slack.expect_request(HOOK_PATH, method="POST").respond_with_data("ok", content_type="text/html")
    payload = {**PAYLOAD, "channel": "#ignored"}
    result = await client(session, slack).post("ops", hook(slack), payload)
    assert isinstance(result, SlackResult)
    assert (result.status, result.body, result.ts, result.channel) == (200, "ok", None, None)
    assert result.elapsed >= 0
    request, _ = slack.log[0]
    assert request.headers["Content-Type"].startswith("application/json")
    sent = json.loads(request.get_data())
    assert sent["text"] == "FIRING: DiskFull"
    assert "channel" not in sent  # a webhook is bound to its channel
    assert "slack ops: posted" in our_logs(caplog)
    assert_no_secrets(our_logs(caplog))


async def test_webhook_429_retry_after(slack: HTTPServer, session: aiohttp.ClientSession) -> None:
    slack.expect_request(HOOK_PATH).respond_with_data(
        "rate_limited", status=429, headers={"Retry-After": "3"}
    )
    c = client(session, slack)
    with pytest.raises(SlackRetryable) as info:
        await c.post("ops", hook(slack), PAYLOAD)
    assert info.value.retry_after == 3
    assert info.value.permanent is False
    assert info.value.status == 429
    # While Slack's penalty runs, the next post to that target does not hit Slack at all.
    with pytest.raises(SlackRetryable) as again:
        await c.post("ops", hook(slack), PAYLOAD)
    assert again.value.retry_after is not None and 0 < again.value.retry_after <= 3
    assert len(slack.log) == 1


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, "invalid_payload"),
        (403, "action_prohibited"),
        (404, "channel_not_found"),
        (410, "channel_is_archived"),
        (404, "no_service"),
    ],
)
async def test_webhook_permanent(
    slack: HTTPServer,
    session: aiohttp.ClientSession,
    status: int,
    error: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    slack.expect_request(HOOK_PATH).respond_with_data(error, status=status)
    with pytest.raises(SlackPermanent) as info:
        await client(session, slack).post("ops", hook(slack), PAYLOAD)
    assert info.value.error == error
    assert info.value.permanent is True
    assert info.value.status == status
    assert isinstance(info.value, DeliveryError)
    assert error in str(info.value) and "ops" in str(info.value)
    assert_no_secrets(str(info.value))
    assert_no_secrets(our_logs(caplog))


async def test_webhook_200_not_ok_is_permanent(
    slack: HTTPServer, session: aiohttp.ClientSession
) -> None:
    slack.expect_request(HOOK_PATH).respond_with_data("invalid_blocks")
    with pytest.raises(SlackPermanent) as info:
        await client(session, slack).post("ops", hook(slack), PAYLOAD)
    assert info.value.error == "invalid_blocks"


async def test_webhook_500_retryable(slack: HTTPServer, session: aiohttp.ClientSession) -> None:
    slack.expect_request(HOOK_PATH).respond_with_data("rollup_error", status=500)
    with pytest.raises(SlackRetryable) as info:
        await client(session, slack).post("ops", hook(slack), PAYLOAD)
    assert info.value.retry_after is None
    assert "rollup_error" in str(info.value)


async def test_timeout_retryable(slack: HTTPServer, session: aiohttp.ClientSession) -> None:
    release = threading.Event()

    def slow(_: Request) -> Response:
        release.wait(5)
        return Response("ok")

    slack.expect_request(HOOK_PATH).respond_with_handler(slow)
    started = time.monotonic()
    try:
        with pytest.raises(SlackRetryable) as info:
            await client(session, slack, timeout=0.3).post("ops", hook(slack), PAYLOAD)
    finally:
        release.set()
    assert time.monotonic() - started < 3
    assert "timed out" in str(info.value)
    assert_no_secrets(str(info.value))


async def test_connection_refused_retryable_without_secrets(
    session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with socket.socket() as sock:  # a port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    target = SlackTarget(url=SecretStr(f"http://127.0.0.1:{port}{HOOK_PATH}"))
    with pytest.raises(SlackRetryable) as info:
        await SlackClient(session, min_interval=0).post("ops", target, PAYLOAD)
    assert_no_secrets(str(info.value))
    assert_no_secrets(our_logs(caplog))


async def test_garbage_answer_retryable_without_secrets(
    session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    # aiohttp's errors for a broken response name the request URL; it must be scrubbed.
    caplog.set_level(logging.DEBUG)

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        writer.write(b"HTTP/1.1 abc nonsense\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    target = SlackTarget(url=SecretStr(f"http://127.0.0.1:{port}{HOOK_PATH}"))
    try:
        with pytest.raises(SlackRetryable) as info:
            await SlackClient(session, min_interval=0).post("ops", target, PAYLOAD)
    finally:
        server.close()
        await server.wait_closed()
    assert_no_secrets(str(info.value))
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert_no_secrets(our_logs(caplog))


async def test_non_http_url_is_permanent(session: aiohttp.ClientSession) -> None:
    target = SlackTarget(url=SecretStr("file:///etc/passwd" + HOOK_PATH))
    with pytest.raises(SlackPermanent) as info:
        await SlackClient(session, min_interval=0).post("ops", target, PAYLOAD)
    assert_no_secrets(str(info.value))


# --- chat.postMessage -------------------------------------------------------------------------


async def test_api_ok_returns_ts_and_sends_thread(
    slack: HTTPServer, session: aiohttp.ClientSession
) -> None:
    answer = {"ok": True, "channel": "C123", "ts": "1503435956.000247", "message": {}}
    slack.expect_request(
        "/api/chat.postMessage", method="POST", headers={"Authorization": f"Bearer {TOKEN}"}
    ).respond_with_json(answer)
    payload = {**PAYLOAD, "thread_ts": "1503435900.000100"}
    result = await client(session, slack).post("bot", bot(), payload)
    assert result.ts == "1503435956.000247"
    assert result.channel == "C123"
    assert result.status == 200
    request, _ = slack.log[0]
    sent = json.loads(request.get_data())
    assert sent["channel"] == "#ops"
    assert sent["thread_ts"] == "1503435900.000100"
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"


async def test_api_no_thread_ts_unless_given(
    slack: HTTPServer, session: aiohttp.ClientSession
) -> None:
    slack.expect_request("/api/chat.postMessage").respond_with_json({"ok": True, "ts": "1.2"})
    await client(session, slack).post("bot", bot(), PAYLOAD)
    sent = json.loads(slack.log[0][0].get_data())
    assert "thread_ts" not in sent


@pytest.mark.parametrize("error", ["channel_not_found", "is_archived", "not_in_channel"])
async def test_api_ok_false_is_permanent(
    slack: HTTPServer, session: aiohttp.ClientSession, error: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    slack.expect_request("/api/chat.postMessage").respond_with_json({"ok": False, "error": error})
    with pytest.raises(SlackPermanent) as info:
        await client(session, slack).post("bot", bot(), PAYLOAD)
    assert info.value.error == error
    assert_no_secrets(str(info.value))
    assert_no_secrets(our_logs(caplog))


async def test_api_internal_error_retryable(
    slack: HTTPServer, session: aiohttp.ClientSession
) -> None:
    slack.expect_request("/api/chat.postMessage").respond_with_json(
        {"ok": False, "error": "internal_error"}
    )
    with pytest.raises(SlackRetryable):
        await client(session, slack).post("bot", bot(), PAYLOAD)


async def test_api_429(slack: HTTPServer, session: aiohttp.ClientSession) -> None:
    slack.expect_request("/api/chat.postMessage").respond_with_json(
        {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": "30"}
    )
    with pytest.raises(SlackRetryable) as info:
        await client(session, slack).post("bot", bot(), PAYLOAD)
    assert info.value.retry_after == 30


async def test_api_echoed_token_is_scrubbed(
    slack: HTTPServer, session: aiohttp.ClientSession
) -> None:
    slack.expect_request("/api/chat.postMessage").respond_with_json(
        {"ok": False, "error": f"invalid_auth {TOKEN}"}
    )
    with pytest.raises(SlackPermanent) as info:
        await client(session, slack).post("bot", bot(), PAYLOAD)
    assert_no_secrets(str(info.value))
    assert_no_secrets(info.value.error)


# --- pacing -----------------------------------------------------------------------------------


def _recording(arrivals: list[tuple[str, float]]) -> Any:
    def handler(request: Request) -> Response:
        arrivals.append((request.path, time.monotonic()))
        return Response("ok")

    return handler


async def test_pacing_one_target(slack: HTTPServer, session: aiohttp.ClientSession) -> None:
    arrivals: list[tuple[str, float]] = []
    slack.expect_request(HOOK_PATH).respond_with_handler(_recording(arrivals))
    c = SlackClient(session, min_interval=1.0)
    target = hook(slack)
    await asyncio.gather(*(c.post("ops", target, PAYLOAD) for _ in range(3)))
    times = sorted(t for _, t in arrivals)
    assert len(times) == 3
    assert times[-1] - times[0] >= 1.8
    assert all(b - a >= 0.9 for a, b in itertools.pairwise(times))


async def test_pacing_targets_independent(
    slack: HTTPServer, session: aiohttp.ClientSession
) -> None:
    arrivals: list[tuple[str, float]] = []
    other = "/services/T0/B1/other"
    slack.expect_request(HOOK_PATH).respond_with_handler(_recording(arrivals))
    slack.expect_request(other).respond_with_handler(_recording(arrivals))
    c = SlackClient(session, min_interval=1.0)
    started = time.monotonic()
    await asyncio.gather(
        c.post("ops", hook(slack), PAYLOAD),
        c.post("dev", hook(slack, other), PAYLOAD),
        c.post("ops", hook(slack), PAYLOAD),
        c.post("dev", hook(slack, other), PAYLOAD),
    )
    elapsed = time.monotonic() - started
    firsts = [min(t for p, t in arrivals if p == path) for path in (HOOK_PATH, other)]
    assert abs(firsts[0] - firsts[1]) < 0.5  # neither target waited for the other
    assert elapsed < 1.8  # serialised would take >= 3 intervals


# --- helpers ----------------------------------------------------------------------------------


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0


def test_target_repr_hides_secrets() -> None:
    assert_no_secrets(repr(bot()))
