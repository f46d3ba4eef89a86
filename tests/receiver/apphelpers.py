"""Run the real receiver app on a real socket for tests, and wait for mail."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from receiver.app import create_app
from receiver.config import Config, config_from_dict
from tests.smtp_servers import Sink

TOKEN = "t0ken"


def make_config(tmp_path: Path, servers: list[dict[str, Any]], **extra: Any) -> Config:
    data: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "auth": {"bearer_token": TOKEN},
        "storage": {"path": str(tmp_path / "alertmail.db")},
        "smtp": {
            "from": "Alerts <alerts@example.com>",
            "servers": servers,
            "retry": {"initial": "200ms", "max": "1s", "give_up_after": "1h"},
        },
        "routes": [{"email": ["oncall@example.com"]}],
        "timezone": "Europe/Berlin",
        # One render process per test app is enough (the default is 2).
        "render_workers": 1,
    }
    data.update(extra)
    return config_from_dict(data)


def server(sink: Any, **kw: Any) -> dict[str, Any]:
    return {"host": sink.host, "port": sink.port, "starttls": False, "timeout": "2s", **kw}


@dataclass
class Running:
    app: web.Application
    url: str
    session: aiohttp.ClientSession

    async def post(
        self, payload: Any, path: str = "/webhook", token: str | None = TOKEN, **kw: Any
    ) -> aiohttp.ClientResponse:
        headers = kw.pop("headers", {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if isinstance(payload, bytes | str):
            kw["data"] = payload
        else:
            kw["json"] = payload
        resp = await self.session.post(self.url + path, headers=headers, **kw)
        await resp.read()
        return resp


@contextlib.asynccontextmanager
async def running(config: Config, **kw: Any) -> AsyncIterator[Running]:
    app = create_app(config, **kw)
    srv = TestServer(app, host="127.0.0.1", port=0)
    await srv.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            yield Running(app, str(srv.make_url("")).rstrip("/"), session)
    finally:
        await srv.close()


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


async def wait_for(
    predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition"
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def wait_mail(sink: Sink, count: int, timeout: float = 10.0) -> list[EmailMessage]:
    await wait_for(lambda: len(sink.messages) >= count, timeout, f"{count} email(s)")
    return [parse(m.data) for m in sink.messages]


class FakeClock:
    """An injectable clock: tests move time instead of waiting for it."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def at(text: str) -> float:
    """A UTC wall-clock time as a timestamp."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()
