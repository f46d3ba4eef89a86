"""Helpers for the end-to-end tests: mail on disk, a controllable log writer, queries,
and failure messages that say what the stack was doing."""

from __future__ import annotations

import email
import email.policy
import json
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from receiver.demo_traffic import BURST_SECONDS, TICK, Traffic
from receiver.stack import Stack, log_tail


def read_mails(directory: Path) -> list[EmailMessage]:
    """Every .eml the mail sink stored, oldest first (file names sort by arrival)."""
    out = []
    for path in sorted(directory.glob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        out.append(msg)
    return out


def text_body(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    assert part is not None, f"no text/plain part in {msg['Subject']!r}"
    return str(part.get_content())


def get_json(url: str, **params: str) -> Any:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    with urllib.request.urlopen(url + query, timeout=10) as r:
        return json.load(r)


def prom_query(stack: Stack, expr: str) -> list[dict[str, Any]]:
    body = get_json(f"{stack.url('prometheus')}/api/v1/query", query=expr)
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def diagnostics(stack: Stack) -> str:
    """What to read when a wait times out: alert states, mails seen, process logs."""
    parts = []
    try:
        alerts = get_json(f"{stack.url('prometheus')}/api/v1/alerts")["data"]["alerts"]
        states = sorted(f"{a['labels'].get('alertname')}{{{a['labels'].get('service', '')}}}"
                        f" {a['labels'].get('severity')} {a['state']}" for a in alerts)  # fmt: skip
        parts.append("Prometheus alerts:\n  " + "\n  ".join(states))
    except OSError as exc:
        parts.append(f"Prometheus alerts: unavailable ({exc})")
    subjects = [str(m["Subject"]) for m in read_mails(stack.mail_dir)]
    parts.append("mails so far:\n  " + "\n  ".join(subjects or ["(none)"]))
    for name in ("receiver", "alertmanager"):
        parts.append(f"{name} log:\n{log_tail(stack.log(name), 15)}")
    return "\n".join(parts)


def wait_mail(
    stack: Stack, match: Callable[[EmailMessage], bool], timeout: float, what: str
) -> EmailMessage:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [m for m in read_mails(stack.mail_dir) if match(m)]
        if found:
            return found[0]
        problem = stack.dead()
        assert problem is None, problem
        time.sleep(0.25)
    raise AssertionError(f"no email {what} within {timeout:.0f}s\n{diagnostics(stack)}")


def wait_until(check: Callable[[], bool], timeout: float, what: str, stack: Stack) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s: {what}\n{diagnostics(stack)}")
        time.sleep(0.25)


class LogWriter:
    """Baseline demo traffic in a thread; :meth:`burst` adds one error burst (the demo's
    shape, see receiver/demo_traffic.py) for a service."""

    def __init__(self, stack: Stack) -> None:
        self._traffic = Traffic(stack.app_log, stack.access_log, seed=5)
        self._stop = threading.Event()
        self._burst_until = 0.0
        self.burst_service: str | None = None
        self._thread = threading.Thread(target=self._run, name="e2e-log-writer", daemon=True)

    def burst(self, service: str) -> None:
        self.burst_service = service
        self._burst_until = time.monotonic() + BURST_SECONDS

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(TICK):
            now = time.monotonic()
            service = self.burst_service if now < self._burst_until else None
            self._traffic.tick(now - last, time.time(), service)
            last = now

    def __enter__(self) -> LogWriter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._traffic.close()
