"""Grafana HTTP API client: dashboards by uid and panel images from the image renderer.

The only network I/O of the report job besides Prometheus. Every failure is a GrafanaError
with a one-line reason; the report job then draws the panel itself (a report with a locally
drawn panel beats no report because the renderer plugin is missing or slow).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp

from receiver.errors import AlertmailError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class GrafanaError(AlertmailError):
    """Grafana could not give us what we asked for (HTTP error, wrong content, timeout)."""


@dataclass(frozen=True)
class GrafanaDashboard:
    model: dict[str, Any]  # the dashboard JSON model
    slug: str
    url: str  # the dashboard's path, "/d/uid/slug" (meta.url)


def dashboard_query(
    start_ms: int, end_ms: int, variables: Mapping[str, Sequence[str]], tz: str | None = None
) -> list[tuple[str, str]]:
    """Query parameters shared by dashboard links and render calls (``var-x`` repeats)."""
    params = [("from", str(start_ms)), ("to", str(end_ms))]
    for name, values in variables.items():
        params.extend((f"var-{name}", v) for v in values)
    if tz:
        params.append(("tz", tz))
    return params


class GrafanaClient:
    def __init__(
        self,
        url: str,
        token: str | None,
        session: aiohttp.ClientSession,
        *,
        timeout: float = 30.0,
        max_concurrent_renders: int = 2,
    ) -> None:
        self.url = url.rstrip("/")
        self.session = session
        self.timeout = timeout
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        # The renderer starts a headless browser per image: more than a couple at once only
        # queue inside Grafana and make each one slower.
        self._renders = asyncio.Semaphore(max_concurrent_renders)

    async def dashboard(self, uid: str) -> GrafanaDashboard:
        url = f"{self.url}/api/dashboards/uid/{quote(uid, safe='')}"
        status, ctype, body = await self._get(url, {"Accept": "application/json"})
        if status != 200:
            raise GrafanaError(f"{url}: HTTP {status}: {_snippet(body)}")
        try:
            import json

            doc = json.loads(body)
            model = doc["dashboard"]
            meta = doc.get("meta") or {}
        except (ValueError, KeyError, TypeError) as exc:
            raise GrafanaError(f"{url}: not a dashboard answer ({ctype}): {exc}") from None
        if not isinstance(model, dict):
            raise GrafanaError(f"{url}: 'dashboard' is not an object")
        slug = str(meta.get("slug") or model.get("uid") or uid)
        path = str(meta.get("url") or f"/d/{uid}/{slug}")
        return GrafanaDashboard(model=model, slug=slug, url=path)

    async def render_panel(
        self,
        uid: str,
        slug: str,
        panel_id: int,
        *,
        start_ms: int,
        end_ms: int,
        width: int,
        height: int,
        tz: str,
        variables: Mapping[str, Sequence[str]],
    ) -> bytes:
        """PNG bytes of one panel (``/render/d-solo``); GrafanaError unless a real PNG came."""
        params = [
            *dashboard_query(start_ms, end_ms, variables, tz),
            ("panelId", str(panel_id)),
            ("width", str(width)),
            ("height", str(height)),
        ]
        url = f"{self.url}/render/d-solo/{quote(uid, safe='')}/{quote(slug, safe='')}"
        async with self._renders:
            status, ctype, body = await self._get(f"{url}?{urlencode(params)}", {})
        if status != 200:
            raise GrafanaError(f"render of panel {panel_id}: HTTP {status}: {_snippet(body)}")
        # A login page or an error page can come back as 200 text/html (auth proxies do that).
        if ctype != "image/png" or not body.startswith(PNG_MAGIC):
            raise GrafanaError(f"render of panel {panel_id}: not a PNG ({ctype or 'no type'})")
        return body

    async def _get(self, url: str, headers: Mapping[str, str]) -> tuple[int, str, bytes]:
        try:
            async with asyncio.timeout(self.timeout):
                async with self.session.get(url, headers={**self._headers, **headers}) as resp:
                    return resp.status, resp.content_type, await resp.read()
        except TimeoutError as exc:
            raise GrafanaError(f"{url.split('?')[0]}: no answer within {self.timeout:g}s") from exc
        except aiohttp.ClientError as exc:
            raise GrafanaError(f"{url.split('?')[0]}: {type(exc).__name__}: {exc}") from exc


def _snippet(body: bytes) -> str:
    return " ".join(body[:160].decode("utf-8", "replace").split()) or "(empty body)"
