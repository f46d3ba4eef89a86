"""Receiver benchmark: webhook ingest and end-to-end email latency, each against a baseline.

    python bench/receiver.py [--quick] [--only webhook|alertmanager] [--keep DIR]

Everything runs on 127.0.0.1 and every server the bench starts, it stops:

1. Ingest throughput and p50/p99 latency at 1, 8 and 32 concurrent senders, alertmail
   (``python -m receiver.cli receive``) against a bare aiohttp app that only reads the body
   and answers 200. Both are separate processes started the same way, so the load
   generator never shares their event loop. Two receivers: ``routes: []`` (pure ingest)
   and one route to an SMTP sink process (dispatch, rendering and delivery run while the
   webhooks arrive).
2. p99 at a fixed, open-loop rate of 200 webhooks/s.
3. A burst of 1,000 concurrent webhooks on fresh connections.
4. One alert posted to a real Alertmanager until its email is accepted by an SMTP sink:
   webhook -> alertmail -> SMTP, against Alertmanager's own ``email_configs``.
5. A storm of 200 groups / 1,000 alerts through Alertmanager: time until the last email
   is accepted and the SMTP connections used, alertmail against native email.

A summary table prints each figure, its baseline, the ratio and the target. The exit
status is 0 whatever the figures: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session

# The loop receiver/event_loop.py runs `alertmail receive` on (that module is not
# importable from here: this file's name shadows the package).
try:
    from uvloop import new_event_loop as server_loop
except ImportError:
    from asyncio import new_event_loop as server_loop

SELF = Path(__file__).resolve()
ROOT = SELF.parent.parent
FLOOR = SELF.parent / "ingest_floor.py"
FIXTURE = ROOT / "tests" / "fixtures" / "firing_group_3_alerts.json"
HOST = "127.0.0.1"
TOKEN = "bench-token"
HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
LISTEN_BACKLOG = 2048  # what receiver/serve.py uses; the bare app gets the same
STORM_GROUP_WAIT = 1.0  # see phase_storm: one flush per group, all 5 alerts in it


# -- figures -----------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass
class LoadResult:
    """What one load run saw: per-request latencies (s), failures, wall time (s)."""

    latencies: list[float] = field(default_factory=list)
    failures: int = 0
    elapsed: float = 0.0

    @property
    def count(self) -> int:
        return len(self.latencies) + self.failures

    @property
    def rps(self) -> float:
        return self.count / self.elapsed if self.elapsed else math.nan

    def p(self, q: float) -> float:
        return percentile(self.latencies, q) * 1000.0

    def merge(self, other: LoadResult) -> None:
        self.latencies += other.latencies
        self.failures += other.failures
        self.elapsed += other.elapsed

    def line(self) -> str:
        return (
            f"{self.rps:8.0f} req/s  p50 {self.p(0.5):6.2f} ms  p99 {self.p(0.99):6.2f} ms"
            f"  non-200 {self.failures}"
        )


@dataclass
class Row:
    """One line of the summary table."""

    figure: str
    value: float
    baseline: float | None
    unit: str
    target: str
    ok: bool | None  # None: a figure shown for information, with no target

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or not self.baseline or math.isnan(self.baseline):
            return None
        return self.value / self.baseline


def label(target: str) -> str:
    """Column label of a target in the per-phase lines."""
    return f"{target if target in ('bare', 'floor') else 'alertmail/' + target:<19}"


def fmt(value: float | None, unit: str) -> str:
    if value is None or math.isnan(value):
        return "-"
    if unit == "ms":
        return f"{value:.2f} ms"
    if unit == "s":
        return f"{value:.3f} s"
    return f"{value:.0f}{(' ' + unit) if unit else ''}"


def print_summary(rows: Sequence[Row]) -> None:
    header = ("figure", "alertmail", "baseline", "ratio", "target", "")
    table = [
        (
            r.figure,
            fmt(r.value, r.unit),
            fmt(r.baseline, r.unit),
            "-" if r.ratio is None else f"{r.ratio:.2f}x",
            r.target,
            "info" if r.ok is None else "PASS" if r.ok else "FAIL",
        )
        for r in rows
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *table, strict=True)]
    print("\n== summary ==")
    for cells in (header, *table):
        print("  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())


# -- SMTP sink ---------------------------------------------------------------------------


@dataclass
class SinkStats:
    """What an SMTP sink saw; updated from the event loop the sink runs in."""

    port: int = 0
    accepted: list[float] = field(default_factory=list)  # perf_counter() at each 250 to DATA
    connections: int = 0
    peak_connections: int = 0
    active: int = 0
    transports: set[asyncio.BaseTransport] = field(default_factory=set)
    _waiters: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list)

    def reset(self) -> None:
        """Start counting afresh; connections already open (a client's pool) count as used."""
        self.accepted.clear()
        self.connections = self.active
        self.peak_connections = self.active

    async def wait_count(self, count: int, timeout: float) -> bool:
        """Wait until `count` messages were accepted; False on timeout."""
        if len(self.accepted) >= count:
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((count, fut))
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return False
        return True

    def record_accept(self) -> None:
        self.accepted.append(time.perf_counter())
        n = len(self.accepted)
        for count, fut in list(self._waiters):
            if n >= count:
                self._waiters.remove((count, fut))
                if not fut.done():
                    fut.set_result(None)


class _SinkHandler:
    def __init__(self, stats: SinkStats) -> None:
        self.stats = stats

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.stats.record_accept()
        return "250 2.0.0 Ok: queued"


class _CountingSMTP(SMTP):
    """aiosmtpd's protocol, counting connections so pooling shows in the figures."""

    def __init__(self, stats: SinkStats) -> None:
        super().__init__(_SinkHandler(stats), hostname="localhost", timeout=60.0)
        self._stats = stats

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        s = self._stats
        s.connections += 1
        s.active += 1
        s.peak_connections = max(s.peak_connections, s.active)
        s.transports.add(transport)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self._stats.active -= 1
        self._stats.transports.discard(self.transport)
        super().connection_lost(error)


@contextlib.asynccontextmanager
async def smtp_sink(port: int = 0) -> AsyncIterator[SinkStats]:
    """An aiosmtpd sink in the running loop: accept times are taken where they happen."""
    stats = SinkStats()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _CountingSMTP(stats), HOST, port, backlog=LISTEN_BACKLOG
    )
    stats.port = server.sockets[0].getsockname()[1]
    try:
        yield stats
    finally:
        server.close()
        for transport in list(stats.transports):  # clients may still hold pooled sessions
            transport.close()
        await server.wait_closed()


# -- child processes (this file re-run with --serve) -------------------------------------


async def _bare_webhook(request: web.Request) -> web.Response:
    await request.read()  # a real handler reads the body; so does the baseline
    return web.Response(text="ok")


async def _health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _until_signal() -> None:
    """Return on SIGTERM or SIGINT: how the bench stops its children."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def serve_bare(port: int) -> None:
    """The baseline: aiohttp set up as receiver/serve.py does, a handler that answers 200."""
    app = web.Application(client_max_size=1 << 30)
    app.router.add_post("/webhook", _bare_webhook)
    app.router.add_get("/healthz", _health)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, HOST, port, backlog=LISTEN_BACKLOG, reuse_address=True)
        await site.start()
        await _until_signal()
    finally:
        await runner.cleanup()


async def serve_smtp(port: int) -> None:
    """An SMTP sink in its own process, so its work does not slow the load generator."""
    async with smtp_sink(port):
        await _until_signal()


def free_port() -> int:
    # A tiny race with other programs binding ports; acceptable on a bench machine.
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _start_process(argv: Sequence[str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


def _stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


Probe = Callable[[aiohttp.ClientSession], Awaitable[bool]]


def http_ok(url: str) -> Probe:
    async def probe(session: aiohttp.ClientSession) -> bool:
        async with session.get(url) as resp:
            return resp.status == 200

    return probe


def tcp_open(port: int) -> Probe:
    async def probe(session: aiohttp.ClientSession) -> bool:
        _, writer = await asyncio.open_connection(HOST, port)
        writer.close()
        await writer.wait_closed()
        return True

    return probe


async def _wait_ready(
    proc: subprocess.Popen[bytes], probe: Probe, log_path: Path, timeout: float = 20.0
) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args!r} exited {proc.returncode}:\n{_tail(log_path)}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                if await probe(session):
                    return
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{proc.args!r} not ready after {timeout:.0f}s:\n{_tail(log_path)}")


@contextlib.asynccontextmanager
async def child(argv: Sequence[str], ready: Probe, log_path: Path) -> AsyncIterator[None]:
    """A subprocess, ready once `ready` says so, stopped (SIGTERM, then SIGKILL) however
    the block ends."""
    proc = _start_process(argv, log_path)
    try:
        await _wait_ready(proc, ready, log_path)
        yield
    finally:
        await asyncio.to_thread(_stop_process, proc)


# -- the receiver ------------------------------------------------------------------------


def write_receiver_config(workdir: Path, name: str, port: int, smtp_port: int | None) -> Path:
    """A receiver config: no routes (pure ingest), or one email route to `smtp_port`."""
    data: dict[str, Any] = {
        "listen": f"{HOST}:{port}",
        "auth": {"bearer_token": TOKEN},
        "storage": {"path": str(workdir / f"{name}.db")},
        "shutdown_timeout": "2s",
        "routes": [],
    }
    if smtp_port is not None:
        data["smtp"] = {
            "from": "Alerts <alerts@example.com>",
            "servers": [{"host": HOST, "port": smtp_port, "starttls": False}],
            "pool": {"max_connections": 20},
        }
        data["routes"] = [{"email": ["oncall@example.com"]}]
    path = workdir / f"{name}.yml"
    path.write_text(json.dumps(data, indent=2))  # JSON is YAML
    return path


@dataclass
class Receiver:
    url: str
    db: Path


@contextlib.asynccontextmanager
async def receiver(workdir: Path, name: str, smtp_port: int | None) -> AsyncIterator[Receiver]:
    port = free_port()
    cfg = write_receiver_config(workdir, name, port, smtp_port)
    argv = [sys.executable, "-m", "receiver.cli", "receive", "--config", str(cfg)]
    base = f"http://{HOST}:{port}"
    async with child(argv, http_ok(f"{base}/healthz"), workdir / f"{name}.log"):
        yield Receiver(base, workdir / f"{name}.db")


@contextlib.asynccontextmanager
async def bare_server(workdir: Path) -> AsyncIterator[str]:
    port = free_port()
    argv = [sys.executable, str(SELF), "--serve", "bare", "--port", str(port)]
    base = f"http://{HOST}:{port}"
    async with child(argv, http_ok(f"{base}/healthz"), workdir / "bare.log"):
        yield base


@contextlib.asynccontextmanager
async def floor_server(workdir: Path) -> AsyncIterator[str]:
    port = free_port()
    argv = [sys.executable, str(FLOOR), "--port", str(port), "--db", str(workdir / "floor.db")]
    base = f"http://{HOST}:{port}"
    async with child(argv, http_ok(f"{base}/healthz"), workdir / "floor.log"):
        yield base


@contextlib.asynccontextmanager
async def smtp_sink_process(workdir: Path) -> AsyncIterator[int]:
    port = free_port()
    argv = [sys.executable, str(SELF), "--serve", "smtp", "--port", str(port)]
    async with child(argv, tcp_open(port), workdir / "smtp-sink.log"):
        yield port


def _backlog(db: Path) -> int:
    # Read-only peek at the receiver's queue (schema of receiver/schema.py); the bench
    # only uses it to let one measurement's background work finish before the next.
    # 'retrying' is left out: a backoff would stall the bench, and the sink never fails.
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM notifications WHERE state='pending') + "
            "(SELECT count(*) FROM outbox WHERE state IN ('queued','sending'))"
        ).fetchone()
    return int(row[0])


async def wait_drained(db: Path, timeout: float) -> float:
    """Wait until the receiver has dispatched and sent everything; returns seconds waited."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if await asyncio.to_thread(_backlog, db) == 0:
                break
        except sqlite3.Error:
            pass  # busy or mid-checkpoint: look again
        await asyncio.sleep(0.1)
    return time.monotonic() - start


# -- webhook load ------------------------------------------------------------------------


def load_fixture() -> dict[str, Any]:
    return dict(json.loads(FIXTURE.read_text()))


def make_bodies(template: dict[str, Any], tag: str, n: int) -> list[bytes]:
    """n distinct notifications: only groupKey varies, so none is a duplicate."""
    bodies = []
    for i in range(n):
        payload = dict(template)
        payload["groupKey"] = f'{{}}:{{alertname="HighErrorRate", bench="{tag}-{i}"}}'
        bodies.append(json.dumps(payload).encode())
    return bodies


async def _post(session: aiohttp.ClientSession, url: str, body: bytes) -> bool:
    try:
        async with session.post(url, data=body, headers=HEADERS) as resp:
            await resp.read()
            return resp.status == 200
    except (aiohttp.ClientError, OSError, TimeoutError):
        return False


async def closed_loop(url: str, bodies: Sequence[bytes], concurrency: int) -> LoadResult:
    """`concurrency` senders, each posting its next body as soon as the last is answered."""
    result = LoadResult()
    warmup, timed = bodies[:concurrency], bodies[concurrency:]
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        # Open the connections first, so the timed part measures requests, not connects.
        await asyncio.gather(*(_post(session, url, b) for b in warmup))
        queue = iter(timed)

        async def sender() -> None:
            for body in queue:  # one iterator shared by all senders
                t = time.perf_counter()
                if await _post(session, url, body):
                    result.latencies.append(time.perf_counter() - t)
                else:
                    result.failures += 1

        start = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        result.elapsed = time.perf_counter() - start
    return result


async def open_loop(url: str, bodies: Sequence[bytes], rate: float) -> LoadResult:
    """One request every 1/rate s whatever the answers; latency counts from the planned
    send time, so a stalled server cannot hide its queue (coordinated omission)."""
    result = LoadResult()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        await _post(session, url, bodies[0])  # one warm connection, as Alertmanager keeps

        async def one(body: bytes, planned: float) -> None:
            if await _post(session, url, body):
                result.latencies.append(time.perf_counter() - planned)
            else:
                result.failures += 1

        tasks = []
        start = time.perf_counter()
        for i, body in enumerate(bodies[1:]):
            planned = start + i / rate
            delay = planned - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(body, planned)))
        await asyncio.gather(*tasks)
        result.elapsed = time.perf_counter() - start
    return result


async def burst(url: str, bodies: Sequence[bytes]) -> LoadResult:
    """All bodies at once, each on a fresh connection (a thousand groups flushing)."""
    result = LoadResult()
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(body: bytes) -> None:
            t = time.perf_counter()
            if await _post(session, url, body):
                result.latencies.append(time.perf_counter() - t)
            else:
                result.failures += 1

        start = time.perf_counter()
        await asyncio.gather(*(one(b) for b in bodies))
        result.elapsed = time.perf_counter() - start
    return result


# -- Alertmanager ------------------------------------------------------------------------


def alertmanager_binary() -> str:
    for name in ("alertmanager", "prometheus-alertmanager"):
        path = shutil.which(name)
        if path:
            return path
    raise RuntimeError("alertmanager not found (Debian package prometheus-alertmanager)")


def alertmanager_config(webhook_url: str, native_smtp_port: int) -> str:
    """Routes by the `via` label: webhook to alertmail, or Alertmanager's own email."""
    route = "group_by: [alertname, group], group_wait: 0s, group_interval: 1s"
    storm = f"group_by: [alertname, group], group_wait: {STORM_GROUP_WAIT:g}s, group_interval: 1s"
    return f"""
global:
  smtp_from: alertmanager@example.com
  smtp_require_tls: false
route:
  receiver: nowhere
  repeat_interval: 4h
  routes:
    - {{matchers: ['via="alertmail"', 'kind="storm"'], receiver: alertmail, {storm}}}
    - {{matchers: ['via="native"', 'kind="storm"'], receiver: native, {storm}}}
    - {{matchers: ['via="alertmail"'], receiver: alertmail, {route}}}
    - {{matchers: ['via="native"'], receiver: native, {route}}}
receivers:
  - name: nowhere
  - name: alertmail
    webhook_configs:
      - url: {webhook_url}
        send_resolved: false
        http_config: {{authorization: {{credentials: {TOKEN}}}}}
  - name: native
    email_configs:
      - to: oncall@example.com
        smarthost: {HOST}:{native_smtp_port}
        require_tls: false
        send_resolved: false
"""


@contextlib.asynccontextmanager
async def alertmanager(workdir: Path, config: str) -> AsyncIterator[str]:
    port = free_port()
    cfg = workdir / "alertmanager.yml"
    cfg.write_text(config)
    argv = [
        alertmanager_binary(),
        f"--config.file={cfg}",
        f"--storage.path={workdir / 'am-data'}",
        f"--web.listen-address={HOST}:{port}",
        "--cluster.listen-address=",  # no gossip: a single instance
        "--log.level=warn",
    ]
    base = f"http://{HOST}:{port}"
    async with child(argv, http_ok(f"{base}/-/ready"), workdir / "alertmanager.log"):
        yield base


async def post_alerts(
    session: aiohttp.ClientSession, am: str, alerts: list[dict[str, Any]]
) -> None:
    async with session.post(f"{am}/api/v2/alerts", json=alerts) as resp:
        if resp.status != 200:
            raise RuntimeError(f"Alertmanager refused alerts: {resp.status} {await resp.text()}")


def alert(name: str, via: str, group: str, instance: str, kind: str) -> dict[str, Any]:
    return {
        "labels": {
            "alertname": name,
            "via": via,
            "group": group,
            "instance": instance,
            "kind": kind,
            "severity": "critical",
        },
        "annotations": {"summary": f"{name} on {instance}", "description": "bench alert"},
    }


# -- phases ------------------------------------------------------------------------------


@dataclass
class Settings:
    requests: int  # per concurrency level, bare and pure-ingest receiver
    delivery_requests: int  # the same for the receiver with a route: its drain is slow
    rate_seconds: float
    burst: int
    latency_reps: int
    storm_groups: int
    drain_timeout: float


FULL = Settings(
    requests=2000,
    delivery_requests=500,
    rate_seconds=5.0,
    burst=1000,
    latency_reps=10,
    storm_groups=200,
    drain_timeout=60.0,
)
QUICK = Settings(
    requests=300,
    delivery_requests=200,
    rate_seconds=2.0,
    burst=1000,
    latency_reps=3,
    storm_groups=200,
    drain_timeout=30.0,
)
CONCURRENCY = (1, 8, 32)
ROUNDS = 4  # phase 1 alternates targets in rounds, so load from elsewhere hits all alike
RATE = 200.0
INGEST_RATIO = 0.40
RATE_P99_MS = 25.0
BURST_SECONDS = 2.0
LATENCY_RATIO = 3.0
STORM_RATIO = 2.0
STORM_CONNECTIONS = 20


@dataclass
class Targets:
    """The systems under test in phases 1-3: bare baseline and receivers by variant, and
    in phase 1 the floor (bench/ingest_floor.py): durable group-committed ingest with no
    logic, so the figures say how much of the gap to bare is alertmail's own work."""

    bare: str
    floor: str
    receivers: dict[str, Receiver]


@dataclass(frozen=True)
class Target:
    name: str  # "bare" or the receiver variant
    url: str
    db: Path | None  # the receiver's database, to wait for its backlog; None for bare


def targets_of(t: Targets, *, floor: bool = False) -> list[Target]:
    first = [Target("bare", t.bare, None)] + ([Target("floor", t.floor, None)] if floor else [])
    return first + [Target(variant, rx.url, rx.db) for variant, rx in t.receivers.items()]


Load = Callable[[Target, int], Awaitable[LoadResult]]


async def alternate(
    targets: Sequence[Target],
    rounds: int,
    load: Load,
    drain_timeout: float,
    *,
    drain_last: bool = True,
) -> dict[str, tuple[LoadResult, float]]:
    """Run `load(target, round)` for every target, `rounds` times, rotating who goes first,
    so load from elsewhere on the machine falls on all targets alike. After each receiver
    run, wait for its backlog (dispatch, delivery) so it does not load the next run.
    Returns per target the merged result and the seconds spent waiting for the backlog."""
    out = {t.name: (LoadResult(), 0.0) for t in targets}
    for r in range(rounds):
        order = [*targets[r % len(targets) :], *targets[: r % len(targets)]]
        for target in order:
            res = await load(target, r)
            last = r == rounds - 1 and target is order[-1]
            drained = 0.0
            if target.db is not None and (drain_last or not last):
                drained = await wait_drained(target.db, drain_timeout)
            total, waited = out[target.name]
            total.merge(res)
            out[target.name] = (total, waited + drained)
    return out


async def phase_ingest(t: Targets, s: Settings, fixture: dict[str, Any]) -> list[Row]:
    print(
        f"\n== 1. ingest, closed loop, 3-alert body; {s.requests} webhooks per level"
        f" (delivery: {s.delivery_requests}) in {ROUNDS} alternating rounds =="
    )
    rows: list[Row] = []
    for c in CONCURRENCY:

        async def load(target: Target, r: int, c: int = c) -> LoadResult:
            n = s.delivery_requests if target.name == "delivery" else s.requests
            bodies = make_bodies(fixture, f"{target.name}-c{c}-r{r}", n // ROUNDS + c)
            return await closed_loop(f"{target.url}/webhook", bodies, c)

        results = await alternate(targets_of(t, floor=True), ROUNDS, load, s.drain_timeout)
        bare, floor = results["bare"][0], results["floor"][0]
        print(f"  c={c:<3} {label('bare')}{bare.line()}")
        print(f"  c={c:<3} {label('floor')}{floor.line()}  {floor.rps / bare.rps:.2f}x bare")
        for variant in t.receivers:
            res, drained = results[variant]
            ratio = res.rps / bare.rps
            print(
                f"  c={c:<3} {label(variant)}{res.line()}  {ratio:.2f}x bare,"
                f" {res.rps / floor.rps:.2f}x floor  (backlog drained after: {drained:.1f}s)"
            )
            # The target is for ingest ("parse, store, answer"); the delivery receiver also
            # renders and sends an email per webhook while they arrive: shown, not judged.
            judged = variant != "delivery"
            rows.append(
                Row(
                    f"ingest c={c} {variant} (req/s)",
                    res.rps,
                    bare.rps,
                    "",
                    f">= {INGEST_RATIO:.2f}x" if judged else "-",
                    (ratio >= INGEST_RATIO and res.failures == 0) if judged else None,
                )
            )
    return rows


async def phase_rate(t: Targets, s: Settings, fixture: dict[str, Any]) -> list[Row]:
    slices = max(1, round(s.rate_seconds))
    print(f"\n== 2. open loop, {RATE:.0f} webhooks/s, {slices} alternating slices of 1s each ==")

    async def load(target: Target, r: int) -> LoadResult:
        bodies = make_bodies(fixture, f"{target.name}-rate-{r}", int(RATE) + 1)
        return await open_loop(f"{target.url}/webhook", bodies, RATE)

    results = await alternate(targets_of(t), slices, load, s.drain_timeout)
    bare = results["bare"][0]
    print(f"  {label('bare')}{bare.line()}")
    rows = []
    for variant in t.receivers:
        res, drained = results[variant]
        print(f"  {label(variant)}{res.line()}  (backlog drained after: {drained:.1f}s)")
        p99 = res.p(0.99)
        rows.append(
            Row(
                f"p99 at {RATE:.0f}/s {variant}",
                p99,
                bare.p(0.99),
                "ms",
                f"< {RATE_P99_MS:.0f} ms",
                p99 < RATE_P99_MS and res.failures == 0,
            )
        )
    return rows


async def phase_burst(t: Targets, s: Settings, fixture: dict[str, Any]) -> list[Row]:
    print(f"\n== 3. burst of {s.burst} concurrent webhooks, fresh connections ==")

    async def load(target: Target, r: int) -> LoadResult:
        return await burst(
            f"{target.url}/webhook", make_bodies(fixture, f"{target.name}-burst", s.burst)
        )

    # Nothing is measured after the last burst: its backlog need not drain.
    results = await alternate(targets_of(t), 1, load, s.drain_timeout, drain_last=False)
    bare = results["bare"][0]
    print(f"  {label('bare')}all answered in {bare.elapsed:.3f}s  {bare.line()}")
    rows = []
    for variant in t.receivers:
        res = results[variant][0]
        print(f"  {label(variant)}all answered in {res.elapsed:.3f}s  {res.line()}")
        rows.append(
            Row(
                f"burst {s.burst} {variant} (time)",
                res.elapsed,
                bare.elapsed,
                "s",
                f"< {BURST_SECONDS:.0f} s",
                res.elapsed < BURST_SECONDS,
            )
        )
        rows.append(
            Row(f"burst {s.burst} {variant} (non-200)", res.failures, bare.failures, "", "= 0",
                res.failures == 0)
        )  # fmt: skip
    return rows


async def _one_alert_latency(
    session: aiohttp.ClientSession, am: str, sink: SinkStats, via: str, i: int
) -> float:
    """Post one new alert (a new group) and return seconds until its email is accepted."""
    expected = len(sink.accepted) + 1
    start = time.perf_counter()
    await post_alerts(session, am, [alert("BenchLatency", via, f"lat-{i}", "host-1", "latency")])
    if not await sink.wait_count(expected, timeout=15.0):
        raise RuntimeError(f"no email for alert {i} via {via} within 15s")
    return sink.accepted[expected - 1] - start


async def phase_latency(
    am: str, sinks: dict[str, SinkStats], s: Settings, rx: Receiver
) -> list[Row]:
    print(f"\n== 4. one alert -> Alertmanager -> email accepted, {s.latency_reps} alerts each ==")
    times: dict[str, list[float]] = {via: [] for via in sinks}
    async with aiohttp.ClientSession() as session:
        # Alternate the paths so drift (page cache, CPU clock) hits both alike; the first
        # round also opens alertmail's pooled SMTP connection, so it is not counted.
        for i in range(s.latency_reps + 1):
            for via, sink in sinks.items():
                t = await _one_alert_latency(session, am, sink, via, i)
                if i:
                    times[via].append(t)
            await wait_drained(rx.db, 5.0)
    med = {via: statistics.median(ts) * 1000.0 for via, ts in times.items()}
    for via, ts in times.items():
        ms = ", ".join(f"{x * 1000:.1f}" for x in ts)
        print(f"  {via:<9} median {med[via]:6.2f} ms  max {max(ts) * 1000:6.2f} ms  [{ms}]")
    ratio = med["alertmail"] / med["native"]
    return [
        Row(
            "alert->email median",
            med["alertmail"],
            med["native"],
            "ms",
            f"<= {LATENCY_RATIO:.0f}x native",
            ratio <= LATENCY_RATIO,
        )
    ]


@dataclass
class StormResult:
    seconds: float  # last email accepted, counted from the moment the groups flush
    emails: int
    peak: int
    connections: int
    post_seconds: float


async def _storm(
    session: aiohttp.ClientSession, am: str, sink: SinkStats, via: str, groups: int
) -> StormResult:
    sink.reset()
    alerts = [
        alert("BenchStorm", via, f"storm-{g}", f"host-{k}", "storm")
        for g in range(groups)
        for k in range(5)
    ]
    start = time.perf_counter()
    await post_alerts(session, am, alerts)
    posted = time.perf_counter() - start
    if not await sink.wait_count(groups, timeout=60.0):
        print(f"  {via}: only {len(sink.accepted)} of {groups} emails within 60s")
    # A group flushed before all 5 alerts were in would send again at group_interval:
    # wait past it, so such a second email is counted and not left for the next storm.
    await asyncio.sleep(1.5)
    last = max(sink.accepted, default=math.nan)
    return StormResult(
        seconds=last - start - STORM_GROUP_WAIT,
        emails=len(sink.accepted),
        peak=sink.peak_connections,
        connections=sink.connections,
        post_seconds=posted,
    )


async def phase_storm(am: str, sinks: dict[str, SinkStats], s: Settings) -> list[Row]:
    n = s.storm_groups
    print(f"\n== 5. storm: {n} groups / {5 * n} alerts posted to Alertmanager at once ==")
    print(
        f"  (storm route group_wait {STORM_GROUP_WAIT:g}s so each group flushes once with"
        " its 5 alerts; times below are from that flush, i.e. post start + group_wait)"
    )
    res: dict[str, StormResult] = {}
    async with aiohttp.ClientSession() as session:
        for via, sink in sinks.items():
            r = await _storm(session, am, sink, via, n)
            res[via] = r
            print(
                f"  {via:<9} last email after {r.seconds:6.3f}s  emails {r.emails}"
                f"  SMTP connections: peak {r.peak}, total {r.connections}"
                f"  (POST took {r.post_seconds * 1000:.0f} ms)"
            )
    a, nat = res["alertmail"], res["native"]
    return [
        Row(
            f"storm {n} groups (time to last email)",
            a.seconds,
            nat.seconds,
            "s",
            f"<= {STORM_RATIO:.0f}x native",
            a.seconds <= STORM_RATIO * nat.seconds and a.emails >= n,
        ),
        Row(
            f"storm {n} groups (peak SMTP conns)",
            a.peak,
            nat.peak,
            "",
            f"<= {STORM_CONNECTIONS}",
            a.peak <= STORM_CONNECTIONS,
        ),
        Row(
            f"storm {n} groups (total SMTP conns)",
            a.connections,
            nat.connections,
            "",
            f"<= {STORM_CONNECTIONS}",
            a.connections <= STORM_CONNECTIONS,
        ),
    ]


# -- main --------------------------------------------------------------------------------


async def run_webhook_phases(workdir: Path, s: Settings, rows: list[Row]) -> None:
    fixture = load_fixture()
    async with contextlib.AsyncExitStack() as stack:
        bare = await stack.enter_async_context(bare_server(workdir))
        floor = await stack.enter_async_context(floor_server(workdir))
        sink_port = await stack.enter_async_context(smtp_sink_process(workdir))
        ingest = await stack.enter_async_context(receiver(workdir, "rx-ingest", None))
        delivery = await stack.enter_async_context(receiver(workdir, "rx-delivery", sink_port))
        t = Targets(bare, floor, {"ingest": ingest, "delivery": delivery})
        print("receivers: 'ingest' = routes: [] ; 'delivery' = one email route to an SMTP sink")
        rows += await phase_ingest(t, s, fixture)
        rows += await phase_rate(t, s, fixture)
        rows += await phase_burst(t, s, fixture)


async def run_alertmanager_phases(workdir: Path, s: Settings, rows: list[Row]) -> None:
    async with contextlib.AsyncExitStack() as stack:
        am_sink = await stack.enter_async_context(smtp_sink())
        native_sink = await stack.enter_async_context(smtp_sink())
        rx = await stack.enter_async_context(receiver(workdir, "rx-am", am_sink.port))
        config = alertmanager_config(f"{rx.url}/webhook", native_sink.port)
        am = await stack.enter_async_context(alertmanager(workdir, config))
        sinks = {"alertmail": am_sink, "native": native_sink}
        rows += await phase_latency(am, sinks, s, rx)
        rows += await phase_storm(am, sinks, s)


async def run(s: Settings, workdir: Path, only: str | None = None) -> list[Row]:
    rows: list[Row] = []  # the phases append as they finish, so a failure keeps the rest
    for name, phases in (
        ("webhook phases", run_webhook_phases),
        ("Alertmanager phases", run_alertmanager_phases),
    ):
        if only is not None and not name.lower().startswith(only):
            continue
        try:
            await phases(workdir, s, rows)
        except Exception as exc:
            # A measurement: report what could be measured, and why the rest could not.
            print(f"\n!! {name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    return rows


@contextlib.contextmanager
def _workdir(keep: str | None) -> Iterator[Path]:
    if keep:
        path = Path(keep)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    # Not tmpfs on purpose when /tmp is a disk: SQLite's fsyncs are part of the cost.
    with tempfile.TemporaryDirectory(prefix="alertmail-bench-") as tmp:
        yield Path(tmp)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="fewer requests and repetitions")
    p.add_argument("--keep", metavar="DIR", help="keep configs, databases and logs in DIR")
    p.add_argument(
        "--only",
        choices=("webhook", "alertmanager"),
        help="run only the webhook phases (1-3) or the Alertmanager phases (4-5)",
    )
    p.add_argument("--serve", choices=("bare", "smtp"), help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        serve = serve_bare if args.serve == "bare" else serve_smtp
        with asyncio.Runner(loop_factory=server_loop) as runner:
            runner.run(serve(args.port))
        return 0
    settings = QUICK if args.quick else FULL
    mode = "quick" if args.quick else "full"
    python = sys.version.split()[0]
    print(f"alertmail receiver bench ({mode}), Python {python}, {os.cpu_count()} CPUs")
    started, load_before = time.monotonic(), os.getloadavg()[0]
    with _workdir(args.keep) as workdir:
        rows = asyncio.run(run(settings, workdir, args.only))
        print_summary(rows)
    # Other work on the machine moves every figure; the load average says how much.
    print(
        f"\n(total {time.monotonic() - started:.0f}s; 1-min load average"
        f" {load_before:.2f} at start, {os.getloadavg()[0]:.2f} at end)"
    )
    return 0  # a measurement, not a test


if __name__ == "__main__":
    sys.exit(main())
