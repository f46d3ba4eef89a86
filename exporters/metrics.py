"""Metric state, the cardinality guard, self metrics and the Prometheus collector.

The store does not need ``prometheus_client`` (whose import is a good part of a one-shot
run's start-up time): it keeps its own values and writes the text exposition format
itself (:meth:`Store.exposition`). Given a registry, it registers a collector that turns
the same families into ``prometheus_client`` metrics for the HTTP server.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import re
import sys
import threading
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from exporters.config import ExporterConfig, MetricConfig
from exporters.match import ChunkResult, Key, number

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

OVERFLOW = "__overflow__"
DEFAULT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]


class Hist:
    __slots__ = ("buckets", "count", "sum")

    def __init__(self, n: int) -> None:
        self.buckets = [0] * (n + 1)  # per bucket (not cumulative), last is +Inf
        self.sum = 0.0
        self.count = 0


def _version() -> str:
    """The installed alertmail's version, as ``importlib.metadata.version`` finds it.

    An installed wheel's METADATA is read directly: importing importlib.metadata (and the
    email package it parses with) would cost a one-shot run ~30 ms of CPU.
    """
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            if name.startswith("alertmail-") and name.endswith(".dist-info"):
                meta = os.path.join(entry, name, "METADATA")
                with contextlib.suppress(OSError), open(meta, encoding="utf-8") as fh:
                    for line in fh:
                        if line.startswith("Version:"):
                            return line.removeprefix("Version:").strip()
                        if not line.strip():
                            break  # end of the headers
    from importlib import metadata  # not a wheel install (e.g. an egg): the general lookup

    try:
        return metadata.version("alertmail")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass
class Family:
    """One metric family as exposed: ``samples`` are (sample name, labels, value)."""

    name: str  # counters without the _total suffix, as in prometheus_client
    help: str
    type: str  # counter | gauge | histogram
    samples: list[tuple[str, list[tuple[str, str]], float]] = field(default_factory=list)


class SelfMetric:
    """A self metric by label values: the part of prometheus_client's API used here."""

    def __init__(self, name: str, help_: str, kind: str, labelnames: list[str]) -> None:
        self.name, self.help, self.kind, self.labelnames = name, help_, kind, labelnames
        self.values: dict[tuple[str, ...], float] = {}
        self.lock = threading.Lock()

    def labels(self, *values: str) -> _Child:
        key = tuple(values)
        with self.lock:
            self.values.setdefault(key, 0.0)
        return _Child(self, key)

    def family(self) -> Family:
        with self.lock:
            items = list(self.values.items())
        suffix = "_total" if self.kind == "counter" else ""
        fam = Family(self.name, self.help, self.kind)
        for key, v in items:
            fam.samples.append(
                (self.name + suffix, list(zip(self.labelnames, key, strict=True)), v)
            )
        return fam


class _Child:
    __slots__ = ("key", "metric")

    def __init__(self, metric: SelfMetric, key: tuple[str, ...]) -> None:
        self.metric, self.key = metric, key

    def inc(self, amount: float = 1.0) -> None:
        with self.metric.lock:
            self.metric.values[self.key] += amount

    def set(self, value: float) -> None:
        with self.metric.lock:
            self.metric.values[self.key] = float(value)


class MetricState:
    def __init__(self, m: MetricConfig) -> None:
        self.cfg = m
        self.labels = list(m.label_sources)
        self.static = list(m.static_labels.values())
        self.maps = [
            [(re.compile(p), v) for p, v in m.map.get(lb, {}).items()] for lb in self.labels
        ]
        self.mapped: dict[Key, Key] = {}
        self.bounds = m.buckets or DEFAULT_BUCKETS
        self.series: dict[Key, float | Hist] = {}
        self.overflow = tuple(OVERFLOW for _ in self.labels)
        known: list[list[str]] = []
        for i, lb in enumerate(self.labels):
            vals = list(dict.fromkeys([*m.values.get(lb, []), *(v for _, v in self.maps[i])]))
            known.append(vals)
        if all(known):
            for combo in itertools.islice(itertools.product(*known), m.max_series):
                self.series[combo] = self._zero()

    def _zero(self) -> float | Hist:
        return Hist(len(self.bounds)) if self.cfg.type == "histogram" else 0.0

    def final(self, raw: Key) -> Key:
        """Mapped label values for raw captured ones (cached: few distinct tuples)."""
        got = self.mapped.get(raw)
        if got is None:
            out = []
            for value, table in zip(raw, self.maps, strict=True):
                for pattern, target in table:
                    if pattern.fullmatch(value):
                        value = target
                        break
                out.append(value)
            got = tuple(out)
            if len(self.mapped) < 100_000:
                self.mapped[raw] = got
        return got

    def slot(self, labels: Key) -> tuple[Key, bool]:
        """The series to update, folding into __overflow__ beyond max_series."""
        if labels in self.series or len(self.series) < self.cfg.max_series:
            return labels, False
        return self.overflow, True


class Store:
    """All metric values; ``apply`` and ``collect`` may run on different threads."""

    def __init__(self, cfg: ExporterConfig, registry: CollectorRegistry | None = None) -> None:
        self.lock = threading.Lock()
        self.metrics = {m.name: MetricState(m) for m in cfg.metrics}
        p = "alertmail_exporter_"

        def counter(name: str, help_: str, labels: list[str]) -> SelfMetric:
            return SelfMetric(p + name, help_, "counter", labels)

        self.lines_read = counter("lines_read", "Lines read", ["file"])
        self.bytes_read = counter("bytes_read", "Bytes read", ["file"])
        self.matched = counter("lines_matched", "Lines matched", ["metric"])
        self.parse_errors = counter("parse_errors", "Unparsable lines", ["file"])
        self.skipped = counter("lines_skipped", "Lines skipped", ["file", "reason"])
        self.lag = SelfMetric(p + "file_lag_bytes", "Bytes behind the end", "gauge", ["file"])
        self.rotations = counter("rotations", "Rotations seen", ["file"])
        self.truncations = counter("truncations", "Truncations seen", ["file"])
        self.folded = counter("series_folded", "Values folded into __overflow__", ["metric"])
        build = SelfMetric(p + "build_info", "Exporter build", "gauge", ["version"])
        build.labels(_version()).set(1)
        self.self_metrics = [
            self.lines_read, self.bytes_read, self.matched, self.parse_errors, self.skipped,
            self.lag, self.rotations, self.truncations, self.folded, build,
        ]  # fmt: skip
        for name in self.metrics:
            self.matched.labels(name)
            self.folded.labels(name)
        if registry is not None:
            registry.register(_collector(self))

    def add_file(self, file: str) -> None:
        """Export a file's self metrics at 0 from the moment it is followed."""
        for c in (self.lines_read, self.bytes_read, self.parse_errors):
            c.labels(file)
        for c in (self.rotations, self.truncations):
            c.labels(file)
        self.skipped.labels(file, "too_long")
        self.skipped.labels(file, "invalid_utf8")
        self.lag.labels(file)

    def apply(self, file: str, res: ChunkResult) -> None:
        bad_values = 0
        with self.lock:
            for name, counts in res.counts.items():
                bad_values += self._apply_counts(self.metrics[name], counts)
            for name, last in res.last.items():
                self._apply_last(self.metrics[name], last, res.gauge_lines.get(name, 0))
        self.lines_read.labels(file).inc(res.lines)
        self.bytes_read.labels(file).inc(res.bytes)
        if res.parse_errors or bad_values:
            self.parse_errors.labels(file).inc(res.parse_errors + bad_values)
        if res.too_long:
            self.skipped.labels(file, "too_long").inc(res.too_long)
        if res.invalid_utf8:
            self.skipped.labels(file, "invalid_utf8").inc(res.invalid_utf8)

    def _apply_counts(self, st: MetricState, counts: dict[Key, int]) -> int:
        kind, scale, nl = st.cfg.type, st.cfg.scale, len(st.labels)
        has_value = st.cfg.value is not None
        bad = matched = folded = 0
        for key, n in counts.items():
            value = 0.0
            if has_value:
                raw = number(key[nl])
                # A counter only goes up, and NaN or an infinity would stick in a sum for
                # good: such a value is a parse error, like one that is not a number.
                if raw is None or not math.isfinite(raw) or (kind == "counter" and raw < 0):
                    bad += n
                    continue
                value = raw * scale
            labels, fold = st.slot(st.final(key[:nl]))
            matched += n
            folded += n if fold else 0
            cur = st.series.get(labels)
            if kind == "histogram":
                h = cur if isinstance(cur, Hist) else Hist(len(st.bounds))
                h.buckets[bisect_left(st.bounds, value)] += n
                h.sum += value * n
                h.count += n
                st.series[labels] = h
            else:
                base = cur if isinstance(cur, float) else 0.0
                st.series[labels] = base + (value * n if has_value else float(n))
        self._count(st, matched, folded)
        return bad

    def _apply_last(self, st: MetricState, last: dict[Key, str], lines: int) -> None:
        """Gauges: ``last`` holds each label set's last value (numbers only, see
        ``match.set_gauge``), ``lines`` how many lines set one."""
        folded = 0
        for key, raw in last.items():
            labels, fold = st.slot(st.final(key))
            folded += 1 if fold else 0
            st.series[labels] = float(raw) * st.cfg.scale
        self._count(st, lines, folded)

    def _count(self, st: MetricState, matched: int, folded: int) -> None:
        if matched:
            self.matched.labels(st.cfg.name).inc(matched)
        if folded:
            self.folded.labels(st.cfg.name).inc(folded)

    def families(self) -> Iterator[Family]:
        """Self metrics, then the configured metrics (a consistent snapshot of each)."""
        for sm in self.self_metrics:
            yield sm.family()
        with self.lock:
            snapshot = [
                (st, [(k, _copy(v)) for k, v in st.series.items()]) for st in self.metrics.values()
            ]
        for st, series in snapshot:
            m = st.cfg
            names = st.labels + list(m.static_labels)
            help_ = m.help or m.name
            if m.type == "histogram":
                fam = Family(m.name, help_, "histogram")
                les = [_le(b) for b in st.bounds] + ["+Inf"]
                for labels, v in series:
                    assert isinstance(v, tuple)
                    pairs = list(zip(names, [*labels, *st.static], strict=True))
                    for le, n in zip(les, itertools.accumulate(v[0]), strict=True):
                        fam.samples.append((m.name + "_bucket", [*pairs, ("le", le)], float(n)))
                    fam.samples.append((m.name + "_count", pairs, float(sum(v[0]))))
                    fam.samples.append((m.name + "_sum", pairs, v[1]))
                yield fam
                continue
            name = m.name.removesuffix("_total") if m.type == "counter" else m.name
            fam = Family(name, help_, m.type)
            sample = m.name if m.type == "gauge" else name + "_total"
            for labels, v in series:
                assert isinstance(v, float)
                fam.samples.append(
                    (sample, list(zip(names, [*labels, *st.static], strict=True)), v)
                )
            yield fam

    def exposition(self) -> str:
        """All families in the Prometheus text format 0.0.4 (as ``generate_latest`` writes it)."""
        out: list[str] = []
        for fam in self.families():
            name = fam.name + "_total" if fam.type == "counter" else fam.name
            out.append(f"# HELP {name} {_escape_help(fam.help)}\n# TYPE {name} {fam.type}\n")
            for sample, labels, v in fam.samples:
                if labels:
                    pairs = sorted(labels)
                    inner = ",".join(f'{k}="{_escape_label(val)}"' for k, val in pairs)
                    out.append(f"{sample}{{{inner}}} {_go_float(v)}\n")
                else:
                    out.append(f"{sample} {_go_float(v)}\n")
        return "".join(out)


def _copy(v: float | Hist) -> float | tuple[list[int], float]:
    return (list(v.buckets), v.sum) if isinstance(v, Hist) else v


def _le(b: float) -> str:
    return repr(float(b))


def _escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _escape_label(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _go_float(d: float) -> str:
    """A float as prometheus_client (and Go) write it: +Inf, NaN, 1e+06."""
    if d == math.inf:
        return "+Inf"
    if d == -math.inf:
        return "-Inf"
    if d != d:
        return "NaN"
    s = repr(d)
    dot = s.find(".")
    if d > 0 and dot > 6:  # Go switches to exponents sooner than Python
        mantissa = f"{s[0]}.{s[1:dot]}{s[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+0{dot - 1}"
    return s


def _collector(store: Store) -> Any:
    """A collector for a prometheus_client registry (imported only when one is used)."""
    from prometheus_client.core import Metric

    class _Collector:
        def collect(self) -> Iterator[Metric]:
            for fam in store.families():
                metric = Metric(fam.name, fam.help, fam.type)
                for sample, labels, v in fam.samples:
                    metric.add_sample(sample, dict(labels), v)
                yield metric

    return _Collector()
