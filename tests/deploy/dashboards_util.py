"""Read Grafana dashboard JSON: panels and their PromQL, with variables substituted.

Used by the dashboard tests here, by the end-to-end test that runs every panel's query
against a real Prometheus, and usable by anything that needs "the PromQL of a panel".
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

# Grafana's built-in interval variables, replaced by fixed values that suit a
# 15s scrape interval.
BUILTIN_VARIABLES: dict[str, str] = {
    "__rate_interval": "5m",
    "__interval": "1m",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
    "__interval_ms": "60000",
}

# $1 (label_replace) and a regex's trailing $ are not variables: names start with a letter.
_VARIABLE = re.compile(
    r"\$\{([A-Za-z_]\w*)(?::\w+)?\}|\[\[([A-Za-z_]\w*)(?::\w+)?\]\]|\$([A-Za-z_]\w*)"
)


@dataclass(frozen=True)
class PanelQuery:
    dashboard_uid: str
    panel_id: int
    panel_title: str
    panel_type: str
    ref_id: str
    expr: str
    legend_format: str | None

    @property
    def id(self) -> str:
        """A stable, readable id: '<dashboard uid>/<panel id>/<refId>'."""
        return f"{self.dashboard_uid}/{self.panel_id}/{self.ref_id}"


def iter_panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including the ones nested in (collapsed) rows, rows included."""

    def walk(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in panels:
            yield panel
            yield from walk(panel.get("panels") or [])

    yield from walk(list(dashboard.get("panels") or []))


def iter_panel_queries(dashboard: Mapping[str, Any]) -> Iterator[PanelQuery]:
    """Every PromQL target of every panel (hidden targets excluded), as written."""
    uid = str(dashboard.get("uid", ""))
    for panel in iter_panels(dashboard):
        for target in panel.get("targets") or []:
            expr = target.get("expr")
            if not expr or target.get("hide"):
                continue
            yield PanelQuery(
                dashboard_uid=uid,
                panel_id=int(panel["id"]),
                panel_title=str(panel.get("title", "")),
                panel_type=str(panel.get("type", "")),
                ref_id=str(target.get("refId", "")),
                expr=str(expr),
                legend_format=target.get("legendFormat"),
            )


def variable_defaults(dashboard: Mapping[str, Any]) -> dict[str, str]:
    """A value for each template variable that selects everything it can."""
    values: dict[str, str] = {}
    for var in (dashboard.get("templating") or {}).get("list") or []:
        name, kind = var.get("name"), var.get("type")
        if not name:
            continue
        if kind in ("query", "custom"):
            values[name] = (var.get("allValue") or ".*") if var.get("includeAll") else ".*"
        elif kind in ("constant", "textbox"):
            values[name] = str(var.get("query", ""))
        elif kind == "interval":
            values[name] = "5m"
        elif kind == "datasource":
            values[name] = str(var.get("query", "prometheus"))
    return values


def substitute_variables(
    expr: str,
    dashboard: Mapping[str, Any] | None = None,
    overrides: Mapping[str, str] | None = None,
) -> str:
    """Replace $var, ${var}, ${var:fmt} and [[var]] the way Grafana would, roughly.

    Built-in intervals get fixed values ($__rate_interval -> 5m, $__interval -> 1m),
    dashboard variables their "All" value. Unknown variables raise KeyError, so a typo
    in a dashboard does not slip through as a literal '$foo' in PromQL.
    """
    values = dict(BUILTIN_VARIABLES)
    if dashboard is not None:
        values.update(variable_defaults(dashboard))
    if overrides:
        values.update(overrides)

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name not in values:
            raise KeyError(f"unknown dashboard variable ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(repl, expr)
