"""Generated configs for the local stack: the shipped deploy/ files with only what a local,
fast run needs changed (ports, paths, intervals), and time compressed by ``factor``.

:func:`scale_rules` is the one transform between the shipped rules and what Prometheus loads.
"""

from __future__ import annotations

import re
import socket
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from receiver.errors import AlertmailError

HOST = "127.0.0.1"
DEFAULT_FACTOR = 1 / 20


class StackError(AlertmailError):
    """A part of the stack cannot start (port taken, binary missing, not ready in time)."""


# ---- time scaling ------------------------------------------------------------------------
_UNITS = dict(ms=0.001, s=1.0, m=60.0, h=3600.0, d=86400.0, w=604800.0, y=31536000.0)
_DUR = r"(?:\d+(?:ms|s|m|h|d|w|y))+"
_DUR_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
# PromQL string literals: their content ("5m" in a label matcher) is data, never scaled.
_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_RANGE = re.compile(rf"\[(\s*)({_DUR})(\s*)(?::(\s*)({_DUR})?(\s*))?\]")
_OFFSET = re.compile(rf"\b(offset\s+-?)({_DUR})\b", re.IGNORECASE)


def parse_duration(text: str) -> float:
    """Prometheus duration (``5m``, ``1h30m``, ``250ms``) to seconds."""
    if not re.fullmatch(_DUR, text.strip()):
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(n) * _UNITS[u] for n, u in _DUR_PART.findall(text))


def format_duration(seconds: float) -> str:
    """Seconds to the largest single unit that divides them (h, m, s or ms): 72m, 15s."""
    ms = round(seconds * 1000)
    if ms <= 0:
        raise ValueError(f"duration {seconds}s scales to nothing; use a larger factor")
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def scale_duration(text: str, factor: float) -> str:
    return format_duration(parse_duration(text) * factor)


def scale_promql(expr: str, factor: float) -> str:
    """Scale range selectors (``[5m]``), subqueries (``[1h:5m]``) and ``offset 1w``."""

    def rng(m: re.Match[str]) -> str:
        a, d1, b, c, d2, e = m.groups()
        out = f"[{a}{scale_duration(d1, factor)}{b}"
        if c is not None:
            out += f":{c}{scale_duration(d2, factor) if d2 else ''}{e}"
        return out + "]"

    def code(part: str) -> str:
        part = _RANGE.sub(rng, part)
        return _OFFSET.sub(lambda m: m.group(1) + scale_duration(m.group(2), factor), part)

    out, pos = [], 0
    for m in _STRING.finditer(expr):
        out += [code(expr[pos : m.start()]), m.group()]
        pos = m.end()
    return "".join([*out, code(expr[pos:])])


def scale_rules(text: str, factor: float) -> str:
    """A Prometheus rule file with its time compressed by ``factor``, nothing else changed.

    Scaled: every ``for:``/``keep_firing_for:``, a group's ``interval:``, and in every
    ``expr`` the range selectors, subquery ranges/steps and ``offset`` durations.
    Unchanged: expressions otherwise, thresholds (also seconds-valued ones such as
    ``> 900``: they are values, not windows), labels and annotations. So a test or the
    demo exercises the shipped rules, just ``1/factor`` times faster.
    """
    doc = yaml.safe_load(text)
    for group in doc.get("groups") or []:
        if "interval" in group:
            group["interval"] = scale_duration(str(group["interval"]), factor)
        for rule in group.get("rules") or []:
            for key in ("for", "keep_firing_for"):
                if key in rule and parse_duration(str(rule[key])) > 0:
                    rule[key] = scale_duration(str(rule[key]), factor)
            rule["expr"] = scale_promql(str(rule["expr"]), factor)
    header = f"# GENERATED from a shipped rule file by receiver.stack.scale_rules({factor:g})\n"
    return header + yaml.safe_dump(doc, sort_keys=False, width=1000, allow_unicode=True)


# ---- ports ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ports:
    prometheus: int = 9090
    alertmanager: int = 9093
    receiver: int = 9095
    exporter: int = 9146
    smtp: int = 2525

    @classmethod
    def from_base(cls, base: int) -> Ports:
        """``--port-base N``: Prometheus N, Alertmanager N+1, receiver N+2, exporter N+3,
        SMTP N+4."""
        return cls(*range(base, base + 5))

    @classmethod
    def free(cls) -> Ports:
        """Five ports the kernel says are free now (tests; all held open while picking)."""
        socks = [socket.socket() for _ in fields(cls)]
        try:
            for s in socks:
                s.bind((HOST, 0))
            return cls(*(int(s.getsockname()[1]) for s in socks))
        finally:
            for s in socks:
                s.close()

    def taken(self) -> list[tuple[str, int]]:
        """(service, port) for every port something else already listens on."""
        busy = []
        for f, port in zip(fields(self), astuple(self), strict=True):
            with socket.socket() as s:
                # SO_REUSEADDR as the servers use it: TIME_WAIT leftovers are not "taken".
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((HOST, port))
                except OSError:
                    busy.append((f.name, port))
        return busy


# ---- configs generated from deploy/ -----------------------------------------------------
def prometheus_config(text: str, ports: Ports, rules_glob: str) -> str:
    doc = yaml.safe_load(text)
    doc["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    doc["rule_files"] = [rules_glob]
    doc["alerting"]["alertmanagers"] = [
        {"static_configs": [{"targets": [f"{HOST}:{ports.alertmanager}"]}]}
    ]
    by_job = {"prometheus": ports.prometheus, "alertmanager": ports.alertmanager}
    by_job.update({"alertmail-exporter": ports.exporter, "alertmail-receiver": ports.receiver})
    for job in doc["scrape_configs"]:
        if job["job_name"] not in by_job:  # a new shipped job must be wired here, not ignored
            raise StackError(f"prometheus.yml: no local port for scrape job {job['job_name']!r}")
        job["static_configs"] = [{"targets": [f"{HOST}:{by_job[job['job_name']]}"]}]
    return yaml.safe_dump(doc, sort_keys=False)


def alertmanager_config(text: str, ports: Ports, token_file: Path, factor: float) -> str:
    doc = yaml.safe_load(text)
    g = doc.setdefault("global", {})
    g["smtp_smarthost"] = f"{HOST}:{ports.smtp}"
    g["resolve_timeout"] = scale_duration(str(g.get("resolve_timeout", "5m")), factor)

    def route(node: dict[str, Any], top: bool) -> None:
        # Waits short enough to see a notification within seconds; repeats scaled like the rules.
        if top or "group_wait" in node:
            wait = parse_duration(str(node.get("group_wait", "1s")))
            node["group_wait"] = "0s" if wait == 0 else "1s"
        if top or "group_interval" in node:
            node["group_interval"] = "2s"
        if top or "repeat_interval" in node:
            scaled = parse_duration(str(node.get("repeat_interval", "4h"))) * factor
            node["repeat_interval"] = format_duration(max(scaled, 2.0))
        for child in node.get("routes") or []:
            route(child, False)

    route(doc["route"], True)
    for rcv in doc.get("receivers") or []:
        for hook in rcv.get("webhook_configs") or []:
            hook["url"] = urlsplit(hook["url"])._replace(netloc=f"{HOST}:{ports.receiver}").geturl()
            auth = (hook.get("http_config") or {}).get("authorization")
            if auth is not None:
                auth["credentials_file"] = str(token_file)
        for mail in rcv.get("email_configs") or []:
            mail.pop("smarthost", None)  # the global one: this run's mail sink
    return yaml.safe_dump(doc, sort_keys=False)


def exporter_config(
    text: str, ports: Ports, app_log: Path, access_log: Path, positions: Path
) -> str:
    doc = yaml.safe_load(text)
    doc.update(listen=f"{HOST}:{ports.exporter}", positions=str(positions))
    for src in doc["sources"]:  # the shipped file has one JSON app log and one nginx log
        src.update(
            path=str(app_log if src.get("format") == "json" else access_log), start="beginning"
        )
    return yaml.safe_dump(doc, sort_keys=False)


def receiver_config(
    text: str, ports: Ports, run_dir: Path, factor: float, deadman_after: float | None
) -> str:
    doc = yaml.safe_load(text)
    prom = f"http://{HOST}:{ports.prometheus}"
    doc.update(
        listen=f"{HOST}:{ports.receiver}", auth={"bearer_token_file": str(run_dir / "token")}
    )
    doc["storage"] = {**doc.get("storage", {}), "path": str(run_dir / "alertmail.db")}
    doc["prometheus"] = {"url": prom, "external_urls": [prom]}
    for key in ("grafana", "reports", "tls", "ui_auth"):  # nothing local to point them at
        doc.pop(key, None)
    doc["smtp"]["servers"] = [{"host": HOST, "port": ports.smtp, "starttls": False}]
    doc["smtp"]["retry"] = {"initial": "1s", "max": "10s", "give_up_after": "1h"}
    # The shipped 2m would swallow Alertmanager's scaled repeats (Watchdog: every 6s) as
    # duplicates, and a duplicate Watchdog does not count as a heartbeat. 2s still
    # catches what dedup is for: HA pairs and retries arriving together.
    doc["dedup_window"] = "2s"
    if doc.get("deadman"):
        after = deadman_after or parse_duration(str(doc["deadman"]["after"])) * factor
        doc["deadman"]["after"] = format_duration(after)
    return yaml.safe_dump(doc, sort_keys=False)


# ---- processes --------------------------------------------------------------------------
