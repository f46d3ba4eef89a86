"""Log lines -> exporter -> Prometheus (shipped rules, time-scaled) -> Alertmanager
(shipped config) -> alertmail receiver -> SMTP, all real processes (issue 5)."""

from __future__ import annotations

import json
import time
from email.message import EmailMessage
from email.utils import parseaddr

import pytest

from receiver.stack import Stack
from tests.deploy.dashboards_util import iter_panel_queries, substitute_variables
from tests.deploy.helpers import DASHBOARDS_DIR
from tests.e2e.helpers import (
    LogWriter,
    diagnostics,
    prom_query,
    read_mails,
    text_body,
    wait_mail,
    wait_until,
)

pytestmark = pytest.mark.e2e
SERVICE = "checkout"
RUNBOOK = "https://github.com/alertmail/alertmail/blob/main/docs/runbooks/AppErrorRateHigh.md"


def _rate_thread(m: EmailMessage) -> bool:
    return "AppErrorRateHigh" in str(m["Subject"]) and f"service={SERVICE}" in str(m["Subject"])


def test_error_burst_emails_firing_then_resolved_in_one_thread(
    stack: Stack, traffic: LogWriter
) -> None:
    started = time.monotonic()
    # Baseline data first, so rate() has a "before" and the burst is a change.
    wait_until(
        lambda: bool(prom_query(stack, f'service:app_log_lines:rate5m{{service="{SERVICE}"}}')),
        30, "baseline log lines visible in Prometheus", stack,
    )  # fmt: skip
    traffic.burst(SERVICE)

    firing = wait_mail(stack, lambda m: _rate_thread(m) and "FIRING" in text_body(m), 60,
                       f"for AppErrorRateHigh firing on {SERVICE}")  # fmt: skip
    body = text_body(firing)
    assert body.startswith("FIRING: 1 critical"), body
    assert "[FIRING critical] AppErrorRateHigh" in body
    assert f"{SERVICE} logs " in body and "errors/s" in body  # summary annotation, rendered
    assert f"Service {SERVICE} has logged more than 10 error lines per second" in body
    assert RUNBOOK in body
    assert "severity=critical" in body and "team=app" in body and f"service={SERVICE}" in body
    # The shipped receiver routes: critical -> oncall, immediately.
    assert parseaddr(str(firing["To"]))[1] == "oncall@example.com"
    assert firing["Auto-Submitted"] == "auto-generated"

    resolved = wait_mail(stack, lambda m: _rate_thread(m) and "RESOLVED" in text_body(m), 40,
                         f"for AppErrorRateHigh resolved on {SERVICE}")  # fmt: skip
    assert resolved["Subject"] == firing["Subject"]
    assert resolved["Message-ID"] != firing["Message-ID"]
    assert resolved["In-Reply-To"] == firing["Message-ID"]
    assert firing["Message-ID"] in str(resolved["References"])
    assert text_body(resolved).startswith("RESOLVED: 1 alert"), text_body(resolved)
    # Only the critical ever reached the inbox: the burst is shaped to keep the warning quiet.
    thread = [m for m in read_mails(stack.mail_dir) if _rate_thread(m)]
    assert len(thread) == 2, diagnostics(stack)
    assert time.monotonic() - started < 120


def test_watchdog_is_a_heartbeat_not_an_email(stack: Stack) -> None:
    # By now the Watchdog (repeat 6s at this scale) has reached the receiver many times.
    seen = prom_query(stack, "alertmail_deadman_last_seen_timestamp_seconds > 0")
    assert seen, diagnostics(stack)
    assert not [m for m in read_mails(stack.mail_dir) if "Watchdog" in str(m["Subject"])]


def test_every_dashboard_query_runs_on_the_real_prometheus(stack: Stack) -> None:
    # Runs after the burst test in this module, so log metrics and alertmail metrics exist.
    errors, empty, total = [], [], 0
    for path in sorted(DASHBOARDS_DIR.glob("*.json")):
        dashboard = json.loads(path.read_text())
        for q in iter_panel_queries(dashboard):
            total += 1
            expr = substitute_variables(q.expr, dashboard)
            try:
                result = prom_query(stack, expr)
            except Exception as exc:  # an HTTP 400/422 is the query error we look for
                body = getattr(exc, "read", lambda: b"")().decode(errors="replace")
                errors.append(f"{path.name} {q.id} {q.panel_title!r}: {exc} {body}\n  {expr}")
                continue
            if not result:
                empty.append(q.id)
    assert total > 0
    assert not errors, "\n".join(errors)
    # Not every panel has data after two minutes (dead letters, failovers), but most do.
    assert len(empty) < total / 2, f"{len(empty)}/{total} panels empty: {empty}"
