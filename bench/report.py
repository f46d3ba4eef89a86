"""Report benchmark: build time of a 7-day, 8-panel report, and webhook ingest while drawing.

    python bench/report.py [--rate 100] [--rounds 3]

Everything runs on 127.0.0.1 against a real Prometheus holding a week of synthetic history
(tests/promfill.py), and every process the bench starts, it stops.

1. Build: a 7-day report of 8 panels (5 time series, 3 stat) drawn locally, built with
   ReportRunner.build, cold (the drawing processes start) and warm (median of 3). Baseline
   in the same run: the bare Prometheus queries those panels make (current and previous
   period per target, same steps, same concurrency limit), so "per-panel cost" is set
   against what Prometheus alone takes.
2. Ingest while drawing: the receiver (receiver.app.create_app) runs in its own process on a
   real socket, with a bench-only route that builds the same report inside it. Webhooks
   are posted open-loop at a fixed rate (latency counted from the planned send time, so a
   stalled loop cannot hide queued requests) in alternating windows: one while a report is
   being built, one of the same length without. p99 of each, and their ratio.

Targets: build < 5 s for 8 panels on a 2-core machine; ingest p99 during a report <= 2x.
The exit status is 0 whatever the figures: a measurement, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from receiver.report_build import QUERY_CONCURRENCY

SELF = Path(__file__).resolve()
ROOT = SELF.parent.parent

FIXTURE = ROOT / "tests" / "fixtures" / "firing_group_3_alerts.json"
TOKEN = "bench-token"
HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}

PANELS = [  # (type, title, unit, expr)
    ("timeseries", "Requests by service", "reqps",
     "sum by (service) (rate(demo_requests_total[$__rate_interval]))"),
    ("timeseries", "Latency", "s", 'demo_latency_seconds{service="api"}'),
    ("timeseries", "Memory", "bytes", "demo_memory_bytes"),
    ("timeseries", "Memory growth", "Bps", "deriv(demo_memory_bytes[$__rate_interval])"),
    ("timeseries", "Latency, hourly mean", "s", "avg_over_time(demo_latency_seconds[1h])"),
    ("stat", "Request rate", "reqps", "sum(rate(demo_requests_total[$__rate_interval]))"),
    ("stat", "Worst latency", "s", "max(demo_latency_seconds)"),
    ("stat", "Memory", "bytes", "max(demo_memory_bytes)"),
]  # fmt: skip


def dashboard() -> dict[str, Any]:
    panels = [
        {
            "id": i + 1, "type": kind, "title": title, "gridPos": {"x": 0, "y": i},
            "fieldConfig": {"defaults": {"unit": unit}},
            "targets": [{"refId": "A", "expr": expr}],
        }
        for i, (kind, title, unit, expr) in enumerate(PANELS)
    ]  # fmt: skip
    return {"uid": "bench", "title": "Bench", "panels": panels}


def write_config(tmp: Path, prom_url: str, port: int) -> Path:
    (tmp / "dash.json").write_text(json.dumps(dashboard()))
    cfg = {
        "listen": f"127.0.0.1:{port}",
        "auth": {"bearer_token": TOKEN},
        "storage": {"path": str(tmp / "alertmail.db")},
        "prometheus": {"url": prom_url},
        "smtp": {"from": "alerts@example.com", "servers": [{"host": "127.0.0.1", "port": 9}]},
        "routes": [],
        "reports": [{
            "name": "bench", "schedule": "0 8 * * MON", "range": "7d",
            "dashboards": [{"file": str(tmp / "dash.json")}], "to": ["leads@example.com"],
        }],
    }  # fmt: skip
    path = tmp / "alertmail.yml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


def p(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# -- child: the receiver with a bench-only "build the report now" route ---------------------
def serve(config_path: Path, end: float) -> None:
    from aiohttp import web

    from receiver.app import create_app
    from receiver.config import load_config
    from receiver.keys import HTTP_SESSION, RUNTIME, STORE
    from receiver.reports import ReportRunner

    config = load_config(config_path)
    app = create_app(config, config_path=config_path, run_scheduler=False)
    runners: list[ReportRunner] = []

    async def build(request: web.Request) -> web.Response:
        a = request.app
        if not runners:
            runners.append(ReportRunner(a[STORE], a[RUNTIME], a[HTTP_SESSION]))
        t = time.perf_counter()
        await runners[0].build("bench", datetime.fromtimestamp(end, UTC))
        return web.json_response({"seconds": time.perf_counter() - t})

    async def close_runner(app: web.Application) -> None:
        for r in runners:
            await r.close()

    app.router.add_post("/bench/report", build)
    app.on_shutdown.append(close_runner)
    web.run_app(app, host="127.0.0.1", port=config.listen_port, access_log=None, print=None)


# -- parent ---------------------------------------------------------------------------------
async def bare_queries(
    prom_url: str, end: float, concurrency: int | None = None
) -> tuple[float, list[float]]:
    """Wall time of all panels' queries (as the report issues them) and per-panel times."""
    from receiver.config import PrometheusConfig
    from receiver.dashboards import builtins, interpolate, parse_dashboard
    from receiver.prometheus import PrometheusClient, choose_step
    from receiver.report_data import STAT, WIDE, aligned

    dash = parse_dashboard(dashboard())
    rng = 7 * 86400.0
    limit = concurrency or PrometheusConfig().max_concurrent_queries
    async with aiohttp.ClientSession() as session:
        prom = PrometheusClient(prom_url, session, timeout=30, semaphore=asyncio.Semaphore(limit))

        async def panel(kind: str, expr: str) -> float:
            step = choose_step(rng, (STAT if kind == "stat" else WIDE)[0])
            q = interpolate(expr, dash, {}, builtins(rng, step))
            a, b = aligned(end - rng, end, step)
            t = time.perf_counter()
            await asyncio.gather(
                prom.query_range(q, a, b, step), prom.query_range(q, a - rng, b - rng, step)
            )
            return time.perf_counter() - t

        t = time.perf_counter()
        per = await asyncio.gather(*(panel(k, e) for k, _, _, e in PANELS))
        return time.perf_counter() - t, list(per)


async def build_times(config_path: Path, end: float) -> tuple[float, list[float]]:
    from receiver.config import load_config
    from receiver.reports import ReportRunner
    from receiver.runtime import build_runtime
    from receiver.store_async import AsyncStore

    config = load_config(config_path)
    store = await AsyncStore.open(config_path.parent / "build.db")
    times = []
    async with aiohttp.ClientSession() as session:
        runner = ReportRunner(store, build_runtime(config, config_path, None), session)
        try:
            for _ in range(4):
                t = time.perf_counter()
                _, pngs = await runner.build("bench", datetime.fromtimestamp(end, UTC))
                times.append(time.perf_counter() - t)
                assert len(pngs) == len(PANELS), [n for n, _ in pngs]
        finally:
            await runner.close()
            await store.close()
    return times[0], times[1:]


async def load_window(
    session: aiohttp.ClientSession, url: str, rate: float, stop: asyncio.Event, tag: str
) -> list[float]:
    """Open loop at ``rate``/s until ``stop``; latencies from each request's planned time."""
    body = json.loads(FIXTURE.read_text())
    latencies: list[float] = []
    tasks: list[asyncio.Task[None]] = []
    start = time.perf_counter()

    async def one(i: int, planned: float) -> None:
        payload = json.dumps({**body, "groupKey": f"{tag}-{i}"})
        async with session.post(url, data=payload, headers=HEADERS) as resp:
            await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"webhook answered {resp.status}")
        latencies.append(time.perf_counter() - planned)

    i = 0
    while not stop.is_set():
        planned = start + i / rate
        delay = planned - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, planned)))
        i += 1
    await asyncio.gather(*tasks)
    return latencies


async def ingest(base: str, prom_url: str, end: float, rate: float, rounds: int) -> dict[str, Any]:
    """Per round three windows of equal length: a report being built inside the receiver,
    nothing, and only the report's Prometheus queries (issued from here, not the receiver):
    the last one separates Prometheus's own CPU use from the report's."""
    out: dict[str, Any] = {"report": [], "idle": [], "queries": [], "builds": []}
    conn = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=conn) as session:
        async with session.post(f"{base}/bench/report") as r:  # warm: drawing processes up
            out["cold_build"] = (await r.json())["seconds"]
        for n in range(rounds):
            for what in ("report", "idle", "queries"):
                stop = asyncio.Event()
                url = f"{base}/webhook"
                window = asyncio.create_task(load_window(session, url, rate, stop, f"{what}{n}"))
                await asyncio.sleep(0.5)  # the load is running before the work starts
                if what == "report":
                    async with session.post(f"{base}/bench/report") as r:
                        seconds = (await r.json())["seconds"]
                    out["builds"].append(seconds)
                elif what == "idle":
                    await asyncio.sleep(out["builds"][-1])
                else:  # the report's queries, once, one at a time as the report runs them
                    t = time.perf_counter()
                    await bare_queries(prom_url, end, concurrency=QUERY_CONCURRENCY)
                    await asyncio.sleep(max(0.0, out["builds"][-1] - (time.perf_counter() - t)))
                stop.set()
                out[what].extend(await window)
                await asyncio.sleep(1.0)  # background dispatch of the window settles
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_ready(base: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"receiver exited with {proc.returncode}")
            try:
                async with session.get(f"{base}/readyz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("receiver not ready after 30 s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=float, default=100.0, help="webhooks per second")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--prom-cores",
        type=int,
        default=1,
        help="GOMAXPROCS for Prometheus (default 1: as if it had a core of its own)",
    )
    ap.add_argument("--serve", nargs=2, metavar=("CONFIG", "END"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(Path(args.serve[0]), float(args.serve[1]))
        return
    from tests.promfill import running_prometheus

    print(f"cpus: {os.cpu_count()}, load average at start: {os.getloadavg()[0]:.2f}")
    # Inherited by the Prometheus that running_prometheus starts. On a 2-core machine a
    # Prometheus free to use both cores stalls every other process while it answers a
    # week of range queries, whoever asks; --prom-cores 2 measures that too.
    os.environ["GOMAXPROCS"] = str(args.prom_cores)
    with tempfile.TemporaryDirectory(prefix="bench-report-") as d:
        tmp = Path(d)
        with running_prometheus(tmp) as fill:
            port = free_port()
            config_path = write_config(tmp, fill.url, port)
            end = fill.end
            wall, per = asyncio.run(bare_queries(fill.url, end))
            cold, warm = asyncio.run(build_times(config_path, end))
            build = statistics.median(warm)
            print("\n1. Build a 7-day report, 8 panels drawn locally (+ alert section)")
            print(f"   bare Prometheus queries, all panels: {wall * 1000:8.0f} ms wall (4 at once)")
            print(f"   bare queries per panel (mean):      {statistics.mean(per) * 1000:8.0f} ms")
            print(f"   report build, cold (pool starts):   {cold * 1000:8.0f} ms")
            print(f"   report build, warm (median of {len(warm)}):  {build * 1000:8.0f} ms"
                  f"   target < 5000 ms: {'OK' if build < 5 else 'MISSED'}")  # fmt: skip
            per_panel = build / len(PANELS)
            print(f"   per-panel cost: {per_panel * 1000:.0f} ms = "
                  f"{per_panel / statistics.mean(per):.1f}x its bare query time; build = "
                  f"{build / wall:.1f}x all queries' wall time")  # fmt: skip

            log = (tmp / "receiver.log").open("wb")
            proc = subprocess.Popen(
                [sys.executable, str(SELF), "--serve", str(config_path), str(end)],
                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
            )  # fmt: skip
            try:
                base = f"http://127.0.0.1:{port}"
                asyncio.run(wait_ready(base, proc))
                res = asyncio.run(ingest(base, fill.url, end, args.rate, args.rounds))
            finally:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                log.close()
            rep, idle, queries = res["report"], res["idle"], res["queries"]
            print(f"\n2. Webhook ingest at {args.rate:.0f}/s, open loop, {args.rounds} rounds;"
                  f" Prometheus on {args.prom_cores} core(s)")  # fmt: skip
            print(f"   report builds inside the receiver: cold {res['cold_build'] * 1000:.0f} ms,"
                  f" then {', '.join(f'{s * 1000:.0f}' for s in res['builds'])} ms")  # fmt: skip
            windows = (("no report", idle), ("report", rep), ("queries only", queries))
            for name, lat in windows:
                ms = [v * 1000 for v in lat]
                print(f"   {name:>12}: {len(ms):5d} webhooks  p50 {p(ms, 0.5):6.2f} ms"
                      f"  p99 {p(ms, 0.99):6.2f} ms  max {max(ms):6.2f} ms")  # fmt: skip
            ratio = p(rep, 0.99) / p(idle, 0.99)
            print(f"   p99 ratio report/no report: {ratio:.2f}x   target <= 2x: "
                  f"{'OK' if ratio <= 2 else 'MISSED'}")  # fmt: skip
            print(
                f"   p99 ratio queries only/no report: {p(queries, 0.99) / p(idle, 0.99):.2f}x"
                " (Prometheus's CPU alone, no drawing)"
            )
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
