"""``/`` (what is happening now) and ``/deliveries`` (search), with their JSON API."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from receiver.dispatch_plan import DEADMAN_SEEN_KEY
from receiver.keys import DISPATCHER, RUNTIME, STORE
from receiver.store_views import DeliveryFilter, StoreViews
from receiver.units import parse_duration
from receiver.web.common import fmt_time, int_param, iso, page, ui
from receiver.web.present import (
    REPORT_NEXT_RUN,
    STATES,
    alert_item,
    counts_item,
    deadman_item,
    delivery_item,
    digest_item,
    health_items,
    report_items,
    window_items,
)

WINDOW = 24 * 3600.0
RECENT = 15
CHANNELS = ("email", "slack")


def views(request: web.Request) -> StoreViews:
    return StoreViews(request.app[STORE].store)


def deadman_alertname(request: web.Request) -> str | None:
    """The always-firing heartbeat alert, which the firing-alert lists leave out."""
    deadman = request.app[RUNTIME].config.deadman
    return deadman.alertname if deadman else None


def now_of(request: web.Request) -> float:
    return request.app[DISPATCHER].clock()


# -- / ---------------------------------------------------------------------------------
async def overview_data(request: web.Request) -> dict[str, Any]:
    v = views(request)
    now = now_of(request)
    config = request.app[RUNTIME].config
    tz = config.tz

    deadman = deadman_alertname(request)

    def collect() -> tuple[Any, ...]:
        return (
            v.firing_alerts(exclude=deadman),
            v.delivery_counts(now - WINDOW),
            v.deliveries(DeliveryFilter(), RECENT, 0),
            v.queued_digests(),
            v.smtp_health(now - WINDOW),
            v.open_digest_windows(),
            v.kv_get(DEADMAN_SEEN_KEY),
        )

    stored = await request.app[STORE].run(collect)
    (alerts, total), counts, (recent, _), digests, health, windows, deadman_seen = stored
    return {
        "generated_at": iso(now),
        "generated": fmt_time(now, tz),
        "timezone": tz.key,
        "alerts": {"total": total, "items": [alert_item(a, now, tz) for a in alerts]},
        "deliveries": {
            "window_seconds": WINDOW,
            **counts_item(counts),
            "recent": [delivery_item(d, now, tz) for d in recent],
        },
        "digests": [digest_item(d, now, tz) for d in digests],
        "digest_windows": window_items(config, windows, now, tz),
        "reports": report_items(config, request.app.get(REPORT_NEXT_RUN), now, tz),
        "smtp": health_items(config, health, now, tz),
        "deadman": deadman_item(config, deadman_seen, now, tz),
    }


@ui
async def overview_page(request: web.Request) -> web.StreamResponse:
    every = int_param(request.query.get("refresh"), 10, 2, 300)  # seconds between updates
    return page(request, "overview.html.j2", {"data": await overview_data(request), "every": every})


@ui
async def overview_api(request: web.Request) -> web.StreamResponse:
    return web.json_response(await overview_data(request))


@ui
async def alerts_api(request: web.Request) -> web.StreamResponse:
    now = now_of(request)
    tz = request.app[RUNTIME].config.tz
    limit = int_param(request.query.get("limit"), 200, 1, 1000)
    exclude = deadman_alertname(request)
    alerts, total = await request.app[STORE].run(views(request).firing_alerts, limit, exclude)
    return web.json_response({"total": total, "items": [alert_item(a, now, tz) for a in alerts]})


# -- /deliveries -----------------------------------------------------------------------
def _time_param(value: str, name: str, request: web.Request) -> float | None:
    """'' -> None; '24h' -> now - 24h; ISO / datetime-local (in the config's time zone)."""
    value = value.strip()
    if not value:
        return None
    try:
        return now_of(request) - parse_duration(value)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise web.HTTPBadRequest(
            reason=f"{name}: expected a time like 2026-12-03T17:00 or a duration like 24h"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=request.app[RUNTIME].config.tz)
    return dt.timestamp()


def parse_filter(request: web.Request) -> tuple[DeliveryFilter, dict[str, str]]:
    q = request.query
    states = tuple(
        s for raw in q.getall("state", []) for s in raw.split(",") if s.strip() in STATES
    )
    form = {k: q.get(k, "").strip() for k in ("channel", "recipient", "alertname", "q")}
    form.update(since=q.get("since", "").strip(), until=q.get("until", "").strip())
    flt = DeliveryFilter(
        states=states,
        channel=form["channel"] or None,
        recipient=form["recipient"] or None,
        alertname=form["alertname"] or None,
        text=form["q"] or None,
        since=_time_param(form["since"], "since", request),
        until=_time_param(form["until"], "until", request),
    )
    form["state"] = ",".join(states)
    return flt, form


async def deliveries_data(request: web.Request) -> dict[str, Any]:
    flt, form = parse_filter(request)
    per_page = int_param(request.query.get("per_page"), 50, 1, 200)
    page_no = int_param(request.query.get("page"), 1, 1, 1_000_000)
    rows, total = await request.app[STORE].run(
        views(request).deliveries, flt, per_page, (page_no - 1) * per_page
    )
    now = now_of(request)
    tz = request.app[RUNTIME].config.tz
    return {
        "items": [delivery_item(d, now, tz) for d in rows],
        "total": total,
        "page": page_no,
        "per_page": per_page,
        "pages": max(1, math.ceil(total / per_page)),
        "filters": {k: v for k, v in form.items() if v},
    }


def _page_url(filters: dict[str, str], page_no: int, per_page: int) -> str:
    query = {**filters, "page": str(page_no)}
    if per_page != 50:
        query["per_page"] = str(per_page)
    return "/deliveries?" + urlencode(query)


@ui
async def deliveries_page(request: web.Request) -> web.StreamResponse:
    data = await deliveries_data(request)
    _, form = parse_filter(request)
    n, pages = data["page"], data["pages"]
    nav = {
        "prev": _page_url(data["filters"], n - 1, data["per_page"]) if n > 1 else None,
        "next": _page_url(data["filters"], n + 1, data["per_page"]) if n < pages else None,
    }
    return page(
        request,
        "deliveries.html.j2",
        {"data": data, "form": form, "nav": nav, "states": STATES, "channels": CHANNELS},
    )


@ui
async def deliveries_api(request: web.Request) -> web.StreamResponse:
    return web.json_response(await deliveries_data(request))
