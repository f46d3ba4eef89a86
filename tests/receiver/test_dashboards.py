"""Dashboard JSON -> report panels: rows, nesting, repeats, variables, PromQL substitution."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from receiver.dashboards import (
    ALL,
    builtins,
    interpolate,
    label_values_query,
    load_file,
    parse_dashboard,
    report_panels,
    variable_values,
)

ROOT = Path(__file__).resolve().parents[2]


def var(name: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "type": "custom", **kw}


def model() -> dict[str, Any]:
    return {
        "uid": "u1",
        "title": "T",
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "current": {}},
                var(
                    "service",
                    type="query",
                    multi=True,
                    includeAll=True,
                    current={"value": ["$__all"]},
                    definition="label_values(demo_requests_total, service)",
                ),
                var("env", current={"value": "prod"}, options=[{"value": "prod"}]),
                var("re", multi=True, includeAll=True, allValue=".+", current={"value": "$__all"}),
            ]
        },
        "panels": [
            {"id": 9, "type": "timeseries", "title": "Last", "gridPos": {"x": 0, "y": 30}},
            {"id": 1, "type": "row", "title": "Open row", "gridPos": {"x": 0, "y": 0}},
            {"id": 2, "type": "stat", "title": "A", "gridPos": {"x": 0, "y": 1},
             "targets": [{"refId": "A", "expr": "up"}, {"refId": "B", "expr": "x", "hide": True}]},
            {"id": 3, "type": "text", "title": "words", "gridPos": {"x": 6, "y": 1}},
            {"id": 4, "type": "row", "title": "Closed", "collapsed": True, "gridPos": {"y": 10},
             "panels": [
                 {"id": 5, "type": "timeseries", "title": "Rate $service", "repeat": "service",
                  "gridPos": {"y": 11}, "targets": [{"expr": 'r{service="$service"}'}]},
                 {"id": 6, "type": "table", "title": "Tbl", "gridPos": {"y": 12}},
             ]},
            {"id": 7, "type": "timeseries", "title": "clone", "repeatPanelId": 5,
             "gridPos": {"y": 20}},
        ],
    }  # fmt: skip


def test_rows_nesting_and_order() -> None:
    dash = parse_dashboard({"dashboard": model(), "meta": {}})
    assert [(row, p["id"]) for row, p in dash.panels] == [
        ("Open row", 2), ("Open row", 3), ("Closed", 5), ("Closed", 6), ("Closed", 7),
        ("Closed", 9),
    ]  # fmt: skip
    values = variable_values(dash, {}, {"service": ["api", "web"]})
    panels = report_panels(dash, values)
    # text panels and Grafana's saved clones are left out; the repeat is ours.
    assert [(p.id, p.title, p.row) for p in panels] == [
        (2, "A", "Open row"),
        (5, "Rate api", "Closed"),
        (5, "Rate web", "Closed"),
        (6, "Tbl", "Closed"),
        (9, "Last", "Closed"),
    ]
    assert [p.key for p in panels] == ["2", "5-api", "5-web", "6", "9"]
    assert [t.ref_id for t in panels[0].targets] == ["A"]  # hidden target dropped
    assert [p.id for p in report_panels(dash, values, only=[5, 9])] == [5, 5, 9]


def test_variable_values() -> None:
    dash = parse_dashboard(model())
    assert label_values_query(dash.variables["service"]) == ("demo_requests_total", "service")
    values = variable_values(dash, {}, {"service": ["api", "web"]})
    assert values["service"] == ("api", "web")
    assert values["env"] == ("prod",)
    assert values["re"] == (ALL,)  # substituted as its allValue
    over = variable_values(dash, {"service": "api, db", "env": "staging"})
    assert over["service"] == ("api", "db") and over["env"] == ("staging",)


def test_interpolation() -> None:
    dash = parse_dashboard(model())
    values = {"service": ("api", "web"), "env": ("prod",), "re": (ALL,)}
    built = builtins(7 * 86400, 3600)
    expr = (
        'sum(rate(x{service=~"$service", env="${env}", e2="[[env]]", r=~"$re"}'
        "[$__rate_interval])) / $__range_s + $__interval + $unknown"
    )
    assert interpolate(expr, dash, values, built) == (
        'sum(rate(x{service=~"(api|web)", env="prod", e2="prod", r=~".+"}'
        "[3615s])) / 604800 + 3600s + $unknown"
    )
    assert builtins(86400, 15)["__rate_interval"] == "60s"  # 4 x scrape interval at least
    assert builtins(86400, 15)["__range"] == "86400s"


def test_values_cannot_break_out_of_promql_strings() -> None:
    dash = parse_dashboard(model())
    hostile = 'a"} or vector(1) #'
    out = interpolate('x{service=~"$service"}', dash, {"service": (hostile,)}, {})
    assert out == 'x{service=~"a\\"\\\\} or vector\\\\(1\\\\) #"}'
    plain = interpolate('x{env="$env"}', dash, {"env": ('p"q',)}, {})
    assert plain == 'x{env="p\\"q"}'
    # Regex metacharacters of multi-value variables are escaped as Grafana does.
    assert interpolate("$service", dash, {"service": ("a.b",)}, {}) == "a\\\\.b"


@pytest.mark.parametrize("name", ["log-metrics.json", "alerting-pipeline.json"])
def test_shipped_dashboards(name: str) -> None:
    dash = load_file(ROOT / "dashboards" / name)
    panels = report_panels(dash, variable_values(dash, {}))
    raw = json.loads((ROOT / "dashboards" / name).read_text())
    drawable = [p for p in raw["panels"] if p["type"] != "row"]
    assert len(panels) == len(drawable) > 10
    assert all(p.targets for p in panels)


def test_not_a_dashboard(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text('{"panels": 3}')
    with pytest.raises(ValueError, match="not a Grafana dashboard"):
        load_file(bad)
