"""The whole alerting stack on 127.0.0.1, from the shipped deploy/ files: used by
``alertmail demo`` and by the end-to-end tests (tests/e2e).

Nothing here keeps a hand-made copy of a rule or config: every file is generated from
deploy/ at start, with only what a local, fast run needs changed (ports, paths, intervals).
Time is compressed by ``factor`` (default 1/20, so a ``for: 5m`` becomes 15s): see
:func:`scale_rules`, the one transform between the shipped rules and what Prometheus loads.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import yaml

from receiver.errors import AlertmailError

HOST = "127.0.0.1"
DEFAULT_FACTOR = 1 / 20
# A checkout (editable install) has deploy/ beside receiver/; a wheel would need it
# packaged as receiver/_deploy (see the force-include note in docs/demo.md).
DEPLOY_DIR = next(
    (p for p in (Path(__file__).resolve().parents[1] / "deploy", Path(__file__).parent / "_deploy")
     if p.is_dir()),
    Path(__file__).resolve().parents[1] / "deploy",
)  # fmt: skip
# Debian calls the binary prometheus-alertmanager; upstream tarballs call it alertmanager.
BINARIES = dict(
    prometheus=("prometheus",), alertmanager=("alertmanager", "prometheus-alertmanager")
)
APT_PACKAGES = {"prometheus": "prometheus", "alertmanager": "prometheus-alertmanager"}


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
def find_binary(name: str) -> str | None:
    return next(filter(None, (shutil.which(c) for c in BINARIES[name])), None)


def missing_packages() -> list[str]:
    return [APT_PACKAGES[n] for n in BINARIES if find_binary(n) is None]


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _smtp_ok(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1) as s:
            return s.recv(4).startswith(b"220")
    except OSError:
        return False


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Stack:
    """Mail sink, receiver, exporter, Alertmanager, Prometheus (and optionally the demo
    traffic writer) as child processes; each logs to ``run_dir/logs/<name>.log``."""

    ORDER = ("mailsink", "receiver", "exporter", "alertmanager", "prometheus", "traffic")

    def __init__(
        self,
        run_dir: Path,
        ports: Ports,
        *,
        mail_dir: Path | None = None,
        factor: float = DEFAULT_FACTOR,
        deadman_after: float | None = None,
        traffic: bool = False,
        deploy_dir: Path = DEPLOY_DIR,
        ready_timeout: float = 60.0,
    ) -> None:
        self.run_dir, self.ports, self.factor = run_dir.resolve(), ports, factor
        self.mail_dir = (mail_dir or run_dir / "mail").resolve()
        self.deadman_after, self.deploy_dir = deadman_after, deploy_dir
        self.ready_timeout = ready_timeout
        self.services = [s for s in self.ORDER if traffic or s != "traffic"]
        self.app_log = self.run_dir / "logs" / "app.jsonl"
        self.access_log = self.run_dir / "logs" / "access.log"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def url(self, name: str) -> str:
        return f"http://{HOST}:{getattr(self.ports, name)}"

    def log(self, name: str) -> Path:
        return self.run_dir / "logs" / f"{name}.log"

    def write_configs(self) -> None:
        d, conf, run = self.deploy_dir, self.run_dir / "config", self.run_dir
        if not (d / "prometheus" / "prometheus.yml").is_file():
            raise StackError(f"the shipped configs are not in {d}: run from an alertmail checkout")
        for p in (conf / "rules", self.mail_dir, run / "logs", run / "prometheus", run / "am"):
            p.mkdir(parents=True, exist_ok=True)
        token = run / "token"
        if not token.exists():
            token.write_text(os.urandom(16).hex() + "\n")
            token.chmod(0o600)
        for rules in sorted((d / "prometheus" / "rules").glob("*.yml")):
            (conf / "rules" / rules.name).write_text(scale_rules(rules.read_text(), self.factor))
        self.app_log.touch()
        self.access_log.touch()
        ports, factor, rules_glob = self.ports, self.factor, str(conf / "rules" / "*.yml")
        out = {
            "prometheus.yml": prometheus_config(
                (d / "prometheus/prometheus.yml").read_text(), ports, rules_glob
            ),
            "alertmanager.yml": alertmanager_config(
                (d / "alertmanager/alertmanager.yml").read_text(), ports, token, factor
            ),
            "exporter.yml": exporter_config(
                (d / "exporter/exporter.yml").read_text(),
                ports,
                self.app_log,
                self.access_log,
                run / "positions.json",
            ),
            "alertmail.yml": receiver_config(
                (d / "receiver/alertmail.yml").read_text(), ports, run, factor, self.deadman_after
            ),
        }
        for name, text in out.items():
            (conf / name).write_text(f"# GENERATED by receiver.stack from {d}\n{text}")

    def _argv(self, name: str) -> tuple[list[str], Callable[[], bool]]:
        conf, run, py = self.run_dir / "config", self.run_dir, [sys.executable, "-m"]
        port = getattr(self.ports, "smtp" if name in ("mailsink", "traffic") else name)
        url = f"http://{HOST}:{port}"
        if name in ("prometheus", "alertmanager"):
            binary = find_binary(name)
            if binary is None:
                pkg = APT_PACKAGES[name]
                raise StackError(f"{name} is not installed: sudo apt-get install -y {pkg}")
            web = [f"--web.listen-address={HOST}:{port}", f"--web.external-url={url}/"]
            if name == "prometheus":
                # resend-delay: re-announce firing alerts every 2s, so a restarted
                # Alertmanager knows them again at once (default 1m).
                extra = [
                    f"--storage.tsdb.path={run / 'prometheus'}",
                    "--rules.alert.resend-delay=2s",
                ]
            else:  # an empty cluster address: no gossip port (9094) is opened
                extra = [f"--storage.path={run / 'am'}", "--cluster.listen-address="]
            argv = [binary, f"--config.file={conf / (name + '.yml')}", *web, *extra]
            return argv, lambda: _http_ok(f"{url}/-/ready")
        if name == "mailsink":
            argv = ["receiver.mailsink", "--listen", f"{HOST}:{port}", "--dir", str(self.mail_dir)]
            return py + argv, lambda: _smtp_ok(port)
        if name in ("receiver", "exporter"):
            cmd, cfg, probe = {"receiver": ("receive", "alertmail.yml", "readyz"),
                               "exporter": ("export", "exporter.yml", "healthz")}[name]  # fmt: skip
            argv = ["receiver.cli", cmd, "--config", str(conf / cfg)]
            return py + argv, lambda: _http_ok(f"{url}/{probe}")
        logs = ["--app-log", str(self.app_log), "--access-log", str(self.access_log)]
        return [*py, "receiver.demo_traffic", *logs], lambda: True

    def start_service(self, name: str) -> None:
        argv, ready = self._argv(name)
        log = self.log(name)
        with log.open("ab") as out:
            # Own session: a Ctrl-C in the terminal reaches only us; we stop children in order.
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.run_dir, start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        self.procs[name] = proc
        deadline = time.monotonic() + self.ready_timeout
        while not ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                what = (f"exited with code {proc.returncode}" if proc.returncode is not None
                        else f"not ready after {self.ready_timeout:.0f}s")  # fmt: skip
                raise StackError(f"{name} {what} (log {log}):\n{log_tail(log)}")
            time.sleep(0.1)

    def stop_service(self, name: str, timeout: float = 15.0) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)  # only ever a process this Stack started
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def dead(self) -> str | None:
        """A message for the first child that exited on its own, else None."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                return f"{name} exited with code {proc.returncode}:\n{log_tail(self.log(name))}"
        return None

    def start(self) -> Stack:
        taken = self.ports.taken()
        if taken:
            busy = ", ".join(f"{port} ({name})" for name, port in taken)
            raise StackError(
                f"port(s) already in use: {busy}; stop what listens there "
                "or choose other ports with --port-base N (uses N..N+4)"
            )
        self.write_configs()
        try:
            for name in self.services:
                self.start_service(name)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for name in reversed(list(self.procs)):
            self.stop_service(name)

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
