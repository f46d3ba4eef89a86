"""Metric state: pre-created series, value maps, scale, buckets, overflow folding."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from prometheus_client import CollectorRegistry

from exporters.match import ChunkResult
from exporters.metrics import OVERFLOW, Store
from tests.exporters.conftest import make_config, samples, value


def store_for(tmp_path: Path, registry: CollectorRegistry, *metrics: dict[str, object]) -> Store:
    cfg = make_config(tmp_path, {"sources": [{"path": "x.log"}], "metrics": list(metrics)})
    return Store(cfg, registry)


def test_series_exist_at_zero_before_first_match(
    tmp_path: Path, registry: CollectorRegistry
) -> None:
    store_for(
        tmp_path,
        registry,
        {"name": "plain_total", "type": "counter", "match": "x"},
        {
            "name": "req_total",
            "type": "counter",
            "match": r"(?P<m>[A-Z]+) (?P<s>\d+)",
            "labels": ["m", "s"],
            "map": {"s": {"5..": "5xx", "4..": "4xx"}},
            "values": {"m": ["GET", "POST"]},
            "static_labels": {"job": "web"},
        },
        {"name": "free_total", "type": "counter", "match": "(?P<a>.)", "labels": ["a"]},
        {"name": "lat", "type": "histogram", "match": "(?P<v>.)", "value": "v", "buckets": [1]},
    )
    s = samples(registry)
    assert value(s, "plain_total") == 0
    for m in ("GET", "POST"):
        for st in ("5xx", "4xx"):
            assert value(s, "req_total", m=m, s=st, job="web") == 0
    assert value(s, "lat_bucket", le="1.0") == 0
    assert value(s, "lat_count") == 0
    assert not [k for k in s if k[0] == "free_total"]  # open label values: nothing to guess
    assert value(s, "alertmail_exporter_lines_matched_total", metric="free_total") == 0


def test_maps_scale_histograms_and_values(tmp_path: Path, registry: CollectorRegistry) -> None:
    store = store_for(
        tmp_path,
        registry,
        {
            "name": "req_total",
            "type": "counter",
            "match": r"(?P<s>\d+)",
            "labels": ["s"],
            "map": {"s": {"5..": "5xx"}},
        },
        {"name": "bytes_total", "type": "counter", "match": "(?P<b>.)", "value": "b"},
        {
            "name": "lat_seconds",
            "type": "histogram",
            "match": "(?P<v>.)",
            "value": "v",
            "scale": 0.001,
            "buckets": [0.01, 0.1],
        },
        {"name": "temp", "type": "gauge", "match": "(?P<v>.)", "value": "v"},
    )
    res = ChunkResult(lines=9, bytes=90)
    res.counts["req_total"] = Counter({("503",): 2, ("500",): 1, ("200",): 4})
    res.counts["bytes_total"] = Counter({("10",): 3, ("x",): 1})
    res.counts["lat_seconds"] = Counter({("5",): 2, ("10",): 1, ("50",): 1, ("5000",): 1})
    res.last["temp"] = {(): "21.5"}
    store.apply("f.log", res)
    s = samples(registry)
    assert value(s, "req_total", s="5xx") == 3
    assert value(s, "req_total", s="200") == 4
    assert value(s, "bytes_total") == 30
    assert value(s, "lat_seconds_bucket", le="0.01") == 3  # 0.005, 0.005, 0.01 (le is <=)
    assert value(s, "lat_seconds_bucket", le="0.1") == 4
    assert value(s, "lat_seconds_bucket", le="+Inf") == 5
    assert value(s, "lat_seconds_sum") == 0.005 * 2 + 0.01 + 0.05 + 5
    assert value(s, "temp") == 21.5
    assert value(s, "alertmail_exporter_parse_errors_total", file="f.log") == 1  # "x"
    assert value(s, "alertmail_exporter_lines_matched_total", metric="req_total") == 7


def test_values_that_would_break_a_counter_or_sum_are_parse_errors(
    tmp_path: Path, registry: CollectorRegistry
) -> None:
    store = store_for(
        tmp_path,
        registry,
        {"name": "c_total", "type": "counter", "match": "(?P<b>.)", "value": "b"},
        {"name": "h", "type": "histogram", "match": "(?P<v>.)", "value": "v", "buckets": [1]},
    )
    res = ChunkResult(lines=8)
    res.counts["c_total"] = Counter({("5",): 1, ("-3",): 1, ("NaN",): 1, ("1_0",): 1})
    res.counts["h"] = Counter({("0.5",): 1, ("nan",): 1, ("inf",): 1, ("-2",): 1})
    store.apply("f.log", res)
    s = samples(registry)
    assert value(s, "c_total") == 5  # only the 5: a counter never goes down nor turns NaN
    assert value(s, "h_sum") == -1.5 and value(s, "h_count") == 2  # 0.5 and -2
    assert value(s, "alertmail_exporter_parse_errors_total", file="f.log") == 5


def test_overflow_folding(tmp_path: Path, registry: CollectorRegistry) -> None:
    store = store_for(
        tmp_path,
        registry,
        {
            "name": "u_total",
            "type": "counter",
            "match": "(?P<u>.)",
            "labels": ["u"],
            "max_series": 3,
        },
    )
    res = ChunkResult()
    res.counts["u_total"] = Counter({(f"user{i}",): i + 1 for i in range(6)})
    store.apply("f.log", res)
    s = samples(registry)
    kept = {k: v for k, v in s.items() if k[0] == "u_total"}
    assert len(kept) == 4
    assert value(s, "u_total", u=OVERFLOW) == 4 + 5 + 6
    assert value(s, "alertmail_exporter_series_folded_total", metric="u_total") == 15
    assert sum(kept.values()) == sum(range(1, 7))


def test_exposition_is_what_prometheus_client_writes(
    tmp_path: Path, registry: CollectorRegistry
) -> None:
    """One-shot output (no prometheus_client) equals the server's, escapes and floats too."""
    from prometheus_client import generate_latest

    store = store_for(
        tmp_path,
        registry,
        {
            "name": "req_total",
            "type": "counter",
            "help": "a \\ help\nline",
            "match": r"(?P<m>\S+) (?P<s>\d+)",
            "labels": ["m", "s"],
            "static_labels": {"job": "web"},
        },
        {"name": "lat", "type": "histogram", "match": "(?P<v>.+)", "value": "v", "buckets": [1e6]},
        {
            "name": "g",
            "type": "gauge",
            "match": r"(?P<k>.)=(?P<v>.+)",
            "labels": ["k"],
            "value": "v",
        },
    )
    store.add_file('we"ird\\file\n.log')
    res = ChunkResult(lines=5, bytes=100, too_long=1)
    res.counts["req_total"] = Counter({('GE"T\\x\n', "200"): 3, ("GET", "500"): 1})
    res.counts["lat"] = Counter({("0.7",): 2, ("5e7",): 1, ("inf",): 1})
    res.last["g"] = {("a",): "1e300", ("b",): "nan", ("c",): "-inf"}
    store.apply('we"ird\\file\n.log', res)
    store.lag.labels("x").set(12345678)
    assert store.exposition() == generate_latest(registry).decode()
    assert value(samples(store.exposition()), "req_total", m="GET", s="500", job="web") == 1
