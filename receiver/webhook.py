"""POST /webhook[/{receiver}]: authenticate, bound, parse, store, answer. Nothing more.

Alertmanager retries 5xx but never a 4xx, so a valid notification is never refused:
only bodies that cannot be a v4 notification get 400.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import re
from typing import Any

import orjson
from aiohttp import HttpVersion11, web

from receiver import wire
from receiver.config import WebhookAuth
from receiver.dispatch_plan import is_heartbeat, settle_at_ingest
from receiver.errors import PayloadError, StoreError
from receiver.keys import DISPATCHER, METRICS, RUNTIME, STORE
from receiver.matchers import unquote_receiver
from receiver.model import parse_notification
from receiver.store import IngestItem, IngestResult

log = logging.getLogger(__name__)


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"status": "error", "error": message}, status=status, headers=headers)


def check_auth(auth: WebhookAuth | None, header: str | None) -> bool:
    """Constant-time check of what Alertmanager's http_config sends."""
    if auth is None:
        return True
    if not header:
        return False
    scheme, _, value = header.partition(" ")
    value = value.strip()
    ok = False
    if auth.bearer_token is not None and scheme.lower() == "bearer":
        # surrogatepass: a header that is not UTF-8 reaches us surrogate-escaped; it can
        # only fail to match, not fail the request
        ok = hmac.compare_digest(
            value.encode("utf-8", "surrogatepass"),
            auth.bearer_token.get_secret_value().encode(),
        )
    if auth.basic_auth is not None and scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return False  # ValueError: b64decode refuses a str that is not ASCII
        expected = auth.basic_auth.password
        pw = expected.get_secret_value() if expected is not None else ""
        # Both compared every time so timing says nothing about which part was wrong.
        user_ok = hmac.compare_digest(user.encode(), auth.basic_auth.username.encode())
        pw_ok = hmac.compare_digest(password.encode(), pw.encode())
        ok = user_ok and pw_ok
    return ok


async def _read_bounded(request: web.Request, limit: int) -> bytes | None:
    if request.content_length is not None and request.content_length > limit:
        return None
    if request.content_length is not None and "Content-Encoding" not in request.headers:
        # A known, plain length (what Alertmanager sends): read in one call. A compressed
        # body is unpacked by aiohttp as it is read, so it is counted as it comes below.
        return await request.read()
    buf = bytearray()
    async for chunk in request.content.iter_chunked(1 << 16):
        buf += chunk
        if len(buf) > limit:
            return None
    return bytes(buf)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _loads(body: bytes) -> tuple[Any, str]:
    """The decoded body and the text to store (the body itself, when it is what it says)."""
    try:
        return orjson.loads(body), body.decode("utf-8")
    except orjson.JSONDecodeError:
        pass
    # The stdlib takes what orjson refuses (huge integers, NaN, escaped lone surrogates):
    # a body Alertmanager would not send, but a notification all the same. Surrogates
    # become U+FFFD, as Go's encoder writes them, so nothing downstream chokes on them.
    text = _SURROGATE.sub("\ufffd", json.dumps(json.loads(body), ensure_ascii=False))
    return json.loads(text), text


def _unauthorized(request: web.Request) -> web.Response | None:
    """401 unless the request carries the configured credentials."""
    config = request.app[RUNTIME].config
    if check_auth(config.auth, request.headers.get("Authorization")):
        return None
    # Not the path's receiver name: unauthenticated callers must not add series.
    request.app[METRICS].webhooks.labels("", "unauthorized").inc()
    scheme = "Basic" if config.auth and config.auth.basic_auth else "Bearer"
    return _error(
        401, "missing or wrong credentials", **{"WWW-Authenticate": f'{scheme} realm="alertmail"'}
    )


def _too_large(request: web.Request, label: str) -> web.Response:
    config = request.app[RUNTIME].config
    request.app[METRICS].webhooks.labels(label, "too_large").inc()
    return _error(
        413,
        f"body larger than max_body ({config.max_body} bytes); set max_alerts in alertmanager.yml",
    )


def _label(request: web.Request) -> str:
    path_receiver = request.match_info.get("receiver")
    return unquote_receiver(path_receiver) if path_receiver else ""


async def expect_continue(request: web.Request) -> web.StreamResponse | None:
    """``Expect: 100-continue``: credentials and a declared size are checked before the
    client is invited to send the body (aiohttp's own handler invites it at once)."""
    refused = _unauthorized(request)
    if refused is not None:
        return refused
    length = request.content_length
    if length is not None and length > request.app[RUNTIME].config.max_body:
        return _too_large(request, _label(request))
    # The rest as aiohttp's own handler does it.
    expect = request.headers.get("Expect", "")
    if request.version == HttpVersion11:
        if expect.lower() != "100-continue":
            raise web.HTTPExpectationFailed(text=f"Unknown Expect: {expect}")
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the response proper has not started
    return None


async def handle_webhook(request: web.Request) -> web.Response:
    app = request.app
    runtime = app[RUNTIME]
    metrics = app[METRICS]
    config = runtime.config
    label = _label(request)

    refused = _unauthorized(request)
    if refused is not None:
        return refused

    body = await _read_bounded(request, config.max_body)
    if body is None:
        return _too_large(request, label)
    try:
        n = wire.decode(body, receiver_override=label or None)
        if n is not None:
            text = body.decode("utf-8")  # already checked by the decoder
        else:
            try:
                raw, text = _loads(body)
            except (ValueError, UnicodeDecodeError) as exc:
                metrics.webhooks.labels(label, "invalid").inc()
                return _error(400, f"body is not JSON: {exc}")
            n = parse_notification(raw, receiver_override=label or None)
    except PayloadError as exc:
        metrics.webhooks.labels(label, "invalid").inc()
        return _error(400, f"not an Alertmanager v4 notification: {exc}")

    label = n.receiver
    dispatcher = app[DISPATCHER]
    deadman = config.deadman
    # A heartbeat repeats with the same alerts by design: never drop one as a duplicate.
    heartbeat = deadman is not None and is_heartbeat(n, deadman.alertname)
    received_at = dispatcher.clock()
    settled = settle_at_ingest(config, n, received_at)
    item = IngestItem(
        received_at=received_at,
        receiver=n.receiver,
        group_key=n.group_key,
        status=n.status,
        dedup_key=n.dedup_key(),
        payload=text,
        dedup_window=0.0 if heartbeat else config.dedup_window,
        settled=settled,
    )

    def stored(result: IngestResult) -> None:
        # Hands the parsed notification to the dispatcher before it can see the new row
        # (else it would parse the stored payload again).
        if not result.duplicate and settled is None:
            dispatcher.accepted(result.notification_id, n)

    try:
        result = await app[STORE].ingest(item, stored)
    except StoreError as exc:
        log.error("cannot store notification for %s: %s", n.group_key, exc)
        metrics.webhooks.labels(label, "store_error").inc()
        return _error(503, "cannot store the notification now; retry")

    if result.duplicate:
        metrics.webhook(label, "duplicate").inc()
        metrics.duplicate_emails.inc()
    else:
        metrics.webhook(label, "accepted").inc()
        if heartbeat:
            metrics.deadman_seen.set(received_at)
        firing = len(n.firing)
        metrics.firing_alerts.inc(firing)
        metrics.resolved_alerts.inc(len(n.alerts) - firing)
    answer = {"status": "ok", "id": result.notification_id, "duplicate": result.duplicate}
    return web.Response(body=orjson.dumps(answer), content_type="application/json")
