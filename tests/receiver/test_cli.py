"""The alertmail command, run as a user runs it (a real process)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import load_fixture
from tests.receiver.apphelpers import TOKEN, parse, wait_for, wait_mail
from tests.smtp_servers import closed_port, smtp_sink

REPO = Path(__file__).resolve().parents[2]


def alertmail(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "receiver.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(tmp_path: Path, smtp_port: int, port: int = 0, **extra: str) -> Path:
    cfg = tmp_path / "alertmail.yml"
    lines = [
        f"listen: 127.0.0.1:{port or free_port()}",
        f"auth: {{bearer_token: {TOKEN}}}",
        f"storage: {{path: {tmp_path / 'alertmail.db'}}}",
        "smtp:",
        '  from: "Alerts <alerts@example.com>"',
        f"  servers: [{{host: 127.0.0.1, port: {smtp_port}, timeout: 5s}}]",
        "  retry: {initial: 200ms, max: 1s}",
        "routes: [{email: [oncall@example.com]}]",
        *[f"{k}: {v}" for k, v in extra.items()],
    ]
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def test_help_lists_commands() -> None:
    out = alertmail("--help").stdout
    for cmd in ("receive", "check", "export", "outbox", "test-email", "routes"):
        assert cmd in out


def test_check_ok_and_config_error_exit_2(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, 25)
    ok = alertmail("check", "--config", str(cfg))
    assert ok.returncode == 0, ok.stderr
    cfg.write_text(cfg.read_text() + "flood: {max_emails: many}\n")
    bad = alertmail("check", "--config", str(cfg))
    assert bad.returncode == 2
    assert f"{cfg}: flood.max_emails:" in bad.stderr
    assert "integer" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_check_reports_template_error_with_line(tmp_path: Path) -> None:
    tdir = tmp_path / "tpl"
    tdir.mkdir()
    (tdir / "alert.txt.j2").write_text("line one\n{% if %}\n")
    cfg = write_config(tmp_path, 25, templates_dir=str(tdir))
    bad = alertmail("check", "--config", str(cfg))
    assert bad.returncode == 2
    assert "alert.txt.j2" in bad.stderr and ":2" in bad.stderr


def test_routes_test(tmp_path: Path) -> None:
    cfg = tmp_path / "r.yml"
    cfg.write_text(
        "smtp: {from: a@example.com, servers: [{host: 127.0.0.1}]}\n"
        "routes:\n"
        "  - {name: crit, matchers: ['severity=\"critical\"'], email: [oncall@example.com]}\n"
        "  - {name: rest, email: [team@example.com]}\n"
    )
    out = alertmail("routes", "test", "--config", str(cfg), "severity=critical")
    assert out.returncode == 0 and out.stdout.startswith("crit")
    assert "oncall@example.com" in out.stdout
    out = alertmail("routes", "test", "--config", str(cfg), "severity=warning", "team=db")
    assert out.stdout.startswith("rest")


async def test_test_email_reports_each_server(tmp_path: Path) -> None:
    async with smtp_sink(reject={"nobody@example.com"}) as sink, closed_port() as dead:
        cfg = tmp_path / "t.yml"
        cfg.write_text(
            "smtp:\n  from: a@example.com\n  servers:\n"
            f"    - {{host: 127.0.0.1, port: {sink.port}}}\n"
            f"    - {{host: 127.0.0.1, port: {dead.port}, timeout: 2s}}\n"
        )
        import asyncio

        proc = await asyncio.to_thread(
            alertmail, "test-email", "--config", str(cfg), "--to", "me@example.com"
        )
        (mail,) = await wait_mail(sink, 1)
    assert proc.returncode == 1  # one server failed
    assert f"127.0.0.1:{sink.port}: OK 250" in proc.stdout
    assert f"127.0.0.1:{dead.port}: FAILED at connect" in proc.stdout
    assert mail["To"] == "me@example.com"


@pytest.fixture
def receiver_proc() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(10)


def start_receiver(cfg: Path, procs: list[subprocess.Popen[bytes]]) -> str:
    text = cfg.read_text()
    port = int(text.split("listen: 127.0.0.1:")[1].split()[0])
    proc = subprocess.Popen(
        [sys.executable, "-m", "receiver.cli", "receive", "--config", str(cfg)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    procs.append(proc)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1) as r:
                if r.status == 200:
                    return url
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.05)
    raise AssertionError("receiver did not become ready")


def post(url: str, body: dict[str, object]) -> int:
    req = urllib.request.Request(
        url + "/webhook",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return int(r.status)


async def test_sigkill_between_ack_and_send_loses_nothing(
    tmp_path: Path, receiver_proc: list[subprocess.Popen[bytes]]
) -> None:
    import asyncio

    # The server is slow to answer DATA, so the kill lands while the send is in flight.
    async with smtp_sink(data_delay=1.5) as sink:
        cfg = write_config(tmp_path, sink.port)
        url = await asyncio.to_thread(start_receiver, cfg, receiver_proc)
        assert await asyncio.to_thread(post, url, load_fixture("firing_single.json")) == 200
        await asyncio.sleep(0.4)
        receiver_proc[0].send_signal(signal.SIGKILL)
        receiver_proc[0].wait(10)
        await asyncio.to_thread(start_receiver, cfg, receiver_proc)
        await wait_mail(sink, 1, timeout=20)
        await asyncio.sleep(2.5)  # any second copy would arrive by now
        receiver_proc[1].send_signal(signal.SIGTERM)
        assert receiver_proc[1].wait(20) == 0
    ids = {parse(m.data)["Message-ID"] for m in sink.messages}
    assert 1 <= len(sink.messages) <= 2
    assert len(ids) == 1  # a resend is the same message, not a new one


async def test_sigterm_lets_inflight_send_finish(
    tmp_path: Path, receiver_proc: list[subprocess.Popen[bytes]]
) -> None:
    import asyncio

    async with smtp_sink(data_delay=1.0) as sink:
        cfg = write_config(tmp_path, sink.port)
        url = await asyncio.to_thread(start_receiver, cfg, receiver_proc)
        assert await asyncio.to_thread(post, url, load_fixture("firing_single.json")) == 200
        # The send is under way (connected; the server answers DATA a second later).
        await wait_for(lambda: sink.connections >= 1, timeout=20, what="the SMTP connection")
        await asyncio.sleep(0.2)
        receiver_proc[0].send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(receiver_proc[0].wait, 20) == 0
        assert len(sink.messages) == 1  # finished before exit, not cut off
    listing = alertmail("outbox", "list", "--config", str(cfg), "--json")
    rows = json.loads(listing.stdout)
    assert [r["state"] for r in rows] == ["sent"]
    assert rows[0]["server"] == f"127.0.0.1:{sink.port}"


def test_outbox_retry_and_drop(tmp_path: Path) -> None:
    from receiver.store import NewMessage, Store

    cfg = write_config(tmp_path, 25)
    store = Store(tmp_path / "alertmail.db")
    (a,) = store.enqueue([NewMessage("email", '["x@example.com"]', "alert", 0, b"m", 1.0)], 1)
    (row,) = store.claim_due("email", 2, 1)
    store.finish_attempt(row.id, 3, "dead", [], reason="permanent failure: 550")
    store.close()
    out = alertmail("outbox", "list", "--config", str(cfg))
    assert "dead" in out.stdout and "permanent failure: 550" in out.stdout
    assert alertmail("outbox", "retry", "--dead", "--config", str(cfg)).returncode == 0
    assert '"state": "queued"' in alertmail("outbox", "list", "--json", "--config", str(cfg)).stdout
    assert alertmail("outbox", "drop", str(a), "--config", str(cfg)).returncode == 0
    missing = alertmail("outbox", "drop", "999", "--config", str(cfg))
    assert missing.returncode == 1 and "no message 999" in missing.stderr


def test_outbox_drop_keeps_why_and_says_why_not(tmp_path: Path) -> None:
    from receiver.store import NewMessage, Store

    cfg = write_config(tmp_path, 25)
    store = Store(tmp_path / "alertmail.db")
    msgs = [NewMessage("email", f'["{u}@example.com"]', "alert", 0, b"m", 1.0) for u in "abc"]
    dead, sending, sent = store.enqueue(msgs, 1)
    rows = {r.id: r for r in store.claim_due("email", 2, 3)}
    store.finish_attempt(dead, 3, "dead", [], reason="permanent failure: 550")
    results = '{"c@example.com": "250 accepted", "d@example.com": "550 5.1.1 unknown"}'
    store.finish_attempt(sent, 3, "sent", [], server="mx", recipients_result=results)
    assert rows[sending].state == "sending"
    store.close()
    assert alertmail("outbox", "drop", str(dead), "--config", str(cfg)).returncode == 0
    busy = alertmail("outbox", "drop", str(sending), "--config", str(cfg))
    assert busy.returncode == 1 and "being sent right now" in busy.stderr
    done = alertmail("outbox", "drop", str(sent), "--config", str(cfg))
    assert done.returncode == 1 and "is sent: nothing to do" in done.stderr
    out = alertmail("outbox", "list", "--config", str(cfg)).stdout
    assert "permanent failure: 550; dropped by operator" in out
    assert "not to d@example.com: 550 5.1.1 unknown" in out


def test_outbox_list_shows_folded_and_digest_waiting(tmp_path: Path) -> None:
    from receiver.store import DispatchPlan, IngestItem, Store

    cfg = write_config(tmp_path, 25)
    store = Store(tmp_path / "alertmail.db")
    (res,) = store.ingest_batch([IngestItem(1.0, "r", "g", "firing", "k", "{}", 120.0)])
    plan = DispatchPlan(
        res.notification_id,
        digest_entries=[("team-digest", 3600.0)],
        folds=[("oncall@example.com", "routes[0]", 0)],
    )
    store.commit_dispatch(plan, 2.0)
    store.close()
    out = alertmail("outbox", "list", "--config", str(cfg)).stdout
    assert "1 notification(s) for oncall@example.com folded" in out
    assert "digest team-digest: 1 notification(s)" in out


def test_tls_listener_and_sighup_reload(
    tmp_path: Path, receiver_proc: list[subprocess.Popen[bytes]]
) -> None:
    import ssl

    from tests.smtp_servers import self_signed_cert

    cert, key = self_signed_cert(tmp_path)
    cfg = write_config(tmp_path, 25, tls=f"{{cert_file: {cert}, key_file: {key}}}")
    port = int(cfg.read_text().split("listen: 127.0.0.1:")[1].split()[0])
    proc = subprocess.Popen(
        [sys.executable, "-m", "receiver.cli", "receive", "--config", str(cfg)],
        cwd=REPO,
        stderr=subprocess.PIPE,
    )
    receiver_proc.append(proc)
    ctx = ssl.create_default_context(cafile=str(cert))
    url = f"https://127.0.0.1:{port}"

    def get(path: str) -> str:
        with urllib.request.urlopen(url + path, timeout=2, context=ctx) as r:
            return str(r.read().decode())

    deadline = time.monotonic() + 20
    while True:
        try:
            assert get("/readyz").startswith("ready")
            break
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    with pytest.raises((urllib.error.URLError, ConnectionError)):  # no plain HTTP on TLS
        urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2)

    def reload_metric() -> str:
        lines = get("/metrics").splitlines()
        return next(x for x in lines if x.startswith("alertmail_config_last_reload_successful "))

    good = cfg.read_text()
    cfg.write_text(good + "dedup_window: never\n")
    proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while reload_metric().endswith(" 1.0") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert reload_metric().endswith(" 0.0")  # refused: still serving the old config
    cfg.write_text(good)
    proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while reload_metric().endswith(" 0.0") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert reload_metric().endswith(" 1.0")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    assert proc.stderr is not None
    log = proc.stderr.read().decode()
    assert "config reload refused" in log and "dedup_window" in log
