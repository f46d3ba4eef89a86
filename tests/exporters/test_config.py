"""Config validation: clear errors naming the file, the key and the metric."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from exporters.config import load_config, parse_config, parse_duration, parse_size
from receiver.errors import ConfigError

DESIGN_EXAMPLE = r"""
listen: 127.0.0.1:9146
positions: /var/lib/alertmail/positions.json
sources:
  - {path: "/var/log/nginx/*.log", format: regex, metrics: [http_requests_total, http_request_duration_seconds]}
  - {path: /var/log/app/app.jsonl, format: json}        # no `metrics:` = every metric of its format
metrics:
  - name: http_requests_total
    type: counter
    help: HTTP requests by status and method
    match: '"(?P<method>[A-Z]+) [^"\n]*" (?P<status>\d{3}) '
    labels: [method, status]
    map: {status: {"5..": 5xx, "4..": 4xx}}     # optional value maps (regex -> value)
  - name: http_request_duration_seconds
    type: histogram
    match: 'rt=(?P<seconds>[0-9.]+)'
    value: seconds
    buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5]
  - name: app_errors_total
    type: counter
    format: json
    where: {level: ERROR}                 # dotted field paths: {"http.status": "500"}
    labels: {service: service, code: error.code}
"""  # noqa: E501


def base(**metric: Any) -> dict[str, Any]:
    m = {"name": "x_total", "type": "counter", "match": "(?P<a>a)"} | metric
    return {"sources": [{"path": "/tmp/x.log"}], "metrics": [m]}


def error(raw: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, "exp.yml")
    return info.value


def test_design_example_loads_as_written(tmp_path: Path) -> None:
    path = tmp_path / "exporter.yml"
    path.write_text(DESIGN_EXAMPLE)
    cfg = load_config(str(path))
    assert [m.name for m in cfg.metrics_for(cfg.sources[0])] == [
        "http_requests_total",
        "http_request_duration_seconds",
    ]
    assert [m.name for m in cfg.metrics_for(cfg.sources[1])] == ["app_errors_total"]
    assert cfg.metrics[2].label_sources == {"service": "service", "code": "error.code"}
    assert cfg.max_line_bytes == 65536


def test_bad_regex_names_metric_and_regex_error() -> None:
    e = error(base(match="(?P<a>a"))
    assert e.file == "exp.yml"
    assert e.key_path == "metrics[0].match"
    assert "x_total" in e.problem and "missing )" in e.problem


def test_label_that_is_not_a_group() -> None:
    e = error(base(labels=["nope"]))
    assert e.key_path == "metrics[0].labels"
    assert "'nope' is not a named group" in e.problem


def test_unknown_key_is_refused() -> None:
    e = error(base(colour="red"))
    assert e.key_path == "metrics[0].colour"


@pytest.mark.parametrize(
    ("raw", "key", "problem"),
    [
        (base(type="histogram", name="h"), "metrics[0].value", "needs `value`"),
        (base(name="requests"), "metrics[0].name", "must end in _total"),
        (base(type="gauge", name="g", value="a", buckets=[1]), "metrics[0].buckets", "only"),
        (base(type="histogram", name="h", value="a", buckets=[2, 1]), "metrics[0].buckets", "incr"),
        (base(map={"zz": {"a": "b"}}), "metrics[0].map", "not one of"),
        (base(map={"a": {"(": "b"}}, labels=["a"]), "metrics[0].map.a", "does not compile"),
        (base(where={"a": 1}), "metrics[0].where", "format json"),
        (base(match=None), "metrics[0].match", "needs `match`"),
        (base(static_labels={"a": "1"}, labels=["a"]), "metrics[0].labels", "named twice"),
        (base(labels={"__x": "a"}), "metrics[0].labels", "not a valid label"),
        (base(max_series=0), "metrics[0].max_series", "greater than"),
    ],
)
def test_semantic_errors(raw: dict[str, Any], key: str, problem: str) -> None:
    e = error(raw)
    assert e.key_path == key
    assert problem in e.problem


def test_source_metric_references_are_checked() -> None:
    raw = base()
    raw["sources"][0]["metrics"] = ["missing_total"]
    assert error(raw).key_path == "sources[0].metrics[0]"
    raw = base()
    raw["sources"] = [{"path": "x", "format": "json", "metrics": ["x_total"]}]
    assert "format regex" in error(raw).problem


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(str(tmp_path / "missing.yml"))
    bad = tmp_path / "bad.yml"
    bad.write_text("sources: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(bad))


def test_durations_and_sizes() -> None:
    assert parse_duration("250ms") == 0.25
    assert parse_duration("2m") == 120
    assert parse_size("64KiB") == 65536
    assert parse_size("1MB") == 1_000_000
    with pytest.raises(ValueError, match=re.escape("not a duration")):
        parse_duration("soon")
    raw = base() | {"poll_interval": "100ms", "max_line_bytes": "1MiB"}
    cfg = parse_config(raw)
    assert (cfg.poll_interval, cfg.max_line_bytes) == (0.1, 1 << 20)
    assert error(base() | {"max_line_bytes": "lots"}).key_path == "max_line_bytes"


def test_a_key_given_twice_or_a_file_not_utf8_is_one_clear_error(tmp_path: Path) -> None:
    p = tmp_path / "twice.yml"
    p.write_text("sources: [{path: a.log}]\nmetrics: []\nmetrics: []\n")
    with pytest.raises(ConfigError, match="found the key 'metrics' twice"):
        load_config(str(p))
    p.write_bytes(b"sources: [{path: caf\xe9.log}]\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(str(p))
