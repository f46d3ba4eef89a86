"""Grafana dashboard JSON -> the panels a report shows, with their PromQL ready to run. Pure.

Handles what real dashboards contain: rows (a collapsed row carries its panels inside it, an
open row is followed by them), repeated panels (``repeat: var`` -> one panel per value of
the variable), template variables in PromQL in all three notations (``$var``, ``${var}``,
``[[var]]``, also ``${var:format}``) and Grafana's built-ins ($__rate_interval, $__interval,
$__range and their _ms/_s forms). Values are escaped as Grafana's Prometheus data source does,
plus double quotes: a label value looked up from Prometheus comes from logs, and must not
be able to end the string it is substituted into.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ALL = "$__all"
SCRAPE_INTERVAL = 15.0  # Grafana's default data source scrape interval, for $__rate_interval
DRAWABLE = frozenset({"timeseries", "graph", "stat", "singlestat", "gauge", "bargauge", "table"})
_VAR_RE = re.compile(
    r"\$\{(?P<braced>\w+)(?::(?P<fmt>\w+))?\}|\[\[(?P<old>\w+)(?::\w+)?\]\]|\$(?P<plain>\w+)"
)
_REGEX_SPECIAL = re.compile(r"[$^*{}\[\]+?.()|]")
_LABEL_VALUES = re.compile(
    r"^\s*label_values\(\s*(?:(?P<metric>.+?)\s*,\s*)?(?P<label>\w+)\s*\)\s*$"
)


@dataclass(frozen=True)
class Variable:
    name: str
    type: str
    current: tuple[str, ...]  # as saved in the dashboard; may be (ALL,)
    options: tuple[str, ...]
    multi: bool
    include_all: bool
    all_value: str | None
    query: str  # label_values(...) for query variables, "" otherwise


@dataclass(frozen=True)
class Target:
    ref_id: str
    expr: str  # as written, variables not yet substituted
    legend_format: str | None
    instant: bool


@dataclass(frozen=True)
class Panel:
    id: int
    title: str
    type: str
    targets: tuple[Target, ...]
    unit: str | None
    decimals: int | None
    thresholds: tuple[tuple[float, str], ...]  # (value, colour), the base step left out
    reducer: str  # stat panels: lastNotNull | mean | max | min | sum | last
    row: str | None
    scoped: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # repeat var -> value

    @property
    def key(self) -> str:
        """Unique within a dashboard, safe for a file name: 6, or 6-api for a repeat."""
        suffix = "-".join(v for vals in self.scoped.values() for v in vals)
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", suffix)[:40]
        return f"{self.id}-{safe}" if safe else str(self.id)


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    variables: dict[str, Variable]
    panels: list[tuple[str | None, dict[str, Any]]]  # (row title, raw panel), rows flattened


def _strings(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    return (str(value),)


def _variable(raw: Mapping[str, Any]) -> Variable:
    current = raw.get("current") or {}
    query = raw.get("definition") or raw.get("query") or ""
    if isinstance(query, dict):
        query = query.get("query", "")
    return Variable(
        name=str(raw.get("name", "")),
        type=str(raw.get("type", "")),
        current=_strings(current.get("value")),
        options=tuple(
            str(o.get("value")) for o in raw.get("options") or [] if o.get("value") != ALL
        ),
        multi=bool(raw.get("multi")),
        include_all=bool(raw.get("includeAll")),
        all_value=raw.get("allValue") or None,
        query=str(query),
    )


def flatten(panels: Sequence[Mapping[str, Any]]) -> list[tuple[str | None, dict[str, Any]]]:
    """Panels in layout order with the title of the row each sits in."""
    out: list[tuple[str | None, dict[str, Any]]] = []
    row: str | None = None
    ordered = sorted(
        panels,
        key=lambda p: ((p.get("gridPos") or {}).get("y", 0), (p.get("gridPos") or {}).get("x", 0)),
    )
    for p in ordered:
        if p.get("type") == "row":
            row = str(p.get("title") or "") or None
            out.extend((row, dict(child)) for child in p.get("panels") or [])  # collapsed
        elif p.get("panels"):  # an old-style nested group: keep its children
            out.extend((row, dict(child)) for child in p["panels"])
        else:
            out.append((row, dict(p)))
    return out


def parse_dashboard(doc: Mapping[str, Any]) -> Dashboard:
    """A dashboard model, or an export/API answer wrapping one in ``{"dashboard": ...}``."""
    model = doc.get("dashboard", doc)
    if not isinstance(model, Mapping) or not isinstance(model.get("panels", []), list):
        raise ValueError("not a Grafana dashboard (no panels list)")
    variables = {}
    for raw in (model.get("templating") or {}).get("list") or []:
        var = _variable(raw)
        if var.name:
            variables[var.name] = var
    return Dashboard(
        uid=str(model.get("uid") or ""),
        title=str(model.get("title") or model.get("uid") or "dashboard"),
        variables=variables,
        panels=flatten(model.get("panels") or []),
    )


def load_file(path: Path) -> Dashboard:
    try:
        return parse_dashboard(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from exc


def label_values_query(var: Variable) -> tuple[str | None, str] | None:
    """(metric selector or None, label) of a ``label_values(...)`` query variable."""
    m = _LABEL_VALUES.match(var.query) if var.type == "query" else None
    return (m.group("metric"), m.group("label")) if m else None


def variable_values(
    dash: Dashboard,
    overrides: Mapping[str, str],
    looked_up: Mapping[str, Sequence[str]] = {},
) -> dict[str, tuple[str, ...]]:
    """Each variable's values: the report config's, else the dashboard's current selection.

    A config value with commas is a list (for multi-value variables and repeats). ``ALL``
    stays as it is when the variable has an allValue (substituted as that regex); otherwise
    it becomes the options, or the values ``looked_up`` from Prometheus for query variables.
    """
    out: dict[str, tuple[str, ...]] = {}
    for name, var in dash.variables.items():
        if name in overrides:
            raw = overrides[name]
            values = tuple(v.strip() for v in raw.split(",")) if "," in raw else (raw,)
        else:
            values = var.current or var.options[:1]
        if ALL in values or values == ("All",):
            if var.all_value is None:
                values = tuple(looked_up.get(name) or var.options) or (ALL,)
            else:
                values = (ALL,)
        out[name] = values
    return out


def _escape_regex(value: str) -> str:
    return _REGEX_SPECIAL.sub(lambda m: "\\\\" + m.group(0), value.replace("\\", "\\\\\\\\"))


def _format(var: Variable | None, values: Sequence[str], fmt: str | None) -> str:
    if var is not None and values == (ALL,):
        return var.all_value or ".*"
    if fmt == "raw":
        text = ",".join(values)
    elif (var is not None and (var.multi or var.include_all)) or len(values) > 1 or fmt == "regex":
        escaped = [_escape_regex(v) for v in values]
        text = escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
    else:
        text = values[0].replace("\\", "\\\\").replace("'", "\\'") if values else ""
    return text.replace('"', '\\"')


def builtins(range_s: float, step: float) -> dict[str, str]:
    """Grafana's global variables for a query of ``range_s`` seconds at ``step``."""
    rate = max(step + SCRAPE_INTERVAL, 4 * SCRAPE_INTERVAL)
    return {
        "__interval": f"{step:g}s",
        "__interval_ms": f"{step * 1000:.0f}",
        "__rate_interval": f"{rate:g}s",
        "__rate_interval_ms": f"{rate * 1000:.0f}",
        "__range": f"{range_s:.0f}s",
        "__range_s": f"{range_s:.0f}",
        "__range_ms": f"{range_s * 1000:.0f}",
    }


def interpolate(
    text: str,
    dash: Dashboard,
    values: Mapping[str, Sequence[str]],
    built: Mapping[str, str],
) -> str:
    """Substitute variables; unknown names stay as written (as in Grafana)."""

    def sub(m: re.Match[str]) -> str:
        name = m.group("braced") or m.group("old") or m.group("plain")
        if name in built:
            return built[name]
        if name not in values:
            return m.group(0)
        return _format(dash.variables.get(name), tuple(values[name]), m.group("fmt"))

    return _VAR_RE.sub(sub, text)


def _thresholds(defaults: Mapping[str, Any]) -> tuple[tuple[float, str], ...]:
    steps = ((defaults.get("thresholds") or {}).get("steps")) or []
    out = []
    for s in steps:
        if isinstance(s.get("value"), int | float):  # the base step has value null
            out.append((float(s["value"]), str(s.get("color") or "red")))
    return tuple(out)


def _panel(raw: Mapping[str, Any], row: str | None) -> Panel:
    defaults = (raw.get("fieldConfig") or {}).get("defaults") or {}
    calcs = ((raw.get("options") or {}).get("reduceOptions") or {}).get("calcs") or []
    targets = tuple(
        Target(
            ref_id=str(t.get("refId") or chr(65 + i)),
            expr=str(t.get("expr") or ""),
            legend_format=t.get("legendFormat") or None,
            instant=bool(t.get("instant")) and not t.get("range"),
        )
        for i, t in enumerate(raw.get("targets") or [])
        if t.get("expr") and not t.get("hide")
    )
    decimals = defaults.get("decimals")
    return Panel(
        id=int(raw.get("id") or 0),
        title=str(raw.get("title") or ""),
        type=str(raw.get("type") or ""),
        targets=targets,
        unit=defaults.get("unit") or raw.get("format") or None,
        decimals=int(decimals) if isinstance(decimals, int) else None,
        thresholds=_thresholds(defaults),
        reducer=str(calcs[0]) if calcs else "lastNotNull",
        row=row,
    )


def report_panels(
    dash: Dashboard, values: Mapping[str, Sequence[str]], only: Sequence[int] | None = None
) -> list[Panel]:
    """The drawable panels, repeats expanded (one per value), in layout order.

    ``only`` keeps the listed panel ids (a repeated panel's clones share its id). Titles get
    their variables substituted, so repeats read "Latency api", "Latency web".
    """
    out: list[Panel] = []
    for row, raw in dash.panels:
        if raw.get("repeatPanelId") is not None:  # a clone Grafana saved: we make our own
            continue
        if raw.get("type") not in DRAWABLE or (only is not None and raw.get("id") not in only):
            continue
        panel = _panel(raw, row)
        repeat = raw.get("repeat")
        reps: list[dict[str, tuple[str, ...]]] = [{}]
        if repeat and repeat in values:
            vals = [v for v in values[repeat] if v != ALL] or list(values[repeat])
            reps = [{repeat: (v,)} for v in vals]
        for scoped in reps:
            merged = {**values, **scoped}
            title = interpolate(panel.title, dash, merged, {})
            out.append(replace(panel, scoped=scoped, title=title))
    return out
