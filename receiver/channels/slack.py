"""Slack delivery: incoming webhooks and chat.postMessage. The only Slack network I/O.

Outcomes follow Slack's documented answers:

* Incoming webhook: 200 with body ``ok`` is success. 400 ``invalid_payload``, 403
  ``action_prohibited``, 404 ``channel_not_found``, 410 ``channel_is_archived`` are verdicts
  on the message or the target (`SlackPermanent`); 5xx (``rollup_error``) is Slack's trouble
  (`SlackRetryable`).
* chat.postMessage: HTTP 200 with ``{"ok": true, "ts": ...}`` is success; ``{"ok": false,
  "error": ...}`` is permanent unless the error is one Slack describes as transient.
* Both: 429 carries Retry-After (seconds) -> `SlackRetryable.retry_after`; timeouts and
  connection errors are retryable.

The webhook URL (its path is the credential) and the bot token never appear in an error or
a log line: messages name the target and are scrubbed of both before they leave here.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from pydantic import SecretStr

from receiver.config import SlackTarget
from receiver.errors import DeliveryError
from receiver.render_context import one_line, safe_href

log = logging.getLogger(__name__)

__all__ = ["SlackClient", "SlackPermanent", "SlackResult", "SlackRetryable"]

MAX_BODY = 4096
"""Characters of a response body kept: Slack answers are short; an HTML error page is not."""

# chat.postMessage errors that Slack documents as temporary on its side.
_TRANSIENT_API_ERRORS = frozenset(
    {"internal_error", "fatal_error", "service_unavailable", "request_timeout", "ratelimited"}
)


@dataclass(frozen=True)
class SlackResult:
    status: int  # HTTP status
    body: str  # response body (capped), "ok" for a webhook
    ts: str | None  # message timestamp (chat.postMessage only): thread later messages under it
    channel: str | None  # channel id Slack posted to (chat.postMessage only)
    elapsed: float  # seconds the HTTP exchange took, pacing wait excluded


class SlackRetryable(DeliveryError):
    """Try again later: 5xx, 429, timeouts, connection errors."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, status: int | None = None
    ) -> None:
        super().__init__(message, permanent=False)
        self.retry_after = retry_after  # honour it even beyond the configured max backoff
        self.status = status


class SlackPermanent(DeliveryError):
    """Slack refused the message or the target for good (wrong channel, archived, bad blocks)."""

    def __init__(self, message: str, *, error: str, status: int | None = None) -> None:
        super().__init__(message, permanent=True)
        self.error = error
        self.status = status


def _reveal(value: SecretStr | str | None) -> str:
    if value is None:
        return ""
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: Slack sends an integer; an HTTP date is accepted too."""
    if not value:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class _Scrubber:
    """Removes a target's secrets from any text that may leave this module."""

    def __init__(self, target: SlackTarget) -> None:
        url = _reveal(target.url)
        secrets = [url, _reveal(target.token)]
        if url:
            path = urlsplit(url).path
            # The path is the credential; error texts may show it without the host.
            if len(path) > 1:
                secrets.append(path)
        self._secrets = sorted((s for s in secrets if s), key=len, reverse=True)

    def __call__(self, text: str, limit: int = 300) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "<redacted>")
        return one_line(text, limit)


class SlackClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        api_url: str = "https://slack.com/api",
        timeout: float = 10.0,
        min_interval: float = 1.0,
    ) -> None:
        self._session = session
        self._api_url = api_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._min_interval = min_interval
        # Per target: when its next message may go out (monotonic clock). A post reserves
        # the next slot synchronously, so concurrent posts queue up 1 interval apart and
        # no lock is held across the HTTP exchange.
        self._next_slot: dict[str, float] = {}
        # Per target: until when Slack told us (429) to stay away.
        self._blocked_until: dict[str, float] = {}

    async def post(
        self, target_name: str, target: SlackTarget, payload: dict[str, Any]
    ) -> SlackResult:
        """Post one message; raises SlackRetryable or SlackPermanent (see module docstring)."""
        scrub = _Scrubber(target)
        name = one_line(target_name, 100)
        self._check_blocked(target_name, name)
        await self._wait_turn(target_name)
        self._check_blocked(target_name, name)  # a 429 may have arrived while we waited
        token = _reveal(target.token)
        if token:
            url = f"{self._api_url}/chat.postMessage"
            body = dict(payload)
            body["channel"] = payload.get("channel") or _reveal(target.channel)
            headers = {"Authorization": f"Bearer {token}"}
        else:
            url = _reveal(target.url)
            if safe_href(url) is None:
                raise SlackPermanent(f"slack {name}: webhook url is not http(s)", error="bad_url")
            # The webhook is bound to its channel; a channel key would only be ignored or refused.
            body = {k: v for k, v in payload.items() if k != "channel"}
            headers = {}
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        headers["Content-Type"] = "application/json; charset=utf-8"
        started = time.monotonic()
        try:
            async with self._session.post(
                url, data=data, headers=headers, timeout=self._timeout, allow_redirects=False
            ) as resp:
                status = resp.status
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                text = (await resp.text(errors="replace"))[:MAX_BODY]
        # `from None` throughout: a chained aiohttp error would print the URL in a traceback.
        except TimeoutError:
            raise SlackRetryable(f"slack {name}: timed out after {self._timeout.total}s") from None
        except aiohttp.ClientError as exc:
            # str(exc) of some aiohttp errors carries the request URL, hence the scrub.
            message = f"slack {name}: {type(exc).__name__}: {scrub(str(exc))}"
            raise SlackRetryable(message) from None
        elapsed = time.monotonic() - started
        if status == 429:
            wait = retry_after if retry_after is not None else self._min_interval
            self._blocked_until[target_name] = time.monotonic() + wait
            raise SlackRetryable(
                f"slack {name}: HTTP 429 rate limited, retry after {wait:g}s",
                retry_after=retry_after,
                status=status,
            )
        text = scrub(text, MAX_BODY) if text else ""
        if token:
            result = self._api_result(name, status, text, elapsed)
        else:
            result = self._webhook_result(name, status, text, elapsed)
        log.debug("slack %s: posted (HTTP %d, %.3fs)", name, status, elapsed)
        return result

    def _check_blocked(self, target_name: str, name: str) -> None:
        remaining = self._blocked_until.get(target_name, 0.0) - time.monotonic()
        if remaining > 0:
            # Slack asked us to back off; hitting it again now only extends the penalty.
            raise SlackRetryable(
                f"slack {name}: rate limited, {remaining:.0f}s left", retry_after=remaining
            )

    async def _wait_turn(self, target_name: str) -> None:
        now = time.monotonic()
        slot = max(now, self._next_slot.get(target_name, now))
        self._next_slot[target_name] = slot + self._min_interval
        if slot > now:
            await asyncio.sleep(slot - now)

    @staticmethod
    def _webhook_result(name: str, status: int, text: str, elapsed: float) -> SlackResult:
        if status == 200 and text.strip() == "ok":
            return SlackResult(status, text, None, None, elapsed)
        error = one_line(text, 200) or f"http_{status}"
        message = f"slack {name}: HTTP {status}: {error}"
        if status >= 500 or status == 408:
            raise SlackRetryable(message, status=status)
        # 400/403/404/410, a 200 whose body is not "ok", and anything unexpected (a redirect
        # we do not follow): retrying the same message to the same URL cannot change that.
        raise SlackPermanent(message, error=error, status=status)

    @staticmethod
    def _api_result(name: str, status: int, text: str, elapsed: float) -> SlackResult:
        if status >= 500 or status == 408:
            raise SlackRetryable(f"slack {name}: HTTP {status}", status=status)
        try:
            answer = json.loads(text)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            if status == 200:
                # A proxy or captive page answered instead of Slack: not a verdict on the message.
                raise SlackRetryable(f"slack {name}: HTTP 200 without a Slack answer")
            raise SlackPermanent(
                f"slack {name}: HTTP {status}", error=f"http_{status}", status=status
            )
        if answer.get("ok") is True and status == 200:
            ts = answer.get("ts")
            chan = answer.get("channel")
            return SlackResult(
                status,
                text,
                ts if isinstance(ts, str) else None,
                chan if isinstance(chan, str) else None,
                elapsed,
            )
        error = one_line(str(answer.get("error") or f"http_{status}"), 200)
        message = f"slack {name}: chat.postMessage: {error}"
        if error in _TRANSIENT_API_ERRORS:
            raise SlackRetryable(message, status=status)
        raise SlackPermanent(message, error=error, status=status)
