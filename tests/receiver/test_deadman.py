"""The dead man's switch with an injected clock: silence pages, the heartbeat's return says so."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from receiver.keys import SCHEDULER, STORE
from tests.conftest import load_fixture
from tests.receiver.apphelpers import FakeClock, at, make_config, running, server, wait_mail
from tests.smtp_servers import smtp_sink


def watchdog() -> dict[str, Any]:
    body = load_fixture("firing_single.json")
    body["receiver"] = "alertmail-watchdog"
    body["groupKey"] = '{}/{alertname="Watchdog"}:{alertname="Watchdog"}'
    body["groupLabels"] = {"alertname": "Watchdog"}
    body["commonLabels"] = {"alertname": "Watchdog", "severity": "none"}
    body["alerts"][0]["labels"] = {"alertname": "Watchdog", "severity": "none"}
    body["alerts"][0]["fingerprint"] = "watchdog"
    return body


async def test_silence_then_return(tmp_path: Path) -> None:
    clock = FakeClock(at("2026-12-03T10:00:00"))
    deadman = {"alertname": "Watchdog", "after": "10m", "email": ["oncall@example.com"]}
    async with smtp_sink() as sink:
        cfg = make_config(
            tmp_path, [server(sink)], deadman=deadman, routes=[{"email": ["team@example.com"]}]
        )
        async with running(cfg, clock=clock, run_scheduler=False) as rx:
            sched = rx.app[SCHEDULER]
            assert await sched.tick() == 0  # a fresh receiver does not page at once
            clock.now += 60
            assert (await rx.post(watchdog())).status == 200
            await asyncio.sleep(0.3)
            assert sink.messages == []  # the heartbeat is not emailed to the routes
            clock.now += 9 * 60
            assert await sched.tick() == 0  # 9 minutes of silence: within `after`
            clock.now += 2 * 60
            assert await sched.tick() == 1
            assert await sched.tick() == 0  # paged once, not every tick
            (broken,) = await wait_mail(sink, 1)
            assert (await rx.post(watchdog())).status == 200
            await asyncio.sleep(0.3)
            assert await sched.tick() == 1
            _, back = await wait_mail(sink, 2)
            store = rx.app[STORE]
            rows = await store.run(store.store.list_outbox)
    assert sink.messages[0].rcpt_tos == ["oncall@example.com"]
    assert "PIPELINE BROKEN" in broken["Subject"]
    assert "received again" in back["Subject"]
    assert {r.kind for r in rows} == {"deadman"}
    text = broken.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "11m" in text and "limit 10m" in text


async def test_repeated_heartbeats_are_never_dropped_as_duplicates(tmp_path: Path) -> None:
    deadman = {"alertname": "Watchdog", "after": "10m", "email": ["oncall@example.com"]}
    cfg = make_config(tmp_path, [{"host": "127.0.0.1", "port": 9}], deadman=deadman)
    async with running(cfg, run_scheduler=False) as rx:
        first = await (await rx.post(watchdog())).json()
        second_resp = await rx.session.post(
            rx.url + "/webhook", json=watchdog(), headers={"Authorization": "Bearer t0ken"}
        )
        second = await second_resp.json()
    assert first["duplicate"] is False and second["duplicate"] is False
