"""Grafana dashboards: importable JSON, conventions, and every panel query is valid PromQL."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from .dashboards_util import iter_panel_queries, iter_panels, substitute_variables
from .helpers import DASHBOARDS_DIR, recording_rule_names

EXPECTED_UIDS = {
    "log-metrics.json": "alertmail-logs",
    "alerting-pipeline.json": "alertmail-pipeline",
}
PANEL_TYPES = {"timeseries", "stat", "row"}

# The metric contract (see the brief of issue 5 / DESIGN.md) plus what Prometheus and
# Alertmanager expose themselves.
KNOWN_METRICS = {
    # exporter self-metrics
    "alertmail_exporter_lines_read_total",
    "alertmail_exporter_bytes_read_total",
    "alertmail_exporter_lines_matched_total",
    "alertmail_exporter_parse_errors_total",
    "alertmail_exporter_lines_skipped_total",
    "alertmail_exporter_file_lag_bytes",
    "alertmail_exporter_rotations_total",
    "alertmail_exporter_truncations_total",
    "alertmail_exporter_series_folded_total",
    "alertmail_exporter_build_info",
    # receiver
    "alertmail_build_info",
    "alertmail_webhooks_received_total",
    "alertmail_alerts_received_total",
    "alertmail_deliveries_total",
    "alertmail_outbox_messages",
    "alertmail_outbox_oldest_queued_age_seconds",
    "alertmail_delivery_latency_seconds_bucket",
    "alertmail_smtp_failovers_total",
    "alertmail_config_last_reload_successful",
    "alertmail_deadman_last_seen_timestamp_seconds",
    # log metrics
    "app_log_lines_total",
    "http_requests_total",
    "http_request_duration_seconds_bucket",
    # Prometheus / Alertmanager
    "up",
    "ALERTS",
    "alertmanager_notifications_total",
    "alertmanager_notifications_failed_total",
}
PROMQL_WORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
}


def _dashboards() -> list[Path]:
    return sorted(DASHBOARDS_DIR.glob("*.json"))


def _load(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _all_queries() -> list[Any]:
    return [q for path in _dashboards() for q in iter_panel_queries(_load(path))]


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (good enough for the shipped dashboards)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    s = re.sub(r"\{[^}]*\}", "", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", "", s)  # ranges
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", s)
    s = re.sub(r"\boffset\s+\w+", "", s)
    names = set()
    for m in re.finditer(r"(?<![\w.$])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()", s):
        if m.group(1).lower() not in PROMQL_WORDS:
            names.add(m.group(1))
    return names


def test_the_two_dashboards_exist() -> None:
    assert {p.name for p in _dashboards()} >= set(EXPECTED_UIDS)


@pytest.mark.parametrize("path", _dashboards(), ids=lambda p: p.name)
def test_dashboard_is_importable_grafana_json(path: Path) -> None:
    d = _load(path)
    assert d["uid"] == EXPECTED_UIDS.get(path.name, d["uid"])
    assert re.fullmatch(r"[a-z0-9-]{1,40}", d["uid"])
    assert 36 <= d["schemaVersion"] <= 41
    assert d["id"] is None, "an exported id breaks import into another Grafana"
    assert d["title"] and d["panels"]
    assert "alertmail" in d["tags"]


@pytest.mark.parametrize("path", _dashboards(), ids=lambda p: p.name)
def test_dashboard_has_a_prometheus_datasource_variable(path: Path) -> None:
    variables = {v["name"]: v for v in _load(path)["templating"]["list"]}
    ds = variables["datasource"]
    assert ds["type"] == "datasource"
    assert ds["query"] == "prometheus"


@pytest.mark.parametrize("path", _dashboards(), ids=lambda p: p.name)
def test_panels_have_unique_ids_units_legends_and_use_the_variable(path: Path) -> None:
    d = _load(path)
    panels = list(iter_panels(d))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {path.name}"
    assert all(isinstance(i, int) and i > 0 for i in ids)
    for p in panels:
        assert p["type"] in PANEL_TYPES, p["title"]
        assert {"x", "y", "w", "h"} <= set(p["gridPos"])
        assert p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["fieldConfig"]["defaults"].get("unit"), p["title"]
        assert p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}", p["title"]
            assert t["expr"].strip(), p["title"]
            assert t.get("legendFormat"), f"{p['title']}/{t['refId']}: legendFormat"


@pytest.mark.parametrize("path", _dashboards(), ids=lambda p: p.name)
def test_dashboard_panels_do_not_overlap(path: Path) -> None:
    cells: dict[tuple[int, int], str] = {}
    for p in iter_panels(_load(path)):
        g = p["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = p["title"]
    assert cells


def test_log_metrics_dashboard_covers_its_topics() -> None:
    exprs = " ".join(q.expr for q in iter_panel_queries(_load(DASHBOARDS_DIR / "log-metrics.json")))
    assert "histogram_quantile(" in exprs and "http_request_duration_seconds_bucket" in exprs
    assert 'status="5xx"' in exprs
    assert "sum by (service, level)" in exprs or "sum by (level)" in exprs


def test_pipeline_dashboard_covers_its_topics() -> None:
    exprs = " ".join(
        q.expr for q in iter_panel_queries(_load(DASHBOARDS_DIR / "alerting-pipeline.json"))
    )
    for needed in (
        "alertmail_webhooks_received_total",
        "alertmail_deliveries_total",
        "alertmail_outbox_messages",
        "alertmail_smtp_failovers_total",
        "alertmail_delivery_latency_seconds_bucket",
        "alertmail_exporter_file_lag_bytes",
    ):
        assert needed in exprs, needed


def test_iter_panel_queries_finds_every_target() -> None:
    total = 0
    for path in _dashboards():
        d = _load(path)
        targets = sum(len(p.get("targets", [])) for p in iter_panels(d))
        queries = list(iter_panel_queries(d))
        assert len(queries) == targets
        assert len({q.id for q in queries}) == len(queries)
        total += len(queries)
    assert total >= 30


def test_iter_panel_queries_descends_into_collapsed_rows() -> None:
    d = {
        "uid": "x",
        "panels": [
            {
                "id": 1,
                "type": "row",
                "collapsed": True,
                "panels": [
                    {
                        "id": 2,
                        "type": "stat",
                        "targets": [
                            {"refId": "A", "expr": "up"},
                            {"refId": "B", "expr": "up", "hide": True},
                        ],
                    }
                ],
            }
        ],
    }
    assert [(q.panel_id, q.ref_id, q.expr) for q in iter_panel_queries(d)] == [(2, "A", "up")]


def test_substitute_variables() -> None:
    d = {
        "templating": {
            "list": [{"name": "service", "type": "query", "includeAll": True, "allValue": ".*"}]
        }
    }
    expr = 'rate(x{service=~"$service"}[$__rate_interval]) + rate(y[${__interval}])'
    assert substitute_variables(expr, d) == 'rate(x{service=~".*"}[5m]) + rate(y[1m])'
    assert substitute_variables('label_replace(up, "a", "$1", "b", "(.*)$")') == (
        'label_replace(up, "a", "$1", "b", "(.*)$")'
    )
    with pytest.raises(KeyError):
        substitute_variables("rate(x[$nope])")


@pytest.mark.parametrize("query", _all_queries(), ids=lambda q: q.id)
def test_panel_queries_use_known_metrics_only(query: Any) -> None:
    names = metric_names(query.expr)
    assert names, query.expr
    unknown = names - KNOWN_METRICS - recording_rule_names()
    assert not unknown, f"{query.id}: unknown metrics {unknown} in {query.expr}"


@pytest.mark.e2e
@pytest.mark.parametrize("query", _all_queries(), ids=lambda q: q.id)
def test_panel_query_runs_on_prometheus(query: Any, prometheus_server: Any) -> None:
    dashboard = next(_load(p) for p in _dashboards() if _load(p)["uid"] == query.dashboard_uid)
    expr = substitute_variables(query.expr, dashboard)
    assert "$" not in expr.replace('"$1"', ""), expr
    status, body = prometheus_server.api("query", query=expr)
    assert status == 200 and body["status"] == "success", f"{query.id}: {expr}\n{body}"
    assert body["data"]["resultType"] in {"vector", "scalar", "matrix"}


@pytest.mark.e2e
def test_prometheus_loads_the_shipped_rules(prometheus_server: Any) -> None:
    from .helpers import iter_rules

    status, body = prometheus_server.api("rules")
    assert status == 200 and body["status"] == "success"
    loaded = [r for g in body["data"]["groups"] for r in g["rules"]]
    assert len(loaded) == len(list(iter_rules()))
    assert all(r["health"] != "err" for r in loaded)
