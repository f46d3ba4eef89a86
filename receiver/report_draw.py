"""Drawing report panels off the event loop: plain-data jobs for a process pool.

matplotlib holds the GIL while it draws, so a thread would still stall webhook ingest; a
separate process does not. The workers run at a lower CPU priority (nice 19, the lowest): on a small
machine the receiver's event loop gets the CPU first whenever a webhook arrives, and the
report takes the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from typing import TypeVar

from receiver.prometheus import Series

A = TypeVar("A")
R = TypeVar("R")
WORKER_NICE = 19
LEGEND_FORMAT = "{{__legend}}"


@dataclass(frozen=True)
class DrawJob:
    kind: str  # "timeseries" | "stat"
    width: int
    height: int
    title: str
    unit: str | None = None
    # Series carry one label, "__legend": named by the caller, who lists them next to the
    # key numbers too (so the chart and the table always agree).
    series: list[Series] = field(default_factory=list)
    start: float | None = None
    end: float | None = None
    step: float | None = None
    thresholds: list[tuple[float, str]] = field(default_factory=list)
    value: float | None = None  # stat
    decimals: int | None = None
    tz: tzinfo = UTC


_GRAFANA_COLOURS = {
    "red": "#e02f44",
    "green": "#56a64b",
    "orange": "#ff9830",
    "yellow": "#fade2a",
    "blue": "#3274d9",
    "purple": "#a352cc",
}


def _colour(name: str) -> str:
    return _GRAFANA_COLOURS.get(name, name if name.startswith("#") else "#e02f44")


def draw(job: DrawJob) -> bytes:
    """Runs in a worker process (top level, so it pickles by reference)."""
    from receiver import charts

    thresholds = [charts.Threshold(v, _colour(c)) for v, c in job.thresholds]
    if job.kind == "stat":
        return charts.stat_png(
            job.value,
            width=job.width,
            height=job.height,
            title=job.title,
            unit=job.unit,
            decimals=job.decimals,
            sparkline=job.series[0] if job.series else None,
            thresholds=thresholds,
        )
    return charts.timeseries_png(
        job.series,
        width=job.width,
        height=job.height,
        title=job.title,
        unit=job.unit,
        legend_format=LEGEND_FORMAT,
        thresholds=thresholds,
        start=job.start,
        end=job.end,
        step=job.step,
        tz=job.tz,
    )


def _init_worker() -> None:
    with contextlib.suppress(OSError):  # not permitted, or not POSIX: draw at normal priority
        os.nice(WORKER_NICE)
    from receiver import charts

    charts.timeseries_png([], width=100, height=60)  # import matplotlib, load fonts


class Drawer:
    """A lazily started pool of report processes (builds and drawing), replaced if a worker
    dies. Tests may pass a thread pool instead."""

    def __init__(self, executor: Executor | None = None, workers: int = 2) -> None:
        self._given = executor
        self._workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> Executor:
        if self._given is not None:
            return self._given
        if self._pool is None:
            # spawn: forking a process that has an event loop and threads can copy held locks.
            self._pool = ProcessPoolExecutor(
                max_workers=self._workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
            )
        return self._pool

    async def run(self, fn: Callable[[A], R], arg: A) -> R:
        """``fn(arg)`` in a worker; a pool whose worker died is replaced for the next call."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor(), fn, arg)
        except BrokenProcessPool:
            if self._pool is not None:
                broken, self._pool = self._pool, None
                broken.shutdown(wait=False, cancel_futures=True)
            raise

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
