"""Charts as PNG bytes (time series, stat) and tables as HTML. Pure drawing, no I/O.

Uses matplotlib's object API (Figure + Agg canvas) and never pyplot, whose global figure
registry is not thread-safe and leaks figures; nor do we touch the global rcParams: every
style choice is passed to the artist that needs it, so callers in threads, processes or a
test suite see no state from one chart in the next. Sizes are exact pixels: a figure of
width/DPI x height/DPI inches saved at DPI, without tight bounding boxes (those change size).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

import matplotlib.dates as mdates
import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullLocator

from receiver.prometheus import Series
from receiver.units_format import distinct_labels, format_value, legend_label, table_html

__all__ = ["Threshold", "legend_label", "stat_png", "table_html", "timeseries_png"]

DPI = 100
PX = 72.0 / DPI  # points per pixel: matplotlib sizes fonts in points
# Grafana's light theme and classic palette (readable on white, distinct in print).
BG = "#ffffff"
TEXT = "#464c54"
MUTED = "#8e8e8e"
GRID = "#e9e9e9"
ALERT_RED = "#e02f44"
OK_GREEN = "#56a64b"
PALETTE = (
    "#7eb26d", "#eab839", "#6ed0e0", "#ef843c", "#e24d42", "#1f78c1", "#ba43a9", "#705da0",
    "#508642", "#cca300", "#447ebc", "#c15c17", "#890f02", "#0a437c", "#6d1f62", "#584477",
)  # fmt: skip
LEGEND_MAX = 10  # more entries than this read as noise; the rest is summarised "+N more"
_NO_AXIS = "\0no-axis"  # _layout: no y labels to make room for
_EPOCH = float(mdates.date2num(datetime(1970, 1, 1, tzinfo=UTC)))  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class Threshold:
    value: float
    color: str = ALERT_RED


def _new_figure(width: int, height: int) -> tuple[Figure, FigureCanvasAgg]:
    if width < 50 or height < 30:
        raise ValueError(f"chart size {width}x{height} px is too small")
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor=BG)
    return fig, FigureCanvasAgg(fig)


def _png(fig: Figure, canvas: FigureCanvasAgg) -> bytes:
    buf = io.BytesIO()
    # No "Software" tag: a few bytes less per email, and nothing about our stack.
    fig.savefig(buf, format="png", dpi=DPI, facecolor=BG, metadata={"Software": None})
    return buf.getvalue()


def _to_num(ts: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    # matplotlib date numbers are days since its epoch; Prometheus gives unix seconds.
    return ts / 86400.0 + _EPOCH


def _num(ts: float) -> float:
    return ts / 86400.0 + _EPOCH


def _with_gaps(
    values: Sequence[tuple[float, float]], step: float | None
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Arrays ready to plot: ±Inf as NaN, and a NaN inserted where points are missing so the
    line breaks there instead of drawing a straight bridge across an outage."""
    if not values:
        return np.empty(0), np.empty(0)
    t = np.fromiter((p[0] for p in values), float, len(values))
    v = np.fromiter((p[1] for p in values), float, len(values))
    v[~np.isfinite(v)] = np.nan
    if len(t) > 1:
        diffs = np.diff(t)
        gap_step = step or float(np.min(diffs[diffs > 0], initial=np.inf))
        gaps = np.nonzero(diffs > 1.5 * gap_step)[0]
        if len(gaps):
            t = np.insert(t, gaps + 1, t[gaps] + gap_step)
            v = np.insert(v, gaps + 1, np.nan)
    return t, v


def _style_axes(ax: Axes, font_px: float) -> None:
    ax.set_facecolor(BG)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.spines["bottom"].set_color(GRID)
    ax.grid(True, color=GRID, linewidth=0.8)
    ax.set_axisbelow(True)
    ax.tick_params(labelsize=font_px * PX, colors=MUTED, length=0, pad=3)


def _no_data(fig: Figure, ax: Axes, font_px: float) -> None:
    # Null locators, not set_xticks([]): the date formatter fails on an empty tick list.
    ax.xaxis.set_major_locator(NullLocator())
    ax.yaxis.set_major_locator(NullLocator())
    ax.spines["bottom"].set_visible(False)
    ax.text(
        0.5, 0.5, "No data", transform=ax.transAxes, ha="center", va="center",
        fontsize=font_px * 1.6 * PX, color=MUTED,
    )  # fmt: skip


def _ylabel_px(ax: Axes, unit: str | None, font_px: float) -> float:
    lo, hi = ax.get_ylim()
    texts = [format_value(float(t), unit) for t in ax.get_yticks() if lo <= t <= hi]
    return max((len(s) for s in texts), default=1) * font_px * 0.62 + 10


def timeseries_png(
    series: Sequence[Series],
    *,
    width: int,
    height: int,
    title: str = "",
    unit: str | None = None,
    legend_format: str | None = None,
    fallback_name: str = "",
    thresholds: Sequence[Threshold] = (),
    start: float | None = None,
    end: float | None = None,
    step: float | None = None,
    markers: Sequence[float] = (),
    spans: Sequence[tuple[float, float]] = (),
    tz: tzinfo = UTC,
    font_px: float = 10.5,
) -> bytes:
    """A Grafana-like line chart, exactly ``width`` x ``height`` pixels.

    ``start``/``end`` fix the time axis (unix seconds); ``markers`` are vertical lines (an
    alert's start), ``spans`` shaded periods (while it fired), ``thresholds`` dashed lines.
    """
    fig, canvas = _new_figure(width, height)
    ax = fig.add_axes((0, 0, 1, 1))
    _style_axes(ax, font_px)
    drawn = [(s, *_with_gaps(s.values, step)) for s in series]
    drawn = [(s, t, v) for s, t, v in drawn if len(v) and not np.all(np.isnan(v))]
    legend: list[tuple[str, str]] = []
    distinct = (
        [s.labels for s, _, _ in drawn]
        if legend_format and legend_format != "__auto"
        else distinct_labels([s.labels for s, _, _ in drawn])
    )
    for i, (_s, t, v) in enumerate(drawn):
        color = PALETTE[i % len(PALETTE)]
        x = _to_num(t)
        # A sample with no neighbour (a series that just appeared, or between gaps) draws no
        # line: mark it so a fresh spike is still visible.
        before = np.concatenate(([np.nan], v[:-1]))
        after = np.concatenate((v[1:], [np.nan]))
        isolated = ~np.isnan(v) & np.isnan(before) & np.isnan(after)
        ax.plot(x, v, color=color, linewidth=1.2, solid_joinstyle="round")
        if isolated.any():
            ax.plot(x[isolated], v[isolated], "o", color=color, markersize=3)
        if len(drawn) == 1:  # a light fill reads well for one series, as mud for many
            ax.fill_between(x, v, np.nanmin(v), color=color, alpha=0.12, linewidth=0)
        legend.append((legend_label(distinct[i], legend_format, fallback_name), color))
    for th in thresholds:
        ax.axhline(th.value, color=th.color, linewidth=1.0, linestyle=(0, (4, 3)))
    for a, b in spans:
        ax.axvspan(_num(a), _num(b), color=ALERT_RED, alpha=0.08)
    for m in markers:
        ax.axvline(_num(m), color=ALERT_RED, linewidth=1.0, alpha=0.8)
    if start is not None and end is not None and end > start:
        ax.set_xlim(_num(start), _num(end))
    locator = mdates.AutoDateLocator(tz=tz, minticks=3, maxticks=max(3, width // 90))  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    concise = mdates.ConciseDateFormatter(locator, tz=tz, show_offset=False)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_formatter(concise)
    ax.yaxis.set_major_locator(MaxNLocator(nbins=max(2, height // 50)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _pos: format_value(y, unit)))
    if not drawn:
        _no_data(fig, ax, font_px)
    _layout(fig, ax, width, height, title, legend, unit if drawn else _NO_AXIS, font_px)
    return _png(fig, canvas)


def _layout(
    fig: Figure,
    ax: Axes,
    width: int,
    height: int,
    title: str,
    legend: list[tuple[str, str]],
    unit: str | None,
    font_px: float,
) -> None:
    """Place the axes by pixel margins: title on top, legend rows and time labels below."""
    top = 8.0
    if title:
        fig.text(
            8 / width, 1 - 5 / height, _clip(title, int((width - 16) / (font_px * 0.68))),
            ha="left", va="top", fontsize=(font_px + 1) * PX, color=TEXT, fontweight="bold",
        )  # fmt: skip
        top = font_px + 14
    if not any(label for label, _ in legend):
        legend = []  # one unnamed series: a lone colour swatch would only puzzle readers
    rows = _legend(fig, legend, width, height, font_px)
    bottom = font_px + 12 + rows * (font_px + 6)
    left = _ylabel_px(ax, unit, font_px) if unit != _NO_AXIS else 10.0
    right = 12.0
    plot_h = max(height - top - bottom, 10)
    ax.set_position(
        (left / width, bottom / height, (width - left - right) / width, plot_h / height)
    )


def _clip(text: str, limit: int) -> str:
    limit = max(limit, 4)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _legend(
    fig: Figure, legend: list[tuple[str, str]], width: int, height: int, font_px: float
) -> int:
    """Draw the legend under the plot; returns the number of text rows used."""
    if not legend:
        return 0
    shown = legend[:LEGEND_MAX]
    extra = len(legend) - len(shown)
    cols = max(1, min(len(shown), width // 190))
    col_w = (width - 16) / cols
    chars = int((col_w - 22) / (font_px * 0.6))
    rows = math.ceil(len(shown) / cols)
    row_h = font_px + 6
    for i, (label, color) in enumerate(shown):
        r, c = divmod(i, cols)
        x = 8 + c * col_w
        y = 6 + (rows - 1 - r) * row_h + row_h / 2
        fig.add_artist(_swatch(fig, x, y, width, height, color))
        fig.text(
            (x + 16) / width, y / height, _clip(label, chars), ha="left", va="center",
            fontsize=font_px * PX, color=TEXT,
        )  # fmt: skip
    if extra:
        fig.text(
            1 - 8 / width, (6 + row_h / 2) / height, f"+{extra} more", ha="right", va="center",
            fontsize=font_px * PX, color=MUTED,
        )  # fmt: skip
    return rows


def _swatch(fig: Figure, x: float, y: float, width: int, height: int, color: str) -> Line2D:
    return Line2D(
        [x / width, (x + 12) / width], [y / height, y / height], transform=fig.transFigure,
        color=color, linewidth=2.5, solid_capstyle="butt",
    )  # fmt: skip


def threshold_color(value: float | None, thresholds: Sequence[Threshold], base: str) -> str:
    """Grafana's rule: the colour of the highest threshold the value reaches, else the base."""
    color = base
    if value is None or math.isnan(value):
        return color
    for th in sorted(thresholds, key=lambda t: t.value):
        if value >= th.value:
            color = th.color
    return color


def stat_png(
    value: float | None,
    *,
    width: int,
    height: int,
    title: str = "",
    unit: str | None = None,
    decimals: int | None = None,
    sparkline: Series | None = None,
    thresholds: Sequence[Threshold] = (),
    font_px: float = 10.5,
) -> bytes:
    """A stat panel: the value as a big number, coloured by threshold, over a sparkline."""
    fig, canvas = _new_figure(width, height)
    color = threshold_color(value, thresholds, OK_GREEN)
    top = font_px + 14 if title else 6.0
    if title:
        fig.text(
            0.5, 1 - 5 / height, _clip(title, int((width - 16) / (font_px * 0.68))),
            ha="center", va="top", fontsize=(font_px + 1) * PX, color=TEXT, fontweight="bold",
        )  # fmt: skip
    t, v = _with_gaps(sparkline.values if sparkline else [], None)
    has_line = len(v) > 1 and not np.all(np.isnan(v))
    spark_h = height * 0.35 if has_line else 0.0
    if has_line:
        ax = fig.add_axes((0, 0, 1, spark_h / height))
        ax.set_axis_off()
        ax.plot(t, v, color=color, linewidth=1.2)
        ax.fill_between(t, v, np.nanmin(v), color=color, alpha=0.18, linewidth=0)
        ax.margins(x=0, y=0.05)
    text = format_value(value, unit, decimals) if value is not None else "No data"
    avail_h = height - top - spark_h
    size_px = min(avail_h * 0.7, (width - 16) / (max(len(text), 2) * 0.62))
    fig.text(
        0.5, (spark_h + avail_h / 2) / height, text, ha="center", va="center",
        fontsize=max(size_px, font_px) * PX, color=color if value is not None else MUTED,
        fontweight="bold",
    )  # fmt: skip
    return _png(fig, canvas)
