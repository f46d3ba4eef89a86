"""The whole alerting stack on 127.0.0.1, from the shipped deploy/ files: used by
``alertmail demo`` and by the end-to-end tests (tests/e2e).

Nothing here keeps a hand-made copy of a rule or config: every file is generated from
deploy/ at start, with only what a local, fast run needs changed (ports, paths, intervals).
Time is compressed by ``factor`` (default 1/20, so a ``for: 5m`` becomes 15s): see
:func:`scale_rules`, the one transform between the shipped rules and what Prometheus loads.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from receiver.stack_config import (
    DEFAULT_FACTOR,
    HOST,
    Ports,
    StackError,
    alertmanager_config,
    exporter_config,
    prometheus_config,
    receiver_config,
    scale_rules,
)

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
