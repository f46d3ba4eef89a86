"""``alertmail demo``: the whole stack on this machine with demo traffic, no config needed.

Exporter, Prometheus, Alertmanager, the receiver and a local mail sink, all on 127.0.0.1,
configured from the shipped deploy/ files by receiver.stack (rules time-scaled 1/20).
Everything it starts it stops again on Ctrl-C/SIGTERM; it never touches a port or
process it did not start: taken ports are reported, not freed.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from receiver.stack import Stack, missing_packages
from receiver.stack_config import DEFAULT_FACTOR, Ports, StackError

MARKER = ".alertmail-demo"  # only a directory carrying it is ever emptied by the demo


def _say(text: str = "") -> None:
    print(text, flush=True)


def _install(packages: list[str]) -> bool:
    """apt-get install when root; otherwise print the exact command. True if now installed."""
    cmd = ["apt-get", "install", "-y", *packages]
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        _say(f"alertmail demo needs {', '.join(packages)} (Prometheus and Alertmanager).")
        install = f"sudo apt-get update && sudo {' '.join(cmd)}"
        _say(f"Install them, then run the demo again:\n\n  {install}\n")
        return False
    _say(f"installing {' '.join(packages)} with apt-get ...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for step in (["apt-get", "update"], cmd):
        if subprocess.run(step, env=env, check=False).returncode != 0:
            _say(f"alertmail demo: `{' '.join(step)}` failed; fix that and run the demo again")
            return False
    still = missing_packages()
    if still:
        _say(f"alertmail demo: still missing after apt-get install: {', '.join(still)}")
    return not still


def _prepare_data_dir(path: Path) -> str | None:
    """Empty the previous demo run's data; refuse a directory the demo did not create."""
    if path.exists() and any(path.iterdir()):
        if not (path / MARKER).exists():
            return f"{path} exists and was not created by alertmail demo; move it or use --data-dir"
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / MARKER).write_text("created by `alertmail demo`; emptied at its next start\n")
    return None


def _banner(stack: Stack, mail_dir: Path) -> None:
    scale = round(1 / DEFAULT_FACTOR)
    _say(f"""
alertmail demo is running (Ctrl-C stops everything it started)

  receiver status page  {stack.url("receiver")}/
  Prometheus            {stack.url("prometheus")}/alerts
  Alertmanager          {stack.url("alertmanager")}/
  exporter metrics      {stack.url("exporter")}/metrics
  mail sink (SMTP)      127.0.0.1:{stack.ports.smtp}, every email saved as .eml in {mail_dir}/
  demo logs             {stack.app_log}, {stack.access_log}
  configs, data, logs   {stack.run_dir}/ (config/, logs/<process>.log)

Time runs {scale}x faster than in production: the shipped rules from deploy/ are loaded
with every `for:` and range window divided by {scale} (for: 5m -> 15s, rate[5m] -> [15s]),
Prometheus scrapes and evaluates every second. Same expressions, thresholds and labels.
The first error burst (service checkout) starts in about 20 s; AppErrorRateHigh (critical)
fires about 20 s later and its email appears on the status page and in {mail_dir}/.
Then a burst every 3 minutes, on a different service each time.
""")


def _announce_new_mail(mail_dir: Path, seen: set[Path]) -> None:
    for path in sorted(mail_dir.glob("*.eml")):
        if path in seen:
            continue
        seen.add(path)
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        _say(f"{time.strftime('%H:%M:%S')} email to {msg['To']}: {msg['Subject']}\n         {path}")


def run_demo(args: argparse.Namespace) -> int:
    port_base: int | None = getattr(args, "port_base", None)
    data_dir = Path(getattr(args, "data_dir", None) or ".demo").resolve()
    mail_dir = Path(getattr(args, "mail_dir", None) or "demo-mail").resolve()
    duration: float | None = getattr(args, "duration", None)  # seconds; None: until Ctrl-C

    missing = missing_packages()
    if missing and not _install(missing):
        return 1
    ports = Ports.from_base(port_base) if port_base else Ports()
    taken = ports.taken()
    if taken:
        for name, port in taken:
            _say(f"alertmail demo: port {port} (for {name}) is already in use by another program.")
        _say("Nothing was started or stopped. Stop that program, or move the whole demo to five")
        _say("other ports:\n\n  alertmail demo --port-base 19090    # uses 19090..19094\n")
        return 1
    problem = _prepare_data_dir(data_dir)
    if problem:
        _say(f"alertmail demo: {problem}")
        return 1
    mail_dir.mkdir(parents=True, exist_ok=True)
    seen = set(mail_dir.glob("*.eml"))
    if seen:
        _say(
            f"({len(seen)} emails from earlier runs are in {mail_dir}/; new ones are listed below)"
        )

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # SIGHUP too: a closed terminal must not leave the children (own sessions) running.
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, on_signal) for s in signals}
    stack = Stack(data_dir, ports, mail_dir=mail_dir, traffic=True)
    code = 0
    try:
        _say("starting mail sink, receiver, exporter, Alertmanager, Prometheus, demo traffic ...")
        stack.start()
        _banner(stack, mail_dir)
        deadline = time.monotonic() + duration if duration else None
        while not stop.wait(0.5):
            _announce_new_mail(mail_dir, seen)
            crashed = stack.dead()
            if crashed:
                _say(f"alertmail demo: {crashed}\nstopping the rest.")
                code = 1
                break
            if deadline is not None and time.monotonic() > deadline:
                break
    except StackError as exc:
        _say(f"alertmail demo: {exc}")
        code = 1
    finally:
        _say("stopping everything the demo started ...")
        stack.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _say(f"stopped. Emails: {mail_dir}/  Data and process logs: {data_dir}/")
    return code


def main(argv: list[str] | None = None) -> int:
    """``python -m receiver.demo`` — the same as ``alertmail demo``."""
    p = argparse.ArgumentParser(prog="alertmail demo")
    p.add_argument("--port-base", type=int, metavar="N")
    p.add_argument("--data-dir", default=".demo")
    p.add_argument("--mail-dir", default="demo-mail")
    p.add_argument("--duration", type=float, metavar="SECONDS")
    return run_demo(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
