"""``/deliveries/{id}``: one delivery's history, the message as sent, and re-queueing."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from receiver.keys import EMAIL_WORKER, RUNTIME, STORE
from receiver.store_views import DeliveryDetail
from receiver.web import mime
from receiver.web.common import (
    BASE_HEADERS,
    CSRF_FIELD,
    CSRF_HEADER,
    EMAIL_CSP,
    current_user,
    error_response,
    page,
    ui,
    write_denied,
)
from receiver.web.pages import now_of, views
from receiver.web.present import detail_item

log = logging.getLogger(__name__)

REQUEUE_STATES = ("dead", "retrying")


def _id(request: web.Request, key: str = "id") -> int:
    try:
        return int(request.match_info[key])
    except ValueError:
        raise web.HTTPNotFound(reason="no such delivery") from None


async def _load(request: web.Request) -> DeliveryDetail:
    outbox_id = _id(request)
    detail = await request.app[STORE].run(views(request).delivery, outbox_id)
    if detail is None:
        raise web.HTTPNotFound(reason=f"no delivery {outbox_id} (pruned after the retention?)")
    return detail


def _message(detail: DeliveryDetail) -> tuple[mime.Shown, dict[str, Any]]:
    shown = mime.show(detail.payload, detail.summary.channel)
    base = f"/deliveries/{detail.summary.id}"
    data = {
        "is_email": shown.is_email,
        "subject": shown.subject,
        "headers": [{"name": k, "value": v} for k, v in shown.headers],
        "text": shown.text,
        "html_url": f"{base}/html" if shown.html is not None else None,
        "parts": [
            {
                "index": p.index,
                "content_type": p.content_type,
                "size": p.size,
                "filename": p.filename,
                "content_id": p.content_id,
                "url": f"{base}/part/{p.index}",
                "is_image": p.is_image,
            }
            for p in shown.parts
        ],
        "raw": shown.raw,
        "problem": shown.problem,
    }
    return shown, data


async def detail_data(request: web.Request) -> dict[str, Any]:
    detail = await _load(request)
    item = detail_item(detail, now_of(request), request.app[RUNTIME].config.tz)
    item["message"] = _message(detail)[1]
    item["can_requeue"] = detail.summary.state in REQUEUE_STATES
    return item


@ui
async def delivery_page(request: web.Request) -> web.StreamResponse:
    data = await detail_data(request)
    flash = "Re-queued: the worker picks it up now." if "requeued" in request.query else None
    return page(request, "delivery.html.j2", {"d": data, "flash": flash})


@ui
async def delivery_api(request: web.Request) -> web.StreamResponse:
    return web.json_response(await detail_data(request))


@ui
async def delivery_html(request: web.Request) -> web.StreamResponse:
    """The HTML part, framed by our page but sandboxed: no scripts, no origin, no network."""
    shown, _ = _message(await _load(request))
    if shown.html is None:
        raise web.HTTPNotFound(reason="this message has no HTML part")
    return web.Response(
        text=shown.html,
        content_type="text/html",
        charset="utf-8",
        headers={**BASE_HEADERS, "Content-Security-Policy": EMAIL_CSP},
    )


@ui
async def delivery_part(request: web.Request) -> web.StreamResponse:
    detail = await _load(request)
    if detail.summary.channel != "email":
        raise web.HTTPNotFound(reason="only email deliveries have MIME parts")
    found = mime.part_content(detail.payload, _id(request, "n"))
    if found is None:
        raise web.HTTPNotFound(reason="no such part")
    ctype, body, filename = found
    headers = {**BASE_HEADERS, "Content-Security-Policy": EMAIL_CSP, "Content-Type": ctype}
    if ctype == "application/octet-stream":
        safe = "".join(c for c in (filename or "part") if c.isalnum() or c in "._-")[:100]
        headers["Content-Disposition"] = f'attachment; filename="{safe or "part"}"'
    return web.Response(body=body, headers=headers)


async def _requeue(request: web.Request, token: str | None) -> tuple[int, str]:
    """(status, message): 200 when re-queued, else why not."""
    denied = write_denied(request, token)
    if denied is not None:
        return 403, denied
    outbox_id = _id(request)
    detail = await request.app[STORE].run(views(request).delivery, outbox_id)
    if detail is None:
        return 404, f"no delivery {outbox_id}"
    if detail.summary.state not in REQUEUE_STATES:
        return 409, f"delivery {outbox_id} is {detail.summary.state}; only dead or retrying ones"
    store = request.app[STORE]
    changed = await store.run(store.store.requeue, now_of(request), outbox_id)
    if not changed:
        return 409, f"delivery {outbox_id} changed state meanwhile; reload and look again"
    log.info("delivery %d re-queued from the web UI by %r", outbox_id, current_user(request))
    request.app[EMAIL_WORKER].wake()
    return 200, f"delivery {outbox_id} re-queued"


@ui
async def requeue_form(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    token = form.get(CSRF_FIELD)
    status, message = await _requeue(request, token if isinstance(token, str) else None)
    if status != 200:
        return error_response(request, status, message)
    raise web.HTTPSeeOther(f"/deliveries/{_id(request)}?requeued=1")


@ui
async def requeue_api(request: web.Request) -> web.StreamResponse:
    status, message = await _requeue(request, request.headers.get(CSRF_HEADER))
    if status != 200:
        return error_response(request, status, message)
    return web.json_response({"status": "ok", "message": message})
