"""Metric state, the cardinality guard, self metrics and the Prometheus collector."""

from __future__ import annotations

import itertools
import re
import threading
from bisect import bisect_left
from collections.abc import Iterator
from importlib import metadata

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from exporters.config import ExporterConfig, MetricConfig
from exporters.match import ChunkResult, Key

OVERFLOW = "__overflow__"
DEFAULT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]


class Hist:
    __slots__ = ("buckets", "count", "sum")

    def __init__(self, n: int) -> None:
        self.buckets = [0] * (n + 1)  # per bucket (not cumulative), last is +Inf
        self.sum = 0.0
        self.count = 0


def _version() -> str:
    try:
        return metadata.version("alertmail")
    except metadata.PackageNotFoundError:
        return "unknown"


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

    def __init__(self, cfg: ExporterConfig, registry: CollectorRegistry) -> None:
        self.lock = threading.Lock()
        self.metrics = {m.name: MetricState(m) for m in cfg.metrics}
        p = "alertmail_exporter_"
        r = registry
        self.lines_read = Counter(p + "lines_read", "Lines read", ["file"], registry=r)
        self.bytes_read = Counter(p + "bytes_read", "Bytes read", ["file"], registry=r)
        self.matched = Counter(p + "lines_matched", "Lines matched", ["metric"], registry=r)
        self.parse_errors = Counter(p + "parse_errors", "Unparsable lines", ["file"], registry=r)
        self.skipped = Counter(p + "lines_skipped", "Lines skipped", ["file", "reason"], registry=r)
        self.lag = Gauge(p + "file_lag_bytes", "Bytes behind the end", ["file"], registry=r)
        self.rotations = Counter(p + "rotations", "Rotations seen", ["file"], registry=r)
        self.truncations = Counter(p + "truncations", "Truncations seen", ["file"], registry=r)
        self.folded = Counter(
            p + "series_folded", "Values folded into __overflow__", ["metric"], registry=r
        )
        build = Gauge(p + "build_info", "Exporter build", ["version"], registry=r)
        build.labels(_version()).set(1)
        for name in self.metrics:
            self.matched.labels(name)
            self.folded.labels(name)
        registry.register(_Collector(self))

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
                bad_values += self._apply_last(self.metrics[name], last)
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
                try:
                    value = float(key[nl]) * scale
                except ValueError:
                    bad += n
                    continue
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

    def _apply_last(self, st: MetricState, last: dict[Key, str]) -> int:
        bad = folded = 0
        for key, raw in last.items():
            try:
                value = float(raw) * st.cfg.scale
            except ValueError:
                bad += 1
                continue
            labels, fold = st.slot(st.final(key))
            folded += 1 if fold else 0
            st.series[labels] = value
        self._count(st, len(last) - bad, folded)
        return bad

    def _count(self, st: MetricState, matched: int, folded: int) -> None:
        if matched:
            self.matched.labels(st.cfg.name).inc(matched)
        if folded:
            self.folded.labels(st.cfg.name).inc(folded)

    def families(self) -> Iterator[Metric]:
        with self.lock:
            snapshot = [
                (st, [(k, _copy(v)) for k, v in st.series.items()]) for st in self.metrics.values()
            ]
        for st, series in snapshot:
            m = st.cfg
            names = st.labels + list(m.static_labels)
            help_ = m.help or m.name
            if m.type == "histogram":
                hist = HistogramMetricFamily(m.name, help_, labels=names)
                les = [_le(b) for b in st.bounds] + ["+Inf"]
                for labels, v in series:
                    assert isinstance(v, tuple)
                    cum = list(itertools.accumulate(v[0]))
                    hist.add_metric([*labels, *st.static], list(zip(les, cum, strict=True)), v[1])
                yield hist
                continue
            fam: CounterMetricFamily | GaugeMetricFamily
            if m.type == "counter":
                fam = CounterMetricFamily(m.name.removesuffix("_total"), help_, labels=names)
            else:
                fam = GaugeMetricFamily(m.name, help_, labels=names)
            for labels, v in series:
                assert isinstance(v, float)
                fam.add_metric([*labels, *st.static], v)
            yield fam


def _copy(v: float | Hist) -> float | tuple[list[int], float]:
    return (list(v.buckets), v.sum) if isinstance(v, Hist) else v


def _le(b: float) -> str:
    return repr(float(b))


class _Collector(Collector):
    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        return self.store.families()
