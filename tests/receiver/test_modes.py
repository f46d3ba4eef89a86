"""Routing modes end to end: digests (with a restart), flood limit and catch-ups, quiet hours."""

from __future__ import annotations

import asyncio
import copy
import time
from pathlib import Path
from typing import Any

from receiver.keys import DISPATCHER, SCHEDULER, STORE
from receiver.model import parse_notification
from tests.conftest import load_fixture
from tests.receiver.apphelpers import (
    FakeClock,
    at,
    make_config,
    parse,
    running,
    server,
    wait_for,
    wait_mail,
)
from tests.smtp_servers import smtp_sink


def warning_group(name: str) -> dict[str, Any]:
    body = load_fixture("warning_route_firing.json")
    body["groupKey"] = f'{{}}:{{alertname="{name}"}}'
    body["groupLabels"] = {"alertname": name}
    body["commonLabels"]["alertname"] = name
    for a in body["alerts"]:
        a["labels"]["alertname"] = name
        a["fingerprint"] = f"{name}-{a['fingerprint']}"
    return body


async def test_two_digest_windows_across_restart(tmp_path: Path) -> None:
    routes = [
        {
            "name": "team-digest",
            "matchers": ['severity="warning"'],
            "email": ["team@example.com"],
            "mode": "digest",
            "every": "1h",
        }
    ]
    clock = FakeClock(at("2026-12-03T10:05:00"))
    async with smtp_sink() as sink:
        cfg = make_config(tmp_path, [server(sink)], routes=routes, timezone="UTC")
        async with running(cfg, clock=clock, run_scheduler=False) as rx:
            assert (await rx.post(warning_group("DiskFilling"))).status == 200
            await asyncio.sleep(0.3)
            assert await rx.app[SCHEDULER].tick() == 0  # window still open
            clock.now = at("2026-12-03T11:00:30")
            assert await rx.app[SCHEDULER].tick() == 1
            (first,) = await wait_mail(sink, 1)
            assert (await rx.post(warning_group("QueueSlow"))).status == 200
            await asyncio.sleep(0.3)
        # Restart (same database): the first window is not sent again, the second is.
        clock.now = at("2026-12-03T12:00:05")
        async with running(cfg, clock=clock, run_scheduler=False) as rx:
            assert await rx.app[SCHEDULER].tick() == 1
            assert await rx.app[SCHEDULER].tick() == 0
            _, second = await wait_mail(sink, 2)
            await asyncio.sleep(0.3)
    assert len(sink.messages) == 2
    t1 = first.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    t2 = second.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "DiskFilling" in t1 and "QueueSlow" not in t1
    assert "QueueSlow" in t2 and "DiskFilling" not in t2
    assert "10:00:00" in t1 and "11:00:00" in t1
    assert "1 group firing" in t1
    assert first["Subject"].startswith("[alertmail] Digest for team-digest")
    assert first["In-Reply-To"] is None  # a digest is a thread of its own


async def test_quiet_hours_hold_non_critical_until_they_end(tmp_path: Path) -> None:
    routes = [{"email": ["team@example.com"], "quiet_hours": {"from": "22:00", "to": "07:00"}}]
    clock = FakeClock(at("2026-12-03T23:00:00"))
    async with smtp_sink() as sink:
        cfg = make_config(tmp_path, [server(sink)], routes=routes, timezone="UTC")
        async with running(cfg, clock=clock, run_scheduler=False) as rx:
            await rx.post(warning_group("NightlyWarning"))
            await rx.post(load_fixture("firing_single.json"))  # critical: not held
            (mail,) = await wait_mail(sink, 1)
            assert "HighErrorRate" in mail["Subject"]
            store = rx.app[STORE]
            rows = await store.run(store.store.list_outbox)
            held = [r for r in rows if r.state == "queued"]
            assert len(held) == 1 and held[0].next_attempt_at == at("2026-12-04T07:00:00")
            clock.now = at("2026-12-04T07:00:01")
            _, morning = await wait_mail(sink, 2)
    assert "NightlyWarning" in morning["Subject"]


async def test_storm_is_flood_limited_and_critical_arrives_in_catchup(tmp_path: Path) -> None:
    flood = {"max_emails": 10, "window": "10m", "catchup_every": "3s"}
    async with smtp_sink() as sink:
        cfg = make_config(tmp_path, [server(sink)], flood=flood)
        async with running(cfg) as rx:
            bodies = []
            for g in range(100):
                body = copy.deepcopy(warning_group(f"Storm{g:03d}"))
                body["alerts"] += copy.deepcopy(body["alerts"][:2])
                for i, a in enumerate(body["alerts"]):
                    a["labels"]["instance"] = f"storm-{g:03d}-{i}"
                    a["fingerprint"] = f"fp-{g}-{i}"
                bodies.append(body)
            statuses = await asyncio.gather(*(rx.post(b) for b in bodies))
            assert all(s.status == 200 for s in statuses)
            await asyncio.sleep(0.5)
            critical = load_fixture("firing_single.json")
            posted = time.monotonic()
            assert (await rx.post(critical)).status == 200

            def has_critical() -> bool:
                return any(b"HighErrorRate" in m.data for m in sink.messages)

            await wait_for(has_critical, timeout=10, what="the critical alert")
            latency = time.monotonic() - posted
            await asyncio.sleep(4)  # let the last catch-up go out
            store = rx.app[STORE]
            rows = await store.run(store.store.list_outbox, None, 1000)
    print(f"critical during storm reached the inbox after {latency:.2f}s (catchup_every 3s)")
    assert latency < 3 + 2  # within catchup_every, plus scheduling slack
    kinds = [r.kind for r in rows]
    assert kinds.count("alert") <= 10
    catchups = [r for r in rows if r.kind == "catchup"]
    assert 1 <= len(catchups) <= 4
    text = "".join(
        (m.get_body(("plain",)).get_content())  # type: ignore[union-attr]
        for m in (await wait_mail(sink, 0))
    )
    missing = [
        f"storm-{g:03d}-{i}"
        for g in range(100)
        for i in range(5)
        if f"storm-{g:03d}-{i}" not in text
    ]
    assert missing == []
    # The catch-up lists the critical first.
    crit_catchup = next(m for m in sink.messages if b"HighErrorRate" in m.data)
    assert b"Catch-up" in crit_catchup.data


async def test_recipient_folded_from_the_first_message_gets_no_reply_to_it(
    tmp_path: Path,
) -> None:
    # b's budget goes on another group, so the incident's first email reaches only a; the
    # resolved message (never flood-limited) goes to both, but only a's replies to it.
    flood = {"max_emails": 1, "window": "10m", "catchup_every": "1h"}
    routes = [
        {"matchers": ['alertname="Noise"'], "email": ["b@example.com"]},
        {"email": ["a@example.com", "b@example.com"]},
    ]
    async with smtp_sink() as sink:
        cfg = make_config(tmp_path, [server(sink)], flood=flood, routes=routes)
        async with running(cfg) as rx:
            assert (await rx.post(warning_group("Noise"))).status == 200
            await wait_mail(sink, 1)
            assert (await rx.post(load_fixture("firing_single.json"))).status == 200

            def incident() -> list[Any]:
                # not b's catch-up, which lists the folded alert too
                return [
                    m
                    for m in sink.messages
                    if b"HighErrorRate" in m.data and b"Catch-up" not in m.data
                ]

            await wait_for(lambda: len(incident()) == 1, what="the first message")
            assert (await rx.post(load_fixture("resolved_single.json"))).status == 200
            await wait_for(lambda: len(incident()) == 3, what="the resolved messages")
    (first, *resolved) = incident()
    assert first.rcpt_tos == ["a@example.com"]
    root = parse(first.data)
    by_rcpt = {tuple(m.rcpt_tos): parse(m.data) for m in resolved}
    assert set(by_rcpt) == {("a@example.com",), ("b@example.com",)}
    to_a, to_b = by_rcpt[("a@example.com",)], by_rcpt[("b@example.com",)]
    assert to_a["In-Reply-To"] == root["Message-ID"] == to_a["References"]
    assert to_b["In-Reply-To"] is None and to_b["References"] is None
    assert root["Subject"] == to_a["Subject"] == to_b["Subject"]
    assert to_a["Message-ID"] != to_b["Message-ID"]


async def test_a_late_parse_handed_to_the_dispatcher_is_not_kept(tmp_path: Path) -> None:
    """A parsed notification cached for the dispatcher after its row was already taken
    (accepted() late) is dropped with the next batch, so the cache cannot fill for good."""
    async with smtp_sink() as sink, running(make_config(tmp_path, [server(sink)])) as rx:
        first = await (await rx.post(load_fixture("firing_single.json"))).json()
        await wait_mail(sink, 1)
        dispatcher = rx.app[DISPATCHER]
        late = parse_notification(load_fixture("firing_single.json"))
        dispatcher.accepted(first["id"], late)  # its row was processed long ago
        assert first["id"] in dispatcher._parsed
        second = await (await rx.post(load_fixture("resolved_single.json"))).json()
        await wait_mail(sink, 2)
        assert second["id"] > first["id"]
        assert dispatcher._parsed == {}
