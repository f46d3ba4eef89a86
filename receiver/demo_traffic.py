"""Realistic log traffic for ``alertmail demo`` (and the end-to-end tests).

Writes two logs the shipped exporter config reads (deploy/exporter/exporter.yml):
  * JSON application lines: ``{"ts", "level", "service", "msg", "latency_ms", ...}``
    from a few services, mostly INFO with some DEBUG/WARN and a rare ERROR;
  * nginx access lines in the combined format plus ``rt=$request_time``.

Every ``every`` seconds (first after ``first`` seconds) one service has an error burst.
Its shape is chosen for the demo's time factor 1/20 (a rate window of 5m -> 15s): 100
errors/s for 8 s keeps the 15 s error rate above the critical threshold (10/s) for about
20 s, longer than the scaled ``for: 15s``, so ``AppErrorRateHigh`` (critical) fires and
then resolves; the rate stays above 1/s for about 23 s, shorter than the warning's scaled
``for: 30s``, so the warning never fires and the thread reads: firing, then resolved.

``python -m receiver.demo_traffic --app-log A --access-log B`` runs until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

SERVICES = ("api", "checkout", "search", "auth")
APP_LINES_PER_SECOND = 3.0  # per service
HTTP_REQUESTS_PER_SECOND = 8.0
BURST_SECONDS = 8.0
BURST_ERRORS_PER_SECOND = 100.0
TICK = 0.1

_PATHS = ("/", "/api/items", "/api/items/42", "/api/cart", "/api/checkout", "/search?q=shoes",
          "/login", "/static/app.js", "/static/logo.png", "/healthz")  # fmt: skip
_AGENTS = ("Mozilla/5.0 (X11; Linux x86_64; rv:124.0) Gecko/20100101 Firefox/124.0",
           "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15",
           "curl/8.5.0", "Prometheus/2.42.0")  # fmt: skip
_INFO = ("request handled", "cache hit", "cache miss, loaded from db", "user session refreshed",
         "order total computed", "search index queried")  # fmt: skip
_WARN = ("slow query", "retrying upstream call", "rate limit near for client")
_ERRORS = (("DB_TIMEOUT", "database timeout after 5s"), ("UPSTREAM_502", "payment gateway 502"),
           ("CONN_RESET", "connection reset by peer"))  # fmt: skip


class Traffic:
    """Appends lines to the two logs; :meth:`tick` writes ``dt`` seconds' worth."""

    def __init__(self, app_log: Path, access_log: Path, seed: int | None = None) -> None:
        self.rng = random.Random(seed)
        self._app: TextIO = app_log.open("a", encoding="utf-8")
        self._access: TextIO = access_log.open("a", encoding="utf-8")
        self._owed: dict[str, float] = {}  # fractional lines carried to the next tick

    def close(self) -> None:
        self._app.close()
        self._access.close()

    def _due(self, key: str, rate: float, dt: float) -> int:
        owed = self._owed.get(key, 0.0) + rate * dt
        n = int(owed)
        self._owed[key] = owed - n
        return n

    def app_line(self, now: float, service: str, level: str) -> str:
        rec: dict[str, object] = {
            "ts": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds"),
            "level": level,
            "service": service,
            "request_id": f"{self.rng.getrandbits(48):012x}",
            "latency_ms": round(self.rng.lognormvariate(3.0, 0.6), 1),
        }
        if level == "ERROR":
            code, msg = self.rng.choice(_ERRORS)
            rec.update(msg=msg, error={"code": code})
        else:
            rec["msg"] = self.rng.choice(_WARN if level == "WARN" else _INFO)
        return json.dumps(rec)

    def access_line(self, now: float, burst: bool) -> str:
        r = self.rng.random()
        status = (503 if burst and r < 0.3 else 500 if r < 0.003 else 404 if r < 0.03
                  else 304 if r < 0.1 else 200)  # fmt: skip
        method = "POST" if self.rng.random() < 0.15 else "GET"
        rt = self.rng.lognormvariate(-3.2, 0.8) * (8 if burst else 1)
        stamp = datetime.fromtimestamp(now, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")
        ip = f"192.0.2.{self.rng.randrange(1, 255)}"
        path, agent = self.rng.choice(_PATHS), self.rng.choice(_AGENTS)
        size = self.rng.randrange(200, 40000)
        return (f'{ip} - - [{stamp}] "{method} {path} HTTP/1.1" {status} {size} "-" '
                f'"{agent}" rt={rt:.3f}')  # fmt: skip

    def tick(self, dt: float, now: float, burst_service: str | None = None) -> None:
        lines = []
        for service in SERVICES:
            for _ in range(self._due(service, APP_LINES_PER_SECOND, dt)):
                r = self.rng.random()
                level = (
                    "ERROR" if r < 0.01 else "WARN" if r < 0.06 else "DEBUG" if r < 0.2 else "INFO"
                )
                lines.append(self.app_line(now, service, level))
        if burst_service is not None:
            for _ in range(self._due("burst", BURST_ERRORS_PER_SECOND, dt)):
                lines.append(self.app_line(now, burst_service, "ERROR"))
        self.rng.shuffle(lines)
        self._app.write("".join(f"{line}\n" for line in lines))
        self._app.flush()
        hits = self._due("http", HTTP_REQUESTS_PER_SECOND, dt)
        self._access.write("".join(f"{self.access_line(now, burst_service is not None)}\n"
                                   for _ in range(hits)))  # fmt: skip
        self._access.flush()


def burst_service(elapsed: float, first: float, every: float) -> str | None:
    """Which service bursts at ``elapsed`` seconds into the run (rotating), or None."""
    if elapsed < first:
        return None
    n, into = divmod(elapsed - first, every)
    return SERVICES[(int(n) + 1) % len(SERVICES)] if into < BURST_SECONDS else None


def run(app_log: Path, access_log: Path, stop: threading.Event, first: float = 20.0,
        every: float = 180.0) -> None:  # fmt: skip
    traffic = Traffic(app_log, access_log)
    start = last = time.monotonic()
    try:
        while not stop.wait(TICK):
            now = time.monotonic()
            traffic.tick(now - last, time.time(), burst_service(now - start, first, every))
            last = now
    finally:
        traffic.close()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m receiver.demo_traffic", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--app-log", type=Path, required=True)
    p.add_argument("--access-log", type=Path, required=True)
    p.add_argument("--first", type=float, default=20.0, help="seconds before the first burst")
    p.add_argument("--every", type=float, default=180.0, help="seconds between bursts")
    args = p.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"writing {args.app_log} and {args.access_log}; first error burst after "
          f"{args.first:.0f}s, then every {args.every:.0f}s", flush=True)  # fmt: skip
    run(args.app_log, args.access_log, stop, args.first, args.every)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
