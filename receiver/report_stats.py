"""Numbers a report states: per-series key figures and alert firing history. Pure.

Key figures come from the same range-query results the chart is drawn from (one query, not
three more): the mean, maximum and 95th percentile of the points, with NaN/±Inf left out.
The percentile interpolates linearly between ranks like PromQL's ``quantile_over_time``, so
``quantile_over_time(0.95, (expr)[range:step])`` over the same step-aligned instants gives
the same number.

Alert history comes from Prometheus's ``ALERTS{alertstate="firing"}`` series, sampled at a
fixed step: an episode is a run of consecutive samples, its length (samples x step) the
firing time. Silenced and inhibited alerts never send us a resolve, and a receiver that was
down missed notifications, so Prometheus's own record is the one to count from.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from receiver.prometheus import Series


@dataclass(frozen=True)
class KeyNumbers:
    mean: float
    max: float
    p95: float
    previous_mean: float | None  # same range, one range earlier; None without data

    @property
    def change(self) -> float | None:
        """Relative change of the mean against the previous period (0.1 = +10 %)."""
        if self.previous_mean is None or math.isnan(self.previous_mean):
            return None
        if self.previous_mean == 0:
            return None if self.mean != 0 else 0.0
        return (self.mean - self.previous_mean) / abs(self.previous_mean)


def _finite(values: Sequence[tuple[float, float]]) -> np.typing.NDArray[np.float64]:
    v = np.fromiter((p[1] for p in values), float, len(values))
    finite: np.typing.NDArray[np.float64] = v[np.isfinite(v)]
    return finite


def key_numbers(current: Series, previous: Series | None) -> KeyNumbers | None:
    v = _finite(current.values)
    if not len(v):
        return None
    prev = _finite(previous.values) if previous is not None else np.empty(0)
    return KeyNumbers(
        mean=float(np.mean(v)),
        max=float(np.max(v)),
        p95=float(np.percentile(v, 95)),  # "linear": the same ranks as quantile_over_time
        previous_mean=float(np.mean(prev)) if len(prev) else None,
    )


def reduce(series: Series, how: str) -> float | None:
    """A stat panel's value: Grafana's reducers we know (others read as lastNotNull)."""
    v = _finite(series.values)
    if not len(v):
        return None
    if how == "mean":
        return float(np.mean(v))
    if how == "max":
        return float(np.max(v))
    if how == "min":
        return float(np.min(v))
    if how == "sum":
        return float(np.sum(v))
    if how == "last":
        last = series.values[-1][1] if series.values else math.nan
        return None if not math.isfinite(last) else float(last)
    return float(v[-1])


def _identity(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


@dataclass(frozen=True)
class AlertSummary:
    alertname: str
    severity: str
    episodes: int  # times it started firing within the range (a run already firing counts)
    firing_seconds: float
    resolved_episodes: int
    mean_time_to_resolve: float | None  # over episodes that ended within the range
    firing_now: int  # series firing at the end of the range
    series: int  # distinct label sets that fired


def alert_history(series: Sequence[Series], step: float, end: float) -> list[AlertSummary]:
    """Per alertname, from ``ALERTS{alertstate="firing"}`` sampled every ``step`` up to
    ``end``. Sorted by episodes then firing time: the noisiest first."""
    by_name: dict[str, list[Series]] = {}
    for s in series:
        by_name.setdefault(s.labels.get("alertname", "?"), []).append(s)
    out = []
    for name, group in by_name.items():
        episodes = resolved = firing_now = 0
        total = 0.0
        resolve_times: list[float] = []
        severities = {s.labels.get("severity", "") for s in group} - {""}
        for s in group:
            times = [t for t, v in s.values if math.isfinite(v)]
            if not times:
                continue
            total += len(times) * step
            run_start = times[0]
            for prev, t in zip(times, [*times[1:], math.inf], strict=True):
                if t - prev > step * 1.5:  # a gap: the episode that began at run_start ended
                    episodes += 1
                    length = prev - run_start + step
                    if prev < end - step / 2:
                        resolved += 1
                        resolve_times.append(length)
                    else:
                        firing_now += 1
                    run_start = t
        out.append(
            AlertSummary(
                alertname=name,
                severity=",".join(sorted(severities)),
                episodes=episodes,
                firing_seconds=total,
                resolved_episodes=resolved,
                mean_time_to_resolve=float(np.mean(resolve_times)) if resolve_times else None,
                firing_now=firing_now,
                series=len({_identity(s.labels) for s in group}),
            )
        )
    out.sort(key=lambda a: (-a.episodes, -a.firing_seconds, a.alertname))
    return out


def alerts_step(range_s: float) -> float:
    """Sampling step for ALERTS: a minute, coarser only to stay under Prometheus's 11,000
    points per series (a 7-day range at 60 s is 10,081)."""
    return float(max(60, math.ceil(range_s / 10_000 / 60) * 60))
