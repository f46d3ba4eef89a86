"""The real app with the web pages, on a real socket; UI credentials and page helpers."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from receiver.app import create_app
from receiver.config import Config
from tests.receiver.apphelpers import Running, make_config, running

UI_USER, UI_PASSWORD = "ops", "s3cret"
UI_AUTH = aiohttp.encode_basic_auth(UI_USER, UI_PASSWORD)


def ui_config(
    tmp_path: Path, servers: list[dict[str, Any]], *, write: bool = False, **extra: Any
) -> Config:
    extra.setdefault(
        "ui_auth",
        {"basic_auth": {"username": UI_USER, "password": UI_PASSWORD}, "write": write},
    )
    return make_config(tmp_path, servers, **extra)


def build_app(config: Config, **kw: Any) -> web.Application:
    """The receiver's own app: create_app wires the pages in."""
    return create_app(config, **kw)


def running_ui(config: Config, **kw: Any) -> contextlib.AbstractAsyncContextManager[Running]:
    """The real app, pages included, on a real socket (the same helper as the other tests)."""
    return running(config, **kw)


async def get(
    rx: Running, path: str, auth: str | None = UI_AUTH, **kw: Any
) -> tuple[int, str, aiohttp.ClientResponse]:
    """GET with the UI's credentials (auth: an Authorization header value, or None)."""
    headers = kw.pop("headers", {})
    if auth is not None:
        headers["Authorization"] = auth
    resp = await rx.session.get(rx.url + path, allow_redirects=False, headers=headers, **kw)
    return resp.status, await resp.text(), resp


async def get_json(rx: Running, path: str) -> Any:
    status, _, resp = await get(rx, path)
    assert status == 200, (path, status)
    return await resp.json()


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([0-9a-f]+)"', html)
    assert m, "no CSRF token in the page"
    return m.group(1)
