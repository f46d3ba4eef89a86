"""Gathering a report's content: dashboards, panel data, images, alert history. Async I/O.

Every panel is independent: a failed query, a dashboard Grafana will not give us or a render
error becomes a note on that panel (or dashboard) and the rest of the report goes on. Images
come from Grafana's renderer when Grafana is configured and the render works; otherwise
the panel is queued as a DrawJob and drawn locally from its own PromQL.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from receiver.config import Config, DashboardRef
from receiver.dashboards import (
    ALL,
    Dashboard,
    Panel,
    Target,
    builtins,
    interpolate,
    label_values_query,
    report_panels,
    variable_values,
)
from receiver.grafana import GrafanaClient, GrafanaError, dashboard_query
from receiver.prometheus import PrometheusClient, PrometheusError, Series, choose_step
from receiver.report_draw import DrawJob
from receiver.report_sources import load_dashboard
from receiver.report_stats import KeyNumbers, key_numbers
from receiver.report_stats import reduce as reduce_series
from receiver.units_format import distinct_labels, legend_label

log = logging.getLogger(__name__)

WIDE = (640, 260)  # px: the email's content width; every chart gets a full row
STAT = (310, 130)  # two stat panels side by side
MAX_NUMBERED_SERIES = 8  # key-number rows per panel; the rest are counted, not listed
TABLE_ROWS_HTML = 50  # the CSV attachment has them all


@dataclass
class PanelResult:
    panel: Panel
    kind: str  # "chart" | "stat" | "table"
    width: int
    height: int
    image: bytes | None = None
    source: str = ""  # "grafana" | "local"
    step: float = 0.0  # of the range queries the numbers and a local chart come from
    job: DrawJob | None = None
    numbers: list[tuple[str, KeyNumbers]] = field(default_factory=list)
    more_series: int = 0
    table: tuple[list[str], list[list[object]]] | None = None
    link: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class DashboardResult:
    ref: str  # uid or file, as configured
    uid: str
    title: str
    link: str | None
    panels: list[PanelResult] = field(default_factory=list)
    error: str | None = None


def aligned(start: float, end: float, step: float) -> tuple[float, float]:
    """The range snapped to multiples of the step (same instants as a PromQL subquery)."""
    end_al = end - end % step
    return end_al - round((end - start) / step) * step, end_al


def _passed(dash: Dashboard, name: str) -> bool:
    """Variables sent to Grafana as var-NAME (data source pickers are Grafana's own)."""
    var = dash.variables.get(name)
    return var is not None and var.type != "datasource"


class Collector:
    def __init__(
        self,
        config: Config,
        prom: PrometheusClient,
        grafana: GrafanaClient | None,
        base_dirs: Sequence[Path],
    ) -> None:
        self.config = config
        self.prom = prom
        self.grafana = grafana
        self.base_dirs = list(base_dirs)

    async def _lookups(
        self, dash: Dashboard, ref: DashboardRef, start: float, end: float
    ) -> dict[str, list[str]]:
        """Values of "All" query variables without allValue (needed to repeat panels)."""
        out: dict[str, list[str]] = {}
        for name, var in dash.variables.items():
            lv = label_values_query(var)
            if lv is None or name in ref.variables or (var.current and ALL not in var.current):
                continue
            metric, label = lv
            # Values seen during the report's range, not only at its end: a service that
            # stopped mid-week still gets its repeated panel.
            selector = metric or f'{{{label}!=""}}'
            expr = f"group by ({label}) (last_over_time({selector}[{end - start:.0f}s]))"
            try:
                series = await self.prom.query(expr, end)
            except PrometheusError as exc:
                log.info("label values for $%s: %s", name, exc)
                continue
            out[name] = sorted({s.labels[label] for s in series if label in s.labels})
        return out

    async def dashboard(self, ref: DashboardRef, start: float, end: float) -> DashboardResult:
        label = ref.uid or ref.file or "?"
        try:
            dash, path, slug = await load_dashboard(ref, self.grafana, self.base_dirs)
        except (GrafanaError, ValueError) as exc:
            return DashboardResult(label, ref.uid or "", label, None, error=str(exc))
        values = variable_values(dash, ref.variables, await self._lookups(dash, ref, start, end))
        link_vars = {
            k: list(v) for k, v in values.items() if dash.variables[k].type != "datasource"
        }
        query = dashboard_query(int(start * 1000), int(end * 1000), link_vars)
        base = f"{self.config.grafana.url}{path}" if self.config.grafana and path else None
        result = DashboardResult(
            label, dash.uid, dash.title, f"{base}?{urlencode(query)}" if base else None
        )
        panels = report_panels(dash, values, ref.panels)
        result.panels = await asyncio.gather(
            *(self._panel(dash, slug, p, values, start, end, base, query) for p in panels)
        )
        return result

    # -- panels -------------------------------------------------------------------------
    async def _panel(
        self,
        dash: Dashboard,
        slug: str,
        panel: Panel,
        values: dict[str, tuple[str, ...]],
        start: float,
        end: float,
        base: str | None,
        query: list[tuple[str, str]],
    ) -> PanelResult:
        kind = "table" if panel.type == "table" else "chart"
        if panel.type in ("stat", "singlestat", "gauge", "bargauge"):
            kind = "stat"
        width, height = STAT if kind == "stat" else WIDE
        res = PanelResult(panel, kind, width, height)
        merged = {**values, **panel.scoped}
        if base:
            scoped_q = [(k, v) for k, v in query if k[4:] not in panel.scoped] + [
                (f"var-{k}", v) for k, vals in panel.scoped.items() for v in vals
            ]
            res.link = f"{base}?{urlencode([*scoped_q, ('viewPanel', str(panel.id))])}"
        range_s = end - start
        step = res.step = choose_step(range_s, width)
        built = builtins(range_s, step)
        exprs = [(t, interpolate(t.expr, dash, merged, built)) for t in panel.targets]
        if kind == "table":
            await self._table(res, exprs, end)
            return res
        current, previous = await self._ranges(res, exprs, start, end, step)
        self._numbers(res, current, previous)
        if self.grafana is not None and dash.uid:
            vars_ = {k: list(v) for k, v in merged.items() if _passed(dash, k)}
            if await self._render(res, dash.uid, slug, start, end, vars_):
                return res
        res.source = "local"
        a, b = aligned(start, end, step)
        named = [Series({"__legend": name}, s.values) for name, s in current]
        if kind == "stat":
            value = reduce_series(current[0][1], panel.reducer) if current else None
            res.job = DrawJob("stat", width, height, panel.title, panel.unit, named[:1],
                              value=value, decimals=panel.decimals,
                              thresholds=list(panel.thresholds), tz=self.config.tz)  # fmt: skip
        else:
            res.job = DrawJob("timeseries", width, height, panel.title, panel.unit, named,
                              start=a, end=b, step=step, tz=self.config.tz)  # fmt: skip
        return res

    async def _render(
        self,
        res: PanelResult,
        uid: str,
        slug: str,
        start: float,
        end: float,
        variables: dict[str, list[str]],
    ) -> bool:
        assert self.grafana is not None
        try:
            res.image = await self.grafana.render_panel(
                uid, slug, res.panel.id, start_ms=int(start * 1000), end_ms=int(end * 1000),
                width=res.width, height=res.height, tz=self.config.timezone, variables=variables,
            )  # fmt: skip
        except GrafanaError as exc:
            log.info("panel %s drawn locally: %s", res.panel.title, exc)
            res.notes.append(f"drawn by alertmail: Grafana render failed ({exc})")
            return False
        res.source = "grafana"
        return True

    async def _ranges(
        self,
        res: PanelResult,
        exprs: list[tuple[Target, str]],
        start: float,
        end: float,
        step: float,
    ) -> tuple[list[tuple[str, Series]], dict[str, Series]]:
        """Named series of the range and of the range before it (for the change)."""
        a, b = aligned(start, end, step)
        span = b - a
        jobs = []
        for _, expr in exprs:
            jobs.append(self.prom.query_range(expr, a, b, step))
            jobs.append(self.prom.query_range(expr, a - span, b - span, step))
        answers = await asyncio.gather(*jobs, return_exceptions=True)
        current: list[tuple[str, Series]] = []
        previous: dict[str, Series] = {}
        for i, (target, expr) in enumerate(exprs):
            now_res, prev_res = answers[2 * i], answers[2 * i + 1]
            if isinstance(now_res, BaseException):
                if not isinstance(now_res, PrometheusError):
                    raise now_res
                res.notes.append(f"query failed: {expr}: {now_res}")
                continue
            fmt = target.legend_format
            names = self._names(now_res, fmt, expr)
            current.extend(zip(names, now_res, strict=True))
            if isinstance(prev_res, list):
                previous.update(zip(self._names(prev_res, fmt, expr), prev_res, strict=True))
        return current, previous

    @staticmethod
    def _names(series: list[Series], fmt: str | None, expr: str) -> list[str]:
        labels = (
            [s.labels for s in series]
            if fmt and fmt != "__auto"
            else distinct_labels([s.labels for s in series])
        )
        return [legend_label(ls, fmt, expr) for ls in labels]

    @staticmethod
    def _numbers(
        res: PanelResult, current: list[tuple[str, Series]], previous: dict[str, Series]
    ) -> None:
        numbered = [
            (n, k) for n, s in current if (k := key_numbers(s, previous.get(n))) is not None
        ]
        numbered.sort(key=lambda item: -item[1].mean)
        res.numbers = numbered[:MAX_NUMBERED_SERIES]
        res.more_series = max(0, len(numbered) - MAX_NUMBERED_SERIES)

    async def _table(self, res: PanelResult, exprs: list[tuple[Target, str]], end: float) -> None:
        answers = await asyncio.gather(
            *(self.prom.query(e, end) for _, e in exprs), return_exceptions=True
        )
        rows: dict[tuple[tuple[str, str], ...], dict[str, object]] = {}
        value_cols: list[str] = []
        label_cols: set[str] = set()
        for (target, expr), ans in zip(exprs, answers, strict=True):
            if isinstance(ans, BaseException):
                if not isinstance(ans, PrometheusError):
                    raise ans
                res.notes.append(f"query failed: {expr}: {ans}")
                continue
            col = "Value" if len(exprs) == 1 else f"Value #{target.ref_id}"
            value_cols.append(col)
            for s in ans:
                labels = {k: v for k, v in s.labels.items() if k != "__name__"}
                label_cols.update(labels)
                row = rows.setdefault(tuple(sorted(labels.items())), dict(labels))
                row[col] = s.values[-1][1] if s.values else None
        columns = [*sorted(label_cols), *value_cols]
        res.table = (columns, [[r.get(c) for c in columns] for r in rows.values()])
