"""Prometheus HTTP API client (query, query_range). The only network I/O of the charts.

Errors surface as PrometheusError carrying Prometheus's own message ("parse error: ..."), so
a log line or a report footnote says what is wrong with the expression rather than "HTTP 400".
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp

from receiver.errors import AlertmailError

# One point per this many pixels: denser lines only add anti-aliasing noise and query cost.
PIXELS_PER_POINT = 2
MIN_STEP = 15.0  # seconds; finer than a typical scrape interval just repeats samples
SHORT_RANGE = 3600.0  # below this, steps under MIN_STEP are allowed (a zoomed-in view)
MAX_POINTS = 11_000  # Prometheus refuses range queries above 11 000 points per series
_NICE_STEPS = (
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 10800, 21600, 43200,
    86400,
)  # fmt: skip
_COMPARISON = re.compile(r"(==|!=|>=|<=|>|<)")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_LOGICAL = re.compile(r"\b(and|or|unless|bool)\b")


class PrometheusError(AlertmailError):
    """A query failed: Prometheus answered an error, or could not be reached or understood."""

    def __init__(self, message: str, *, error_type: str | None = None, status: int | None = None):
        self.error_type = error_type
        self.status = status
        super().__init__(message)


class PrometheusTimeoutError(PrometheusError):
    """The query did not finish in time (client or server side)."""


@dataclass(frozen=True)
class Series:
    """One time series. Values are (unix seconds, value); NaN and ±Inf are kept as floats."""

    labels: dict[str, str]
    values: list[tuple[float, float]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.labels.get("__name__", "")


def choose_step(range_s: float, width_px: int) -> float:
    """A "nice" step giving about one point per PIXELS_PER_POINT pixels across the chart.

    Never below MIN_STEP unless the range is shorter than SHORT_RANGE (a point per pixel pair
    of a short window is still cheap), and never so small that Prometheus's point limit bites.
    """
    range_s = max(float(range_s), 1.0)
    points = max(width_px // PIXELS_PER_POINT, 1)
    raw = max(range_s / points, range_s / MAX_POINTS)
    floor = MIN_STEP if range_s >= SHORT_RANGE else 1.0
    raw = max(raw, floor)
    for nice in _NICE_STEPS:
        if nice >= raw:
            return float(nice)
    return float(math.ceil(raw / 86400.0) * 86400)


def _timestamp(value: datetime | float) -> float:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime: give a timezone-aware time")
        return value.timestamp()
    return float(value)


def _fmt_ts(value: float) -> str:
    return f"{value:.3f}"


def _point(pair: Any) -> tuple[float, float]:
    # Prometheus encodes values as strings so NaN, "+Inf" and "-Inf" survive JSON; float()
    # reads all three.
    return float(pair[0]), float(pair[1])


def _parse_result(data: Any) -> list[Series]:
    kind = data.get("resultType")
    result = data.get("result")
    if kind == "matrix":
        return [
            Series(dict(item.get("metric", {})), [_point(p) for p in item.get("values", [])])
            for item in result
            if "values" in item  # native-histogram-only series carry "histograms": not charted
        ]
    if kind == "vector":
        return [
            Series(dict(item.get("metric", {})), [_point(item["value"])])
            for item in result
            if "value" in item
        ]
    if kind == "scalar":
        return [Series({}, [_point(result)])]
    raise PrometheusError(f"unsupported result type {kind!r}")


def _top_level(expr: str) -> str:
    """``expr`` with bracketed parts and string literals blanked out (same length), so that
    operators found in the result are at the top level of the expression."""
    out, depth, quote, escaped = [], 0, "", False
    for ch in expr:
        if quote:
            escaped = not escaped and ch == "\\" and quote != "`"
            quote = "" if ch == quote and not escaped else quote
            out.append(" ")
            continue
        if ch in "\"'`":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        out.append(ch if depth == 0 and ch not in ")]}" else " ")
    return "".join(out)


def split_threshold(expr: str) -> tuple[str, float] | None:
    """``rate(x[5m]) > 0.5`` -> (``rate(x[5m])``, 0.5); None unless exactly that shape.

    The alert expression itself only returns the series past the threshold, which draws as
    a line that appears from nothing. Charting its left side with the threshold as a dashed
    line shows how the value got there. Anything fancier (and/or/unless, bool, two
    comparisons, comments) is charted as written.
    """
    if "#" in expr:
        return None
    flat = _top_level(expr)
    if _LOGICAL.search(flat):
        return None
    ops = list(_COMPARISON.finditer(flat))
    if len(ops) != 1:
        return None
    left, right = expr[: ops[0].start()].strip(), expr[ops[0].end() :].strip()
    if _NUMBER.match(right) and left:
        return left, float(right)
    if _NUMBER.match(left) and right:
        return right, float(left)
    return None


class PrometheusClient:
    """Queries one Prometheus. The session is the caller's (shared connection pool)."""

    def __init__(
        self,
        url: str,
        session: aiohttp.ClientSession,
        *,
        timeout: float = 10.0,
        semaphore: asyncio.Semaphore | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.session = session
        self.timeout = timeout
        self._semaphore = semaphore

    async def query_range(
        self, expr: str, start: datetime | float, end: datetime | float, step: float
    ) -> list[Series]:
        """Range query; a matrix of series (values may contain NaN/±Inf)."""
        params = {
            "query": expr,
            "start": _fmt_ts(_timestamp(start)),
            "end": _fmt_ts(_timestamp(end)),
            "step": f"{step:g}",
        }
        return await self._call("query_range", params)

    async def query(self, expr: str, at: datetime | float | None = None) -> list[Series]:
        """Instant query; each series holds one point (a scalar becomes one unlabelled series)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = _fmt_ts(_timestamp(at))
        return await self._call("query", params)

    async def _call(self, endpoint: str, params: dict[str, str]) -> list[Series]:
        # The server-side timeout makes Prometheus abandon the evaluation too, instead of
        # burning CPU on an answer nobody waits for.
        params = {**params, "timeout": f"{self.timeout:g}s"}
        if self._semaphore is None:
            return await self._post(endpoint, params)
        async with self._semaphore:
            return await self._post(endpoint, params)

    async def _post(self, endpoint: str, params: dict[str, str]) -> list[Series]:
        url = f"{self.url}/api/v1/{endpoint}"
        try:
            # POST form: long expressions do not hit URL length limits of proxies.
            async with asyncio.timeout(self.timeout):
                async with self.session.post(url, data=params) as resp:
                    body = await resp.read()
                    status = resp.status
        except TimeoutError as exc:
            raise PrometheusTimeoutError(
                f"{url}: no answer within {self.timeout:g}s", error_type="timeout"
            ) from exc
        except aiohttp.ClientError as exc:
            raise PrometheusError(f"{url}: {type(exc).__name__}: {exc}") from exc
        return self._decode(url, status, body)

    @staticmethod
    def _decode(url: str, status: int, body: bytes) -> list[Series]:
        try:
            doc = json.loads(body)
        except ValueError:
            snippet = body[:200].decode("utf-8", "replace").strip()
            raise PrometheusError(
                f"{url}: HTTP {status}, not a Prometheus API answer: {snippet!r}", status=status
            ) from None
        if not isinstance(doc, dict) or doc.get("status") != "success":
            doc = doc if isinstance(doc, dict) else {}
            error_type = str(doc.get("errorType") or "") or None
            message = str(doc.get("error") or f"HTTP {status}")
            cls = PrometheusTimeoutError if error_type == "timeout" else PrometheusError
            raise cls(f"{url}: {message}", error_type=error_type, status=status)
        try:
            return _parse_result(doc.get("data") or {})
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise PrometheusError(f"{url}: malformed answer: {exc}", status=status) from exc
