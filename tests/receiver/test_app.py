"""The real app on a real socket, delivering to real SMTP servers."""

from __future__ import annotations

import asyncio
import copy
import gzip
import json
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from receiver.keys import STORE
from tests.conftest import load_fixture
from tests.receiver.apphelpers import TOKEN, make_config, running, server, wait_for, wait_mail
from tests.smtp_servers import closed_port, smtp_sink


async def test_firing_then_resolved_in_one_thread(tmp_path: Path) -> None:
    async with smtp_sink() as sink, running(make_config(tmp_path, [server(sink)])) as rx:
        resp = await rx.post(load_fixture("firing_single.json"))
        assert resp.status == 200
        (first,) = await wait_mail(sink, 1)
        resp = await rx.post(load_fixture("resolved_single.json"))
        assert resp.status == 200
        _, second = await wait_mail(sink, 2)
    assert sink.messages[0].rcpt_tos == ["oncall@example.com"]
    assert sink.messages[0].mail_from == "alerts@example.com"
    assert first["Subject"] == second["Subject"]
    assert first["Message-ID"] != second["Message-ID"]
    assert second["In-Reply-To"] == first["Message-ID"]
    assert second["References"] == first["Message-ID"]
    assert first["Auto-Submitted"] == "auto-generated"
    assert first["X-Auto-Response-Suppress"] == "All"


async def test_duplicate_is_recorded_not_sent(tmp_path: Path) -> None:
    async with smtp_sink() as sink, running(make_config(tmp_path, [server(sink)])) as rx:
        body = load_fixture("firing_group_3_alerts.json")
        assert (await rx.post(body)).status == 200
        ha_peer = copy.deepcopy(body)
        ha_peer["alerts"].reverse()
        ha_peer["alerts"][0]["annotations"]["description"] = "slightly different"
        resp = await rx.session.post(
            rx.url + "/webhook", json=ha_peer, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert (await resp.json())["duplicate"] is True
        await wait_mail(sink, 1)
        await asyncio.sleep(0.5)
        metrics = await (await rx.session.get(rx.url + "/metrics")).text()
    assert len(sink.messages) == 1
    assert (
        'alertmail_webhooks_received_total{receiver="webhook-default",result="duplicate"} 1.0'
        in metrics
    )


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"Authorization": "Basic eDp5"}, 401),
        ({"Authorization": f"Bearer {TOKEN}"}, 200),
    ],
)
async def test_bearer_auth(tmp_path: Path, headers: dict[str, str], status: int) -> None:
    async with smtp_sink() as sink, running(make_config(tmp_path, [server(sink)])) as rx:
        resp = await rx.post(load_fixture("firing_single.json"), token=None, headers=headers)
        assert resp.status == status
        if status == 401:
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_basic_auth(tmp_path: Path) -> None:
    import aiohttp

    cfg = make_config(
        tmp_path,
        [{"host": "127.0.0.1", "port": 9}],
        auth={"basic_auth": {"username": "am", "password": "pw"}},
    )
    async with running(cfg) as rx:
        ok = await rx.post(
            load_fixture("firing_single.json"),
            token=None,
            headers={"Authorization": aiohttp.encode_basic_auth("am", "pw")},
        )
        bad = await rx.post(
            load_fixture("firing_single.json"),
            token=None,
            headers={"Authorization": aiohttp.encode_basic_auth("am", "no")},
        )
    assert (ok.status, bad.status) == (200, 401)


async def test_unauthenticated_requests_cannot_add_metric_series(tmp_path: Path) -> None:
    async with running(make_config(tmp_path, [{"host": "127.0.0.1", "port": 9}])) as rx:
        for i in range(5):
            resp = await rx.session.post(f"{rx.url}/webhook/made-up-{i}", data=b"{}")
            assert resp.status == 401
        ok = await rx.session.post(
            f"{rx.url}/webhook/team-a",
            json=load_fixture("firing_single.json"),
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert ok.status == 200
        text = await (await rx.session.get(rx.url + "/metrics")).text()
    assert 'alertmail_webhooks_received_total{receiver="",result="unauthorized"} 5.0' in text
    assert "made-up" not in text
    assert 'alertmail_webhooks_received_total{receiver="team-a",result="accepted"} 1.0' in text
    assert 'alertmail_alerts_received_total{status="firing"} 1.0' in text


async def test_bad_bodies_get_clear_4xx(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, [{"host": "127.0.0.1", "port": 9}], max_body="64KiB")
    async with running(cfg) as rx:
        truncated = json.dumps(load_fixture("firing_single.json"))[:-20]
        r1 = await rx.post(truncated, headers={"Content-Type": "application/json"})
        r2 = await rx.post({"version": "3", "alerts": []})
        r3 = await rx.post(b'{"alerts": [' + b'{"labels": {}},' * 20000 + b"{}]}")
        r4 = await rx.post(load_fixture("firing_single.json"), path="/webhook/x", token="bad")
        bodies = [await r.json() for r in (r1, r2, r3)]
    assert [r1.status, r2.status, r3.status, r4.status] == [400, 400, 413, 401]
    assert "not JSON" in bodies[0]["error"]
    assert "version 4" in bodies[1]["error"]
    assert "max_body" in bodies[2]["error"]


async def test_a_compressed_body_is_held_to_max_body_once_unpacked(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, [{"host": "127.0.0.1", "port": 9}], max_body="64KiB")
    small = json.dumps(load_fixture("firing_single.json")).encode()
    huge = small[:-1] + b', "padding": "' + b"x" * (4 << 20) + b'"}'
    async with running(cfg) as rx:
        headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
        bomb = await rx.post(gzip.compress(huge), headers=headers)
        fine = await rx.post(gzip.compress(small), headers=headers)
        body = await bomb.json()
    assert len(gzip.compress(huge)) < 64 << 10  # small on the wire, 4 MiB unpacked
    assert (bomb.status, fine.status) == (413, 200)
    assert "max_body" in body["error"]


async def test_store_locked_gives_503_and_nothing_lost(tmp_path: Path) -> None:
    async with smtp_sink() as sink, running(make_config(tmp_path, [server(sink)])) as rx:
        blocker = sqlite3.connect(tmp_path / "alertmail.db", isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # another writer holds the database
        try:
            resp = await rx.post(load_fixture("firing_single.json"))
            ready = await rx.session.get(rx.url + "/readyz")
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert resp.status == 503 and ready.status == 503
        # Alertmanager retries a 5xx: the retry goes through and is delivered.
        assert (await rx.post(load_fixture("firing_single.json"))).status == 200
        await wait_mail(sink, 1)
        assert (await rx.session.get(rx.url + "/readyz")).status == 200


async def test_failover_and_metrics(tmp_path: Path) -> None:
    async with closed_port() as dead, smtp_sink() as sink:
        cfg = make_config(tmp_path, [server(dead), server(sink)])
        async with running(cfg) as rx:
            await rx.post(load_fixture("firing_single.json"))
            await wait_mail(sink, 1)
            await wait_for(lambda: True)
            text = await (await rx.session.get(rx.url + "/metrics")).text()
            store = rx.app[STORE]
            rows = await store.run(store.store.list_outbox)
    assert f'alertmail_smtp_failovers_total{{server="{dead.name}"}} 1.0' in text
    assert 'alertmail_deliveries_total{channel="email",result="sent"} 1.0' in text
    assert rows[0].state == "sent" and rows[0].server == sink.name
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian prometheus) not installed: exposition not linted")
    check = await asyncio.to_thread(
        subprocess.run,
        [promtool, "check", "metrics"],
        input=text.encode(),
        capture_output=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()


async def test_outage_then_recovery_sends_only_newest_state(tmp_path: Path) -> None:
    async with closed_port() as down:
        cfg = make_config(tmp_path, [server(down)])
        async with running(cfg) as rx:
            await rx.post(load_fixture("firing_group_3_alerts.json"))
            await rx.post(load_fixture("mixed_group_one_resolved.json"))
            store = rx.app[STORE]

            async def states() -> list[str]:
                return [r.state for r in await store.run(store.store.list_outbox)]

            await wait_for(lambda: True)
            for _ in range(200):
                if sorted(await states()) == ["retrying", "superseded"]:
                    break
                await asyncio.sleep(0.05)
            assert sorted(await states()) == ["retrying", "superseded"]
            metrics = await (await rx.session.get(rx.url + "/metrics")).text()
            assert 'alertmail_deliveries_total{channel="email",result="superseded"} 1.0' in metrics
    # The server comes back (same database, new process state): only the newest is sent.
    async with smtp_sink() as sink:
        cfg = make_config(tmp_path, [server(sink)])
        async with running(cfg) as rx:
            (mail,) = await wait_mail(sink, 1)
            await asyncio.sleep(0.5)
            assert len(sink.messages) == 1
            # The first message nobody received was replaced as the thread's first message:
            # what was delivered replies to nothing, and the next one replies to it.
            resolved = load_fixture("mixed_group_one_resolved.json")
            resolved["status"] = "resolved"
            for alert in resolved["alerts"]:
                alert["status"] = "resolved"
            await rx.post(resolved)
            _, reply = await wait_mail(sink, 2)
    body = mail.get_body(("plain",))
    assert body is not None
    assert "1 resolved" in body.get_content().lower() or "resolved" in body.get_content()
    assert mail["In-Reply-To"] is None and mail["References"] is None
    assert reply["In-Reply-To"] == mail["Message-ID"] == reply["References"]
    assert reply["Subject"] == mail["Subject"]


async def test_hostile_values_cannot_inject_headers(tmp_path: Path) -> None:
    body = load_fixture("firing_single.json")
    body["commonLabels"]["alertname"] = "X\r\nBcc: victim@example.com"
    body["groupLabels"]["alertname"] = "X\r\nBcc: victim@example.com"
    body["alerts"][0]["labels"]["alertname"] = "X\r\nBcc: victim@example.com"
    body["alerts"][0]["annotations"]["summary"] = "<script>alert(1)</script>{{ 7*7 }}"
    body["alerts"][0]["annotations"]["runbook_url"] = "javascript:alert(1)"
    async with smtp_sink() as sink, running(make_config(tmp_path, [server(sink)])) as rx:
        assert (await rx.post(body)).status == 200
        (mail,) = await wait_mail(sink, 1)
    assert sink.messages[0].rcpt_tos == ["oncall@example.com"]
    assert mail["Bcc"] is None
    html = mail.get_body(("html",))
    assert html is not None
    content = html.get_content()
    assert "<script>" not in content and "&lt;script&gt;" in content
    assert "{{ 7*7 }}" in content
    assert 'href="javascript:' not in content


async def test_reload_keeps_old_config_when_new_is_bad(tmp_path: Path) -> None:
    path = tmp_path / "alertmail.yml"
    path.write_text(f"storage: {{path: {tmp_path / 'a.db'}}}\ndedup_window: 2m\n")
    from receiver.config import load_config

    async with running(load_config(path), config_path=path) as rx:
        path.write_text("dedup_window: soon\n")
        bad = await rx.session.post(rx.url + "/-/reload")
        assert bad.status == 400 and "dedup_window" in (await bad.json())["error"]
        metrics = await (await rx.session.get(rx.url + "/metrics")).text()
        assert "alertmail_config_last_reload_successful 0.0" in metrics
        path.write_text(f"storage: {{path: {tmp_path / 'a.db'}}}\ndedup_window: 5m\n")
        good = await rx.session.post(rx.url + "/-/reload")
        assert good.status == 200
        from receiver.keys import RUNTIME

        assert rx.app[RUNTIME].config.dedup_window == 300


async def test_reload_needs_the_webhook_credentials(tmp_path: Path) -> None:
    path = tmp_path / "alertmail.yml"
    path.write_text(f"storage: {{path: {tmp_path / 'a.db'}}}\nauth: {{bearer_token: {TOKEN}}}\n")
    from receiver.config import load_config

    async with running(load_config(path), config_path=path) as rx:
        anonymous = await rx.session.post(rx.url + "/-/reload")
        assert anonymous.status == 401
        path.write_bytes(b"timezone: Z\xfcrich\n")  # not UTF-8: refused, old config kept
        bad = await rx.session.post(
            rx.url + "/-/reload", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert bad.status == 400 and "not UTF-8" in (await bad.json())["error"]


async def _raw_request(url: str, head: str, body: bytes = b"") -> list[bytes]:
    """Send ``head`` (and, after the first answer, ``body``); the status lines received."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head.encode("utf-8", "surrogateescape"))
        await writer.drain()
        first = await reader.readline()
        lines = [first]
        if b" 100 " in first:
            await reader.readline()  # the blank line after 100 Continue
            writer.write(body)
            await writer.drain()
            lines.append(await reader.readline())
        return lines
    finally:
        writer.close()


async def test_expect_continue_checks_credentials_and_size_first(tmp_path: Path) -> None:
    body = json.dumps(load_fixture("firing_single.json")).encode()
    cfg = make_config(tmp_path, [{"host": "127.0.0.1", "port": 9}], routes=[], max_body="1MiB")
    async with running(cfg) as rx:
        request = (
            "POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Expect: 100-continue\r\nAuthorization: Bearer {token}\r\n"
            "Content-Length: {length}\r\n\r\n"
        )
        wrong = await _raw_request(rx.url, request.format(token="nope", length=10**8))
        big = await _raw_request(rx.url, request.format(token=TOKEN, length=10**8))
        ok = await _raw_request(rx.url, request.format(token=TOKEN, length=len(body)), body)
        # Not UTF-8: refused like any wrong token, not a 500.
        mangled = await _raw_request(
            rx.url, request.format(token="t0k\udcffn", length=len(body)), body
        )
    assert wrong == [b"HTTP/1.1 401 Unauthorized\r\n"]  # no body was invited
    assert big == [b"HTTP/1.1 413 Request Entity Too Large\r\n"]
    assert ok == [b"HTTP/1.1 100 Continue\r\n", b"HTTP/1.1 200 OK\r\n"]
    assert mangled == [b"HTTP/1.1 401 Unauthorized\r\n"]


async def test_burst_of_concurrent_webhooks_all_stored(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, [{"host": "127.0.0.1", "port": 9}], routes=[])
    async with running(cfg) as rx:
        base = load_fixture("firing_single.json")

        async def one(i: int) -> int:
            body = copy.deepcopy(base)
            body["groupKey"] = f"group-{i}"
            return (await rx.post(body)).status

        statuses = await asyncio.gather(*(one(i) for i in range(300)))
        assert statuses == [200] * 300
        store = rx.app[STORE]
        # No route: each was settled in its own ingest transaction, none left to dispatch.
        assert await store.run(store.store.pending_notifications, 1000) == []
    db = sqlite3.connect(tmp_path / "alertmail.db")
    states = db.execute("SELECT state, reason, COUNT(*) FROM notifications GROUP BY 1, 2")
    assert states.fetchall() == [("processed", "no route matched", 300)]


async def test_digest_only_notifications_are_settled_when_answered(tmp_path: Path) -> None:
    routes = [
        {
            "name": "digest",
            "matchers": ["severity!=critical"],
            "mode": "digest",
            "every": "1h",
            "email": ["team@example.com"],
        },
        {"name": "pager", "email": ["oncall@example.com"]},
    ]
    async with smtp_sink() as sink:
        cfg = make_config(tmp_path, [server(sink)], routes=routes)
        async with running(cfg) as rx:
            warning = load_fixture("warning_route_firing.json")
            critical = load_fixture("firing_single.json")
            assert warning["commonLabels"]["severity"] != "critical"
            assert critical["commonLabels"]["severity"] == "critical"
            answer = await (await rx.post(warning)).json()
            db = sqlite3.connect(tmp_path / "alertmail.db")
            # Answered: already in the digest, with no dispatcher pass.
            row = db.execute("SELECT state FROM notifications WHERE id=?", (answer["id"],))
            assert row.fetchone() == ("processed",)
            entries = db.execute("SELECT route, notification_id FROM digest_entries")
            assert entries.fetchall() == [("digest", answer["id"])]
            assert (await rx.post(critical)).status == 200
            (mail,) = await wait_mail(sink, 1)  # the critical one is dispatched and sent now
            db.close()
    assert "oncall@example.com" in mail["To"]


async def test_json_the_fast_parser_refuses_is_still_accepted_and_sent(tmp_path: Path) -> None:
    # A lone surrogate escape and an integer beyond 64 bits are valid JSON that orjson
    # refuses; such a body is still a notification (Alertmanager never retries a 4xx).
    body = json.dumps(load_fixture("firing_single.json"))
    body = body.replace('"truncatedAlerts": 0', '"truncatedAlerts": 123456789012345678901234567890')
    body = body.replace('"summary": "', '"summary": "broken \\ud800 text ', 1)
    assert "\\ud800" in body and "1234567890123456789012" in body
    async with smtp_sink() as sink, running(make_config(tmp_path, [server(sink)])) as rx:
        resp = await rx.post(body, headers={"Content-Type": "application/json"})
        assert resp.status == 200, await resp.text()
        (mail,) = await wait_mail(sink, 1)
    text = mail.get_body(("plain",)).get_content()
    assert "broken \ufffd text" in text  # the surrogate became U+FFFD, as Go writes it
