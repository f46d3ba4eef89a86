"""Batch matching: a buffer of whole lines in, counted raw matches out.

Per-line work stays in C: one ``findall`` per metric over the whole buffer (patterns from
:mod:`exporters.linere`, at most one match per line) and ``collections.Counter`` over the
results. Python only sees distinct (labels, value) tuples. JSON lines need one
``json.loads`` per line; that is the price of the format.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from exporters.config import MetricConfig
from exporters.linere import batch_plan, required_literal
from exporters.lines import clean

Key = tuple[str, ...]
# A metric with a required literal searches only the lines holding it while that costs less
# than one findall over everything: below one hit per this many bytes (after a few hits).
SPARSE_BYTES_PER_HIT = 2048
SPARSE_MIN_HITS = 8
DECODED_CACHE = 4096  # distinct findall results whose label values are remembered


@dataclass
class ChunkResult:
    """What one buffer produced. Keys are label values (+ the raw value, last)."""

    counts: dict[str, Counter[Key]] = field(default_factory=dict)
    raw: dict[str, Counter[Any]] = field(default_factory=dict)  # findall results, undecoded
    last: dict[str, dict[Key, str]] = field(default_factory=dict)  # gauges: last value wins
    gauge_lines: dict[str, int] = field(default_factory=dict)  # lines that set each gauge
    lines: int = 0
    bytes: int = 0
    parse_errors: int = 0
    too_long: int = 0
    invalid_utf8: int = 0

    def merge(self, other: ChunkResult) -> None:
        for name, c in other.counts.items():
            self.counts.setdefault(name, Counter()).update(c)
        for name, d in other.last.items():
            self.last.setdefault(name, {}).update(d)
        for name, n in other.gauge_lines.items():
            self.gauge_lines[name] = self.gauge_lines.get(name, 0) + n
        self.lines += other.lines
        self.bytes += other.bytes
        self.parse_errors += other.parse_errors
        self.too_long += other.too_long
        self.invalid_utf8 += other.invalid_utf8


class RegexMetric:
    """One metric's batch pattern, and how its label/value groups come out of findall results."""

    def __init__(self, m: MetricConfig) -> None:
        assert m.match is not None
        self.name = m.name
        self.gauge = m.type == "gauge"
        wanted = [*m.label_sources.values(), *([m.value] if m.value is not None else [])]
        # gauges decode every result in order (last value wins), so a span would only add
        # a fullmatch per line
        self.plan = batch_plan(m.match, wanted, span=not self.gauge)
        self.pattern = self.plan.pattern
        self.literal = required_literal(m.match)
        self.count_only = not self.gauge and not wanted
        self.decoded: dict[Any, Key] = {}

    def _key(self, raw: Any) -> Key:
        return tuple(v.decode("utf-8", "replace") for v in self.plan.values(raw))

    def _cached_key(self, raw: Any) -> Key:
        """``_key``, remembered across batches: a metric sees few distinct results."""
        key = self.decoded.get(raw)
        if key is None:
            if len(self.decoded) >= DECODED_CACHE:
                self.decoded.clear()  # a high-cardinality label: keep memory bounded
            key = self.decoded[raw] = self._key(raw)
        return key

    def findall(self, buf: bytes, start: int, end: int) -> list[Any]:
        """``findall`` over the whole lines ``buf[start:end]``, skipping lines that cannot match.

        With a required literal (see :func:`exporters.linere.required_literal`), a range
        without it has no match; where it is rare, only the lines holding it are searched
        (one ``findall`` per such line: exact, since each line is matched on its own). Once
        hits turn out to be frequent, the rest of the range is searched in one call.
        """
        lit = self.literal
        if lit is None:
            return self.pattern.findall(buf, start, end)
        i = buf.find(lit, start, end)
        if i < 0:
            return []
        findall = self.pattern.findall
        line = first = max(buf.rfind(b"\n", start, i) + 1, start)
        found: list[Any] = []
        hits = 0
        while True:
            if hits >= SPARSE_MIN_HITS and hits * SPARSE_BYTES_PER_HIT > line - first:
                found += findall(buf, line, end)  # dense: one call for the rest
                return found
            line = max(buf.rfind(b"\n", line, i) + 1, line)
            after = buf.find(b"\n", i, end) + 1
            found += findall(buf, line, after)
            hits += 1
            line = after
            i = buf.find(lit, line, end)
            if i < 0:
                return found

    def run(self, buf: bytes, out: ChunkResult, start: int = 0, end: int | None = None) -> None:
        found = self.findall(buf, start, len(buf) if end is None else end)
        if not found:
            return
        if self.gauge:
            set_gauge(out, self.name, (self._key(r) for r in found))
            return
        if self.count_only:
            out.counts.setdefault(self.name, Counter())[()] += len(found)
            return
        # counted in C into one Counter per batch: Python only sees distinct tuples, once
        out.raw.setdefault(self.name, Counter()).update(found)

    def finish(self, out: ChunkResult) -> None:
        raw = out.raw.pop(self.name, None)
        if raw:
            result = out.counts.setdefault(self.name, Counter())
            for key, n in raw.items():
                result[self._cached_key(key)] += n


def number(text: str) -> float | None:
    """A captured value as a number (None: not one). Python's ``float`` also takes
    ``1_000``, which no log means as a number."""
    if "_" in text:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def set_gauge(out: ChunkResult, name: str, keys: Iterable[Key]) -> None:
    """Gauge results in line order (labels..., value): the last valid value per label set
    wins; a line whose value is not a number is a parse error and changes nothing."""
    last = out.last.setdefault(name, {})
    lines = 0
    for k in keys:
        if number(k[-1]) is None:
            out.parse_errors += 1
            continue
        last[k[:-1]] = k[-1]
        lines += 1
    if lines:
        out.gauge_lines[name] = out.gauge_lines.get(name, 0) + lines


def _get(obj: Any, path: Sequence[str]) -> Any:
    for part in path:
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v
    if isinstance(v, dict | list):
        return json.dumps(v, separators=(",", ":"), sort_keys=True)
    return str(v)


def _numeric(v: Any) -> int | float | None:
    # kept as int or float: Python compares the two exactly (no float() of a huge int)
    return v if isinstance(v, int | float) and not isinstance(v, bool) else None


class JsonMetric:
    def __init__(self, m: MetricConfig) -> None:
        self.name = m.name
        self.gauge = m.type == "gauge"
        self.where = [
            (k.split("."), "null" if v is None else _text(v), _numeric(v))
            for k, v in m.where.items()
        ]
        self.labels = [p.split(".") for p in m.label_sources.values()]
        self.value = m.value.split(".") if m.value is not None else None

    def key(self, obj: dict[str, Any]) -> Key | None:
        for path, want, want_number in self.where:
            got = _get(obj, path)
            if want_number is not None and _numeric(got) == want_number:
                continue  # 1 and 1.0 are one number, whichever way each side writes it
            if (_text(got) if got is not None else "null") != want:
                return None
        labels = tuple(_text(_get(obj, p)) for p in self.labels)
        if self.value is None:
            return labels
        v = _get(obj, self.value)
        if v is None or isinstance(v, bool | dict | list):
            return None
        return (*labels, _text(v))


class Matcher:
    """All metrics of one source, applied to buffers of whole lines (each ending in \\n)."""

    def __init__(self, fmt: str, metrics: list[MetricConfig]) -> None:
        self.json = fmt == "json"
        self.regex = [RegexMetric(m) for m in metrics] if not self.json else []
        self.jsons = [JsonMetric(m) for m in metrics] if self.json else []

    def run(
        self,
        buf: bytes,
        limit: int,
        into: ChunkResult | None = None,
        start: int = 0,
        end: int | None = None,
    ) -> ChunkResult:
        """Match the whole lines ``buf[start:end]`` (no copy is made of them).

        With ``into``, accumulate there and leave ``finish`` to the caller.
        """
        out = into if into is not None else ChunkResult()
        end = len(buf) if end is None else end
        out.bytes += end - start
        out.lines += buf.count(b"\n", start, end)
        cleaned = clean(buf, limit, start, end)
        out.too_long += cleaned.too_long
        out.invalid_utf8 += cleaned.invalid_utf8
        if self.json:
            self._run_json(cleaned.lines, out)
        else:
            for metric in self.regex:
                metric.run(cleaned.data, out, cleaned.start, cleaned.end)
        return self.finish(out) if into is None else out

    def finish(self, out: ChunkResult) -> ChunkResult:
        """Decode the accumulated raw findall counts into label-value keys."""
        for metric in self.regex:
            metric.finish(out)
        return out

    def _run_json(self, data: bytes, out: ChunkResult) -> None:
        lines = data.split(b"\n")
        lines.pop()  # after the final newline
        counts: dict[str, Counter[Key]] = {m.name: Counter() for m in self.jsons if not m.gauge}
        gauges: dict[str, list[Key]] = {m.name: [] for m in self.jsons if m.gauge}
        loads = json.loads
        for line in lines:
            try:
                obj = loads(line)
            except ValueError:
                obj = None
            if not isinstance(obj, dict):
                if line.strip():
                    out.parse_errors += 1
                continue
            for m in self.jsons:
                k = m.key(obj)
                if k is None:
                    continue
                if m.gauge:
                    gauges[m.name].append(k)
                else:
                    counts[m.name][k] += 1
        for name, c in counts.items():
            if c:
                out.counts.setdefault(name, Counter()).update(c)
        for name, keys in gauges.items():
            set_gauge(out, name, keys)


def compile_map(table: dict[str, str]) -> list[tuple[re.Pattern[str], str]]:
    return [(re.compile(p), v) for p, v in table.items()]
