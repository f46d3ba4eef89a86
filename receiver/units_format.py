"""Text of charts and tables: values by Grafana unit, legend names, HTML tables.

Pure functions shared by the chart axes, stat panels and HTML tables, so a number reads the
same wherever a report shows it. Only the units our dashboards use are known; anything else
falls back to "short", which is what Grafana does for an unknown unit id too. No matplotlib
here: a report that only needs a table or a number does not pay for importing it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from html import escape

_IEC = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
_SI_BYTES = ("B", "kB", "MB", "GB", "TB", "PB", "EB")
_SHORT = ("", " K", " Mil", " Bil", " Tri")
# (unit, seconds per unit) from the largest down; durations pick the largest that fits.
_TIME = (
    ("y", 365 * 86400.0),
    ("w", 7 * 86400.0),
    ("d", 86400.0),
    ("h", 3600.0),
    ("min", 60.0),
    ("s", 1.0),
    ("ms", 1e-3),
    ("µs", 1e-6),
    ("ns", 1e-9),
)
_TIME_SCALE = {"s": 1.0, "seconds": 1.0, "ms": 1e-3, "µs": 1e-6, "us": 1e-6, "ns": 1e-9}
_TEMPLATE_RE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
# Table styling matches the charts' light theme (inline: email clients drop <style>).
_TEXT = "#464c54"
_GRID = "#e9e9e9"
_SUFFIX = {"reqps": " req/s", "ops": " ops/s", "rps": " req/s", "wps": " wps", "iops": " io/s"}


def _num(value: float, decimals: int | None) -> str:
    if decimals is not None:
        return f"{value:.{decimals}f}"
    # Three significant digits without scientific notation for the usual magnitudes.
    text = f"{value:.3g}"
    if "e" in text and 1e-3 <= abs(value) < 1e15:
        text = f"{value:.3f}".rstrip("0").rstrip(".")
    return text


def _scaled(value: float, base: float, names: tuple[str, ...], decimals: int | None) -> str:
    i = 0
    scaled = value
    while abs(scaled) >= base and i < len(names) - 1:
        scaled /= base
        i += 1
    return f"{_num(scaled, decimals)}{names[i]}"


def _duration(seconds: float, decimals: int | None) -> str:
    if seconds == 0:
        return "0 s"
    for name, size in _TIME:
        if abs(seconds) >= size or name == "ns":
            return f"{_num(seconds / size, decimals)} {name}"
    raise AssertionError("unreachable")  # pragma: no cover


def format_value(value: float | None, unit: str | None = None, decimals: int | None = None) -> str:
    """One number as Grafana shows it for ``unit``; None/NaN read "–" (no value)."""
    if value is None or math.isnan(value):
        return "–"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    unit = (unit or "short").strip()
    if unit in ("bytes", "decbytes"):
        names = tuple(f" {n}" for n in (_IEC if unit == "bytes" else _SI_BYTES))
        return _scaled(value, 1024.0 if unit == "bytes" else 1000.0, names, decimals)
    if unit in ("Bps", "binBps"):
        return _scaled(value, 1024.0, tuple(f" {n}/s" for n in _IEC), decimals)
    if unit in _TIME_SCALE:
        return _duration(value * _TIME_SCALE[unit], decimals)
    if unit == "percent":
        return f"{_num(value, decimals)}%"
    if unit == "percentunit":
        return f"{_num(value * 100.0, decimals)}%"
    if unit in _SUFFIX:
        return _scaled(value, 1000.0, _SHORT, decimals) + _SUFFIX[unit]
    if unit in ("none", "short", ""):
        return _scaled(value, 1000.0, _SHORT, decimals)
    if unit.startswith("suffix:"):
        return _scaled(value, 1000.0, _SHORT, decimals) + unit.removeprefix("suffix:")
    return _scaled(value, 1000.0, _SHORT, decimals)


def legend_label(labels: Mapping[str, str], legend_format: str | None, fallback: str = "") -> str:
    """Grafana's legendFormat: ``{{label}}`` replaced by the label's value ("" if absent).

    Without a format (or Grafana's "__auto"), the Prometheus notation ``name{a="b"}``; a
    series without labels (``sum(...)``) is named by ``fallback``, usually the expression.
    """
    if legend_format and legend_format != "__auto":
        return _TEMPLATE_RE.sub(lambda m: labels.get(m.group(1), ""), legend_format)
    name = labels.get("__name__", "")
    rest = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    if not name and not rest:
        return fallback
    return f"{name}{{{rest}}}" if rest else name


def distinct_labels(label_sets: list[dict[str, str]]) -> list[dict[str, str]]:
    """Drop labels every series shares (the metric name, job, ...) from default legends: in a
    narrow legend column they would push the one label that tells the lines apart off the end.
    """
    if len(label_sets) < 2:
        return label_sets
    common = set.intersection(*(set(ls.items()) for ls in label_sets))
    reduced = [{k: v for k, v in ls.items() if (k, v) not in common} for ls in label_sets]
    return reduced if all(reduced) else label_sets


def table_html(
    columns: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    units: Mapping[str, str] | None = None,
    decimals: int | None = None,
) -> str:
    """A table as email-safe HTML (inline styles, every cell escaped).

    Numbers are formatted with their column's unit (``units`` maps column -> unit id);
    everything else is shown as text. Cell contents come from labels, i.e. from logs.
    """
    units = units or {}
    th = f"padding:4px 8px;text-align:left;border-bottom:2px solid {_GRID};color:{_TEXT}"
    td = f"padding:4px 8px;border-bottom:1px solid {_GRID};color:{_TEXT}"
    head = "".join(f'<th style="{th}">{escape(str(c))}</th>' for c in columns)
    body = []
    for row in rows:
        cells = []
        for col, cell in zip(columns, row, strict=False):
            if isinstance(cell, int | float) and not isinstance(cell, bool):
                text = format_value(float(cell), units.get(col), decimals)
                cells.append(f'<td style="{td};text-align:right">{escape(text)}</td>')
            else:
                cells.append(f'<td style="{td}">{escape("" if cell is None else str(cell))}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    style = "border-collapse:collapse;font-family:Arial,Helvetica,sans-serif;font-size:13px"
    return (
        f'<table role="presentation" style="{style}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )
