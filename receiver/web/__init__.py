"""The operator's web pages (issue 7): status, deliveries, previews, and their JSON API.

``setup_web(app)`` adds every route. All of them sit behind ``ui_auth`` (see common.py);
only ``POST .../requeue`` changes anything, and it needs ``ui_auth.write: true`` plus the
page's CSRF token. docs/ui.md documents the JSON API.
"""

from __future__ import annotations

from collections import OrderedDict

from aiohttp import web

from receiver.web import delivery, pages, preview
from receiver.web.common import HERE, setup_common, ui
from receiver.web.present import REPORT_NEXT_RUN

__all__ = ["REPORT_NEXT_RUN", "setup_web"]

_STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
STATIC = {
    p.name: (p.read_bytes(), _STATIC_TYPES[p.suffix])
    for p in (HERE / "static").iterdir()
    if p.suffix in _STATIC_TYPES
}


@ui
async def static(request: web.Request) -> web.StreamResponse:
    found = STATIC.get(request.match_info["name"])
    if found is None:
        raise web.HTTPNotFound(reason="no such file")
    body, ctype = found
    return web.Response(
        body=body,
        headers={"Content-Type": f"{ctype}; charset=utf-8", "Cache-Control": "max-age=300"},
    )


def setup_web(app: web.Application) -> None:
    setup_common(app)
    app[preview.PREVIEW_CACHE] = OrderedDict()
    r = app.router
    r.add_get("/", pages.overview_page)
    r.add_get("/static/{name}", static)
    r.add_get("/deliveries", pages.deliveries_page)
    r.add_get("/deliveries/{id}", delivery.delivery_page)
    r.add_get("/deliveries/{id}/html", delivery.delivery_html)
    r.add_get("/deliveries/{id}/part/{n}", delivery.delivery_part)
    r.add_post("/deliveries/{id}/requeue", delivery.requeue_form)
    r.add_get("/preview", preview.preview_page)
    r.add_post("/preview", preview.preview_page)
    r.add_get("/preview/html/{token}", preview.preview_html)
    r.add_get("/api/overview", pages.overview_api)
    r.add_get("/api/alerts", pages.alerts_api)
    r.add_get("/api/deliveries", pages.deliveries_api)
    r.add_get("/api/deliveries/{id}", delivery.delivery_api)
    r.add_post("/api/deliveries/{id}/requeue", delivery.requeue_api)
    r.add_post("/api/preview", preview.preview_api)
