"""A real Prometheus with a week of synthetic, deterministic history, for chart tests.

The history is written as OpenMetrics, turned into TSDB blocks with ``promtool tsdb
create-blocks-from openmetrics`` and served by ``prometheus`` on a free loopback port with a
temporary data dir. The data ends a few hours before now: Prometheus can refuse backfilled
blocks that overlap its head (the most recent ~2 h), and tests should not depend on that.

Session-friendly: ``prometheus_fill`` is a session fixture; modules that import it share one
server (reference counted), which is stopped when the last user finishes, or at the latest
when the interpreter exits.
"""

from __future__ import annotations

import atexit
import math
import random
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import pytest

INTERVAL = 30  # seconds between synthetic samples (a typical scrape interval)
DAYS = 7
API_RATE = 5.0  # demo_requests_total{service="api"} grows by exactly this per second
WEB_RATE = 2.0
GAP = (6 * 3600, 7 * 3600)  # seconds before END during which demo_latency_seconds is missing


@dataclass(frozen=True)
class PromFill:
    url: str
    start: float  # first sample (unix seconds)
    end: float  # last sample
    interval: int = INTERVAL

    @staticmethod
    def latency(t: float) -> float:
        return latency_at(t)


def _noise(t: float) -> float:
    # Seeded per timestamp so any sample can be recomputed independently of the others.
    return random.Random(int(t)).uniform(-0.01, 0.01)


def latency_at(t: float) -> float:
    """demo_latency_seconds{service="api"} at sample time t: daily sine + noise."""
    return round(0.2 + 0.1 * math.sin(2 * math.pi * t / 86400) + _noise(t), 6)


def memory_at(t: float) -> float:
    return float(512 * 2**20 + int(64 * 2**20 * math.sin(2 * math.pi * t / 3600)))


def data_range(now: float | None = None) -> tuple[int, int]:
    now = time.time() if now is None else now
    end = int(now // 3600 * 3600) - 3 * 3600
    return end - DAYS * 86400, end


def write_openmetrics(path: Path, start: int, end: int) -> None:
    times = range(start, end + 1, INTERVAL)
    with path.open("w", encoding="utf-8") as f:
        f.write("# HELP demo_requests Requests served.\n# TYPE demo_requests counter\n")
        for service, rate in (("api", API_RATE), ("web", WEB_RATE)):
            for t in times:
                f.write(f'demo_requests_total{{service="{service}"}} {rate * (t - start)} {t}\n')
        f.write("# HELP demo_latency_seconds Latency.\n# TYPE demo_latency_seconds gauge\n")
        for t in times:
            if not end - GAP[1] <= t < end - GAP[0]:
                f.write(f'demo_latency_seconds{{service="api"}} {latency_at(t)!r} {t}\n')
        f.write("# HELP demo_memory_bytes Memory.\n# TYPE demo_memory_bytes gauge\n")
        for t in times:
            f.write(f'demo_memory_bytes{{service="api"}} {memory_at(t)!r} {t}\n')
        _write_alerts(f, end)
        f.write("# EOF\n")


def alert_episodes(end: int) -> list[tuple[dict[str, str], int, int]]:
    """Synthetic ``ALERTS{alertstate="firing"}`` history: (labels, first, last sample time).

    All within the last day before ``end``: HighLatency fired 3 times and resolved, DiskFull
    is still firing at ``end``, Flapping fired 8 short times (the noisiest).
    """
    h = 3600
    out: list[tuple[dict[str, str], int, int]] = []
    for a, b in ((end - 20 * h, end - 19 * h), (end - 10 * h, end - 10 * h + 1800),
                 (end - 5 * h, end - 4 * h)):  # fmt: skip
        out.append(({"alertname": "HighLatency", "severity": "warning", "service": "api"}, a, b))
    out.append(
        ({"alertname": "DiskFull", "severity": "critical", "service": "db"}, end - 3 * h, end)
    )
    for i in range(8):
        a = end - 23 * h + i * 2 * h
        out.append(({"alertname": "Flapping", "severity": "info", "service": "web"}, a, a + 600))
    return out


def _write_alerts(f: TextIO, end: int) -> None:
    # Appended after the original series, which stay exactly as they were.
    f.write("# HELP ALERTS Synthetic alert history.\n# TYPE ALERTS gauge\n")
    by_series: dict[tuple[tuple[str, str], ...], list[tuple[int, int]]] = {}
    for labels, a, b in alert_episodes(end):
        by_series.setdefault(tuple(sorted(labels.items())), []).append((a, b))
    for key, spans in by_series.items():
        text = ",".join(f'{k}="{v}"' for k, v in (*key, ("alertstate", "firing")))
        for a, b in sorted(spans):
            for t in range(a, b + 1, INTERVAL):
                f.write(f"ALERTS{{{text}}} 1 {t}\n")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _binaries() -> tuple[str, str]:
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if not prometheus or not promtool:
        pytest.skip("prometheus/promtool not installed (Debian package prometheus)")
    return prometheus, promtool


@contextmanager
def running_prometheus(workdir: Path) -> Iterator[PromFill]:
    """Backfill, start, wait for /-/ready, yield; always terminate (kill if it lingers)."""
    prometheus, promtool = _binaries()
    start, end = data_range()
    om = workdir / "history.om.txt"
    data = workdir / "data"
    write_openmetrics(om, start, end)
    # 24 h blocks: a handful of blocks instead of 84 two-hour ones, so startup stays fast.
    subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", "--max-block-duration=24h",
         str(om), str(data)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    config = workdir / "prometheus.yml"
    config.write_text("global: {scrape_interval: 15s}\n", encoding="utf-8")
    port = _free_port()
    log = workdir / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [prometheus, f"--config.file={config}", f"--storage.tsdb.path={data}",
             f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=30d"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"prometheus exited {proc.returncode}:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"prometheus not ready after 60 s:\n{log.read_text()}")
            time.sleep(0.1)
        yield PromFill(url=url, start=float(start), end=float(end))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


_shared: PromFill | None = None
_users = 0
_stack = ExitStack()
atexit.register(_stack.close)  # the safety net if a session ends without finalizing


@pytest.fixture(scope="session")
def prometheus_fill() -> Iterator[PromFill]:
    """The shared backfilled Prometheus (one per test session, however many modules use it)."""
    global _shared, _users
    if _shared is None:
        tmp = Path(_stack.enter_context(tempfile.TemporaryDirectory(prefix="promfill-")))
        _shared = _stack.enter_context(running_prometheus(tmp))
    _users += 1
    try:
        yield _shared
    finally:
        _users -= 1
        if _users == 0:
            _shared = None
            _stack.close()
