"""The real app with the web pages, on a real socket; UI credentials and page helpers."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from unittest import mock

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

import receiver.app as app_module
from receiver.app import create_app
from receiver.config import Config
from receiver.web import has_route, setup_web
from receiver.web.pages import overview_page
from tests.receiver.apphelpers import Running, make_config

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
    """create_app + setup_web, whether or not app.py wires the pages in yet."""
    with contextlib.ExitStack() as stack:
        if hasattr(app_module, "status_page"):  # the placeholder "/" page: ours instead
            stack.enter_context(mock.patch.object(app_module, "status_page", overview_page))
        app = create_app(config, **kw)
    if not has_route(app, "GET", "/api/overview"):
        setup_web(app)
    return app


@contextlib.asynccontextmanager
async def running_ui(config: Config, **kw: Any) -> AsyncIterator[Running]:
    app = build_app(config, **kw)
    srv = TestServer(app, host="127.0.0.1", port=0)
    await srv.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            yield Running(app, str(srv.make_url("")).rstrip("/"), session)
    finally:
        await srv.close()


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
