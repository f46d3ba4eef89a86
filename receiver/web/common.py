"""What every operator page shares: auth, CSRF, security headers, the UI's Jinja2 env.

The UI has its own credentials (``ui_auth``), checked on every request against the
*current* config, so a reload changes them at once. Webhook credentials never open it.
Writes (re-queue) need ``ui_auth.write: true`` and a CSRF token: with basic auth the
browser sends credentials on cross-site requests too, so the token is what proves a POST
came from our own page. It is an HMAC of the user name under a per-process random key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import web

from receiver.config import UiAuth
from receiver.errors import StoreError
from receiver.keys import RUNTIME
from receiver.units import format_duration

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CSRF_SECRET = web.AppKey("ui_csrf_secret", bytes)
UI_ENV = web.AppKey("ui_jinja_env", jinja2.Environment)
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"

HERE = Path(__file__).resolve().parent

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; "
    "object-src 'none'; frame-ancestors 'self'"
)
# For stored/previewed email HTML: no scripts, no network, no same-origin; inline styles
# are allowed because that is how emails are styled (CSS inlining).
EMAIL_CSP = (
    "sandbox; default-src 'none'; img-src data: cid:; style-src 'unsafe-inline'; "
    "font-src data:; frame-ancestors 'self'"
)
BASE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "SAMEORIGIN",
    "Cache-Control": "no-store",
}


def make_env() -> jinja2.Environment:
    """The UI's own environment (not the email one): autoescaped, strict, from our folder."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


def setup_common(app: web.Application) -> None:
    app[CSRF_SECRET] = secrets.token_bytes(32)
    app[UI_ENV] = make_env()


# -- auth ------------------------------------------------------------------------------
def ui_user(ui: UiAuth, header: str | None) -> str | None:
    """The authenticated user name ("" when the UI has no credentials set), or None."""
    basic = ui.basic_auth
    if basic is None:
        return ""
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    expected = basic.password.get_secret_value() if basic.password is not None else ""
    user_ok = hmac.compare_digest(user.encode(), basic.username.encode())
    pw_ok = hmac.compare_digest(password.encode(), expected.encode())
    return user if user_ok and pw_ok else None


def wants_json(request: web.Request) -> bool:
    return request.path.startswith("/api/")


def error_response(request: web.Request, status: int, message: str) -> web.Response:
    if wants_json(request):
        return web.json_response(
            {"status": "error", "error": message}, status=status, headers=BASE_HEADERS
        )
    return page(request, "error.html.j2", {"status": status, "message": message}, status=status)


def ui(handler: Handler) -> Handler:
    """Wrap a UI handler: ui_auth basic auth, then security headers on whatever it returns."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        ui_auth = request.app[RUNTIME].config.ui_auth
        user = ui_user(ui_auth, request.headers.get("Authorization"))
        if user is None:
            resp: web.StreamResponse = web.Response(
                status=401,
                text="401: the alertmail pages need the ui_auth credentials\n",
                headers={"WWW-Authenticate": 'Basic realm="alertmail UI", charset="UTF-8"'},
            )
        else:
            try:
                resp = await handler(request)
            except web.HTTPException as exc:
                if exc.status >= 400:
                    resp = error_response(request, exc.status, exc.reason)
                else:
                    raise
            except StoreError as exc:
                resp = error_response(request, 503, f"the database is not readable now: {exc}")
        for key, value in BASE_HEADERS.items():
            resp.headers.setdefault(key, value)
        resp.headers.setdefault("Content-Security-Policy", PAGE_CSP)
        return resp

    wrapped.__name__ = getattr(handler, "__name__", "ui_handler")
    return wrapped


# -- CSRF ------------------------------------------------------------------------------
def current_user(request: web.Request) -> str:
    """Who is signed in ("" without ui_auth credentials); only call behind ``ui``."""
    ui_auth = request.app[RUNTIME].config.ui_auth
    return ui_user(ui_auth, request.headers.get("Authorization")) or ""


def csrf_token(request: web.Request) -> str:
    user = current_user(request)
    mac = hmac.new(request.app[CSRF_SECRET], f"csrf:{user}".encode(), hashlib.sha256)
    return mac.hexdigest()


def csrf_ok(request: web.Request, submitted: str | None) -> bool:
    return bool(submitted) and hmac.compare_digest(str(submitted), csrf_token(request))


def write_denied(request: web.Request, submitted: str | None) -> str | None:
    """Why a write must be refused (403), or None when it may go ahead."""
    if not request.app[RUNTIME].config.ui_auth.write:
        return (
            "Changes from the web pages are turned off. Set `ui_auth: {write: true}` in the "
            "config (and reload) to allow re-queueing here, or use `alertmail outbox retry ID`."
        )
    if not csrf_ok(request, submitted):
        return "Missing or wrong CSRF token. Reload the page and try again."
    return None


# -- rendering -------------------------------------------------------------------------
def page(
    request: web.Request, template: str, context: Mapping[str, Any], status: int = 200
) -> web.Response:
    runtime = request.app[RUNTIME]
    base = {
        "path": request.path,
        "csrf_token": csrf_token(request),
        "can_write": runtime.config.ui_auth.write,
        "timezone": runtime.config.tz.key,
    }
    html = request.app[UI_ENV].get_template(template).render({**base, **context})
    return web.Response(
        text=html, status=status, content_type="text/html", charset="utf-8", headers=BASE_HEADERS
    )


def fmt_time(ts: float | None, tz: ZoneInfo) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")


def fmt_age(ts: float | None, now: float) -> str:
    """'5m ago' / 'in 30s' for a timestamp relative to now."""
    if ts is None:
        return ""
    delta = now - ts
    text = format_duration(abs(delta)) if abs(delta) >= 1 else "0s"
    return f"{text} ago" if delta >= 0 else f"in {text}"


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def int_param(value: str | None, default: int, lo: int, hi: int) -> int:
    try:
        number = int(value) if value not in (None, "") else default
    except ValueError:
        raise web.HTTPBadRequest(reason=f"not a whole number: {value!r}") from None
    return max(lo, min(hi, number))
