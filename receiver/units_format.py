"""Value formatting by Grafana field-config unit (bytes, s, ms, percent, reqps, short, ...).

Pure functions shared by the chart axes, stat panels and HTML tables, so a number reads the
same wherever a report shows it. Only the units our dashboards use are known; anything else
falls back to "short", which is what Grafana does for an unknown unit id too.
"""

from __future__ import annotations

import math

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
