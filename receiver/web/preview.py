"""``/preview``: render a template against a real, shipped or pasted payload.

Templates are read from disk on every preview (a fresh Renderer per request), so template
authors edit a file and press the button again. Built in: alert email, digest email (the
payload as a one-notification digest) and the Slack message (Block Kit JSON). When the
Renderer offers ``preview_kinds() -> list[str]`` and ``preview(kind, notification, now=...)
-> EmailMessage | str`` (e.g. for reports), those are used instead.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections import OrderedDict
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiohttp import web

from receiver.batching import build_digest
from receiver.config import Config
from receiver.errors import PayloadError, TemplateError
from receiver.keys import RUNTIME, STORE
from receiver.model import Notification, parse_notification
from receiver.render import Renderer, ThreadRef, make_message_id, packaged_templates_dir
from receiver.render_digest import digest_email
from receiver.slack_message import slack_message
from receiver.web import mime
from receiver.web.common import BASE_HEADERS, EMAIL_CSP, HERE, fmt_time, page, ui
from receiver.web.pages import views

EXAMPLES = HERE / "examples"
PREVIEW_CACHE = web.AppKey("ui_preview_cache", OrderedDict)
CACHE_SIZE = 32
CACHE_TTL = 3600.0
MAX_PASTE = 4 * 1024 * 1024
_LOCATION = re.compile(r"^(?P<file>[^\n]+?\.j2):(?P<line>\d+): ", re.DOTALL)


def examples() -> list[str]:
    return sorted(p.name for p in EXAMPLES.glob("*.json"))


BUILTIN_KINDS = ("alert", "digest", "slack")


def kinds(renderer: Renderer) -> list[str]:
    offered = getattr(renderer, "preview_kinds", None)
    return [str(k) for k in offered()] if callable(offered) else list(BUILTIN_KINDS)


def _builtin(
    kind: str, renderer: Renderer, n: Notification, now: datetime, sender: str
) -> EmailMessage | str:
    """Render ``kind`` for one notification the way the dispatcher/scheduler would."""
    rcpts = ["recipient@example.com"]
    if kind == "digest":
        end = now.timestamp()
        digest = build_digest([(end, n)], end - 3600.0, end)
        return digest_email(
            digest,
            renderer=renderer,
            sender=sender,
            recipients=rcpts,
            message_id=make_message_id(sender),
            now=now,
            kind="digest",
            route="preview",
        )
    if kind == "slack":
        return json.dumps(slack_message(n, renderer=renderer, now=now), indent=2)
    return renderer.alert_email(
        n,
        sender=sender,
        recipients=rcpts,
        message_id=make_message_id(sender),
        thread=ThreadRef(root_message_id=None, subject=None),
        now=now,
    )


def _source_excerpt(config: Config, file: str, line: int) -> list[dict[str, Any]]:
    """Lines around ``file:line`` when the file is one of the template folders' files."""
    roots = [d.resolve() for d in (config.templates_dir, packaged_templates_dir()) if d]
    candidates = [Path(file)] if Path(file).is_absolute() else [r / file for r in roots]
    for path in candidates:
        resolved = path.resolve()
        if any(resolved.is_relative_to(r) for r in roots) and resolved.is_file():
            lines = resolved.read_text(encoding="utf-8", errors="replace").splitlines()
            lo, hi = max(1, line - 3), min(len(lines), line + 3)
            return [{"n": n, "text": lines[n - 1], "hit": n == line} for n in range(lo, hi + 1)]
    return []


def render_preview(config: Config, kind: str, raw: str) -> dict[str, Any]:
    """Everything the preview shows. Runs in a worker thread (rendering is CPU work)."""
    out: dict[str, Any] = {
        "error": None,
        "error_kind": None,
        "file": None,
        "line": None,
        "source": [],
        "subject": "",
        "text": None,
        "html": None,
        "headers": [],
    }
    out.update(_render(config, kind, raw))
    return out


def _render(config: Config, kind: str, raw: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        return {"error": f"the payload is not JSON: {exc}", "error_kind": "payload"}
    try:
        n = parse_notification(data)
    except PayloadError as exc:
        return {"error": f"not an Alertmanager v4 notification: {exc}", "error_kind": "payload"}
    renderer = Renderer(config.templates_dir, config.tz)
    if kind not in kinds(renderer):
        return {"error": f"unknown template kind {kind!r}", "error_kind": "payload"}
    now = datetime.now(UTC)
    sender = config.smtp.from_ if config.smtp else "Alerts <alerts@example.com>"
    try:
        hook = getattr(renderer, "preview", None)
        if callable(hook):
            result: EmailMessage | str = hook(kind, n, now=now)
        else:
            result = _builtin(kind, renderer, n, now, sender)
    except TemplateError as exc:
        message = str(exc)
        out: dict[str, Any] = {"error": message, "error_kind": "template"}
        m = _LOCATION.match(message)
        if m:
            out.update(file=m["file"], line=int(m["line"]))
            out["source"] = _source_excerpt(config, m["file"], int(m["line"]))
        return out
    if isinstance(result, str):
        return {"text": result}
    shown = mime.show(result.as_bytes())
    return {
        "subject": shown.subject,
        "text": shown.text,
        "html": shown.html,
        "headers": [{"name": k, "value": v} for k, v in shown.headers],
    }


def _stash(app: web.Application, html: str) -> str:
    cache: OrderedDict[str, tuple[float, str]] = app[PREVIEW_CACHE]
    token = secrets.token_urlsafe(16)
    cache[token] = (time.monotonic(), html)
    while len(cache) > CACHE_SIZE:
        cache.popitem(last=False)
    return token


async def _payload_text(request: web.Request, source: str, pasted: str) -> str:
    kind, _, value = source.partition(":")
    if kind == "notification":
        try:
            nid = int(value)
        except ValueError:
            raise web.HTTPBadRequest(reason=f"bad notification id {value!r}") from None
        text = await request.app[STORE].run(views(request).notification_payload, nid)
        if text is None:
            raise web.HTTPNotFound(reason=f"no notification {nid} (pruned?)")
        return text
    if kind == "example":
        if value not in examples():
            raise web.HTTPNotFound(reason=f"no example named {value!r}")
        return (EXAMPLES / value).read_text(encoding="utf-8")
    if len(pasted) > MAX_PASTE:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_PASTE, actual_size=len(pasted))
    return pasted


async def _form_context(request: web.Request) -> dict[str, Any]:
    tz = request.app[RUNTIME].config.tz
    recent = await request.app[STORE].run(views(request).recent_notifications, 30)
    return {
        "kinds": kinds(request.app[RUNTIME].renderer),
        "examples": examples(),
        "recent": [
            {
                "id": n.id,
                "label": f"#{n.id} {fmt_time(n.received_at, tz)} {n.status} {n.group_key}"[:160],
            }
            for n in recent
        ],
    }


@ui
async def preview_page(request: web.Request) -> web.StreamResponse:
    ctx = await _form_context(request)
    form = {"kind": "alert", "source": "paste", "payload": ""}
    result = None
    if request.method == "POST":
        post = await request.post()
        form = {k: str(post.get(k, "")) for k in ("kind", "source", "payload")}
        raw = await _payload_text(request, form["source"], form["payload"])
        config = request.app[RUNTIME].config
        result = await asyncio.to_thread(render_preview, config, form["kind"], raw)
        html = result.pop("html")
        result["html_url"] = None if html is None else f"/preview/html/{_stash(request.app, html)}"
    return page(request, "preview.html.j2", {**ctx, "form": form, "result": result})


@ui
async def preview_html(request: web.Request) -> web.StreamResponse:
    cache: OrderedDict[str, tuple[float, str]] = request.app[PREVIEW_CACHE]
    entry = cache.get(request.match_info["token"])
    if entry is None or time.monotonic() - entry[0] > CACHE_TTL:
        raise web.HTTPNotFound(reason="preview expired; render it again")
    return web.Response(
        text=entry[1],
        content_type="text/html",
        charset="utf-8",
        headers={**BASE_HEADERS, "Content-Security-Policy": EMAIL_CSP},
    )


@ui
async def preview_api(request: web.Request) -> web.StreamResponse:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(reason="expected a JSON object") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(reason="expected a JSON object")
    payload = body.get("payload", "")
    pasted = payload if isinstance(payload, str) else json.dumps(payload)
    raw = await _payload_text(request, str(body.get("source", "paste")), pasted)
    config = request.app[RUNTIME].config
    result = await asyncio.to_thread(render_preview, config, str(body.get("kind", "alert")), raw)
    return web.json_response(result)
