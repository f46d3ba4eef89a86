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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from exporters.config import MetricConfig
from exporters.linere import batch_pattern

Key = tuple[str, ...]


@dataclass
class ChunkResult:
    """What one buffer produced. Keys are label values (+ the raw value, last)."""

    counts: dict[str, Counter[Key]] = field(default_factory=dict)
    raw: dict[str, Counter[Any]] = field(default_factory=dict)  # findall results, undecoded
    last: dict[str, dict[Key, str]] = field(default_factory=dict)  # gauges: last value wins
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
        self.lines += other.lines
        self.bytes += other.bytes
        self.parse_errors += other.parse_errors
        self.too_long += other.too_long
        self.invalid_utf8 += other.invalid_utf8


@dataclass
class Cleaned:
    data: bytes
    too_long: int = 0
    invalid_utf8: int = 0


def clean(buf: bytes, limit: int) -> Cleaned:
    """Drop lines longer than ``limit`` bytes or not valid UTF-8 from whole-line ``buf``.

    Cheap when there is nothing to drop: one ``find`` per ``limit/2`` bytes proves that no
    line is longer than ``limit``, and ``isascii``/``decode`` run in C.
    """
    half = max(limit // 2, 1)
    bad: list[tuple[int, int]] = []  # (start, end incl. newline)
    too_long = 0
    pos = 0
    n = len(buf)
    while pos < n:
        if buf.find(b"\n", pos, pos + half) >= 0 or pos + half >= n:
            pos += half
            continue
        start = buf.rfind(b"\n", 0, pos) + 1  # a window without newline: measure its line
        end = buf.find(b"\n", pos)
        end = n - 1 if end < 0 else end
        if end - start > limit:
            bad.append((start, end + 1))
            too_long += 1
        pos = end + 1
    data = _cut(buf, bad) if bad else buf
    invalid = 0
    if not data.isascii():
        bad = []
        pos = 0
        while True:
            try:
                data[pos:].decode("utf-8")
                break
            except UnicodeDecodeError as e:
                at = pos + e.start
                start = data.rfind(b"\n", 0, at) + 1
                end = data.find(b"\n", at)
                end = len(data) - 1 if end < 0 else end
                bad.append((start, end + 1))
                invalid += 1
                pos = end + 1
        if bad:
            data = _cut(data, bad)
    return Cleaned(data, too_long, invalid)


def _cut(buf: bytes, spans: list[tuple[int, int]]) -> bytes:
    parts: list[bytes] = []
    pos = 0
    for start, end in spans:
        parts.append(buf[pos:start])
        pos = end
    parts.append(buf[pos:])
    return b"".join(parts)


class RegexMetric:
    """One metric's batch pattern and where its label/value groups sit in findall tuples."""

    def __init__(self, m: MetricConfig) -> None:
        assert m.match is not None
        self.name = m.name
        self.gauge = m.type == "gauge"
        self.pattern = batch_pattern(m.match)
        index = self.pattern.groupindex
        wanted = [index[g] for g in m.label_sources.values()]
        if m.value is not None:
            wanted.append(index[m.value])
        self.ngroups = self.pattern.groups
        self.project = [w - 1 for w in wanted]

    def _key(self, raw: Any) -> Key:
        if self.ngroups == 0:
            return ()
        if self.ngroups == 1:
            raw = (raw,)
        return tuple(raw[i].decode("utf-8", "replace") for i in self.project)

    def run(self, buf: bytes, out: ChunkResult) -> None:
        found = self.pattern.findall(buf)
        if not found:
            return
        if self.gauge:
            last: dict[Key, str] = {}
            for r in found:
                k = self._key(r)
                last[k[:-1]] = k[-1]
            out.last[self.name] = last
            return
        if self.ngroups == 0 or not self.project:
            out.counts.setdefault(self.name, Counter())[()] += len(found)
            return
        # counted in C into one Counter per batch: Python only sees distinct tuples, once
        out.raw.setdefault(self.name, Counter()).update(found)

    def finish(self, out: ChunkResult) -> None:
        raw = out.raw.pop(self.name, None)
        if raw:
            result = out.counts.setdefault(self.name, Counter())
            for key, n in raw.items():
                result[self._key(key)] += n


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


class JsonMetric:
    def __init__(self, m: MetricConfig) -> None:
        self.name = m.name
        self.gauge = m.type == "gauge"
        self.where = [(k.split("."), "null" if v is None else _text(v)) for k, v in m.where.items()]
        self.labels = [p.split(".") for p in m.label_sources.values()]
        self.value = m.value.split(".") if m.value is not None else None

    def key(self, obj: dict[str, Any]) -> Key | None:
        for path, want in self.where:
            got = _get(obj, path)
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

    def run(self, buf: bytes, limit: int, into: ChunkResult | None = None) -> ChunkResult:
        """Match ``buf``; with ``into``, accumulate there and leave ``finish`` to the caller."""
        out = into if into is not None else ChunkResult()
        out.bytes += len(buf)
        out.lines += buf.count(b"\n")
        cleaned = clean(buf, limit)
        out.too_long += cleaned.too_long
        out.invalid_utf8 += cleaned.invalid_utf8
        if self.json:
            self._run_json(cleaned.data, out)
        else:
            for metric in self.regex:
                metric.run(cleaned.data, out)
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
        last: dict[str, dict[Key, str]] = {m.name: {} for m in self.jsons if m.gauge}
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
                    last[m.name][k[:-1]] = k[-1]
                else:
                    counts[m.name][k] += 1
        for name, c in counts.items():
            if c:
                out.counts.setdefault(name, Counter()).update(c)
        for name, d in last.items():
            out.last.setdefault(name, {}).update(d)


def compile_map(table: dict[str, str]) -> list[tuple[re.Pattern[str], str]]:
    return [(re.compile(p), v) for p, v in table.items()]
