"""The email outbox worker on the real app: slots, claims, deferred recipients, stopping."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import pytest

from receiver.delivery import backoff_delay
from receiver.keys import EMAIL_WORKER, STORE
from tests.conftest import load_fixture
from tests.receiver.apphelpers import make_config, running, server, wait_for, wait_mail
from tests.smtp_servers import smtp_sink


def group(i: int) -> dict[str, Any]:
    body = copy.deepcopy(load_fixture("firing_single.json"))
    body["groupKey"] = f'{{}}:{{alertname="HighErrorRate", n="{i}"}}'
    body["groupLabels"] = {"alertname": "HighErrorRate", "n": str(i)}
    return body


async def test_all_slots_busy_waits_without_asking_when_the_next_is_due(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with smtp_sink(data_delay=0.5) as sink:
        smtp = {
            "from": "Alerts <alerts@example.com>",
            "servers": [server(sink)],
            "pool": {"max_connections": 2},
        }
        cfg = make_config(tmp_path, [server(sink)], smtp=smtp)
        async with running(cfg) as rx:
            store = rx.app[STORE]
            asked: list[str] = []
            run = store.run

            async def recording(fn: Any, *args: Any, **kw: Any) -> Any:
                asked.append(fn.__name__)
                return await run(fn, *args, **kw)

            monkeypatch.setattr(store, "run", recording)
            for i in range(5):
                assert (await rx.post(group(i))).status == 200
            # Two slots, and the sink answers DATA after 0.5 s: three rounds of sends, two
            # of them with every slot busy and messages still queued.
            await wait_mail(sink, 5)
    # While no slot is free, the worker waits for one instead of asking the store when
    # the next message is due (which, with messages overdue, it asked every few ms: one
    # store job more per message in a storm). Idle, it asks about once a second.
    assert asked.count("next_due_at") <= 20, asked  # ~7 here; ~180 when it polled
    assert asked.count("claim_due") >= 3
    assert sink.peak_connections <= 2
    assert len({m.data for m in sink.messages}) == 5


async def test_recipient_deferred_at_rcpt_gets_the_same_message_later(tmp_path: Path) -> None:
    busy = "busy@example.com"
    async with smtp_sink(defer={busy}) as sink:
        routes = [{"email": ["oncall@example.com", busy]}]
        async with running(make_config(tmp_path, [server(sink)], routes=routes)) as rx:
            assert (await rx.post(load_fixture("firing_single.json"))).status == 200
            (first,) = await wait_mail(sink, 1)
            store = rx.app[STORE]
            rows = await store.run(store.store.list_outbox)
            by_state = {r.state: r for r in rows}
            assert set(by_state) == {"sent", "retrying"}
            assert by_state["sent"].recipients == ["oncall@example.com", busy]
            assert by_state["retrying"].recipients == [busy]
            assert "450" in (by_state["retrying"].last_error or "")
            sink.defer.clear()  # the mailbox is free again
            _, second = await wait_mail(sink, 2)
            rows = await store.run(store.store.list_outbox)
    assert sink.messages[0].rcpt_tos == ["oncall@example.com"]
    assert sink.messages[1].rcpt_tos == [busy]
    assert second["Message-ID"] == first["Message-ID"]  # the same message, resent
    assert sorted(r.state for r in rows) == ["sent", "sent"]


async def test_a_claim_that_returns_after_stop_began_starts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with smtp_sink() as sink, running(make_config(tmp_path, [server(sink)])) as rx:
        worker, store = rx.app[EMAIL_WORKER], rx.app[STORE]
        run = store.run
        stopping: list[asyncio.Task[None]] = []

        async def racing(fn: Any, *args: Any, **kw: Any) -> Any:
            result = await run(fn, *args, **kw)
            if fn.__name__ == "claim_due" and result and not stopping:
                stopping.append(asyncio.create_task(worker.stop(5)))
                await asyncio.sleep(0)  # stop() has begun before the worker sees rows
            return result

        monkeypatch.setattr(store, "run", racing)
        assert (await rx.post(load_fixture("firing_single.json"))).status == 200
        await wait_for(lambda: bool(stopping) and stopping[0].done(), what="stop()")
        rows = await run(store.store.list_outbox)
    # Put back, not sent after stop() returned (nor cut off mid-send): the next start sends it.
    assert [r.state for r in rows] == ["queued"]
    assert sink.messages == []


def test_backoff_is_capped_and_never_overflows() -> None:
    for attempts in (1, 5, 20, 1100, 10**6):
        for rand in (0.0, 0.5, 1.0):
            delay = backoff_delay(attempts, 0.2, 60.0, rand)
            assert 0.0 <= delay <= 60.0
    assert backoff_delay(1, 1.0, 60.0, 0.5) == 1.0  # the middle of +-20% jitter
    assert backoff_delay(3, 1.0, 60.0, 0.0) == pytest.approx(3.2)  # 4 s, -20%


async def test_an_outcome_the_store_would_not_take_is_stored_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from receiver.errors import StoreError

    async with smtp_sink() as sink, running(make_config(tmp_path, [server(sink)])) as rx:
        worker, store = rx.app[EMAIL_WORKER], rx.app[STORE]
        monkeypatch.setattr(worker, "RECORD_WAITS", (0.01,))
        finish = store.finish
        refusals = [3]

        async def busy(outcome: Any) -> str:
            if refusals[0]:
                refusals[0] -= 1
                raise StoreError("database is locked")
            return await finish(outcome)

        monkeypatch.setattr(store, "finish", busy)
        assert (await rx.post(load_fixture("firing_single.json"))).status == 200
        await wait_mail(sink, 1)

        async def states() -> list[str]:
            return [r.state for r in await store.run(store.store.list_outbox)]

        for _ in range(200):  # the worker stores it once the database takes writes again
            if await states() == ["sent"]:
                break
            await asyncio.sleep(0.05)
        assert await states() == ["sent"]
        assert refusals == [0] and len(sink.messages) == 1  # recorded, not sent again


async def test_stop_makes_a_last_try_at_storing_outcomes(tmp_path: Path) -> None:
    from receiver.delivery import EmailWorker
    from receiver.keys import METRICS, RUNTIME
    from receiver.store import NewMessage
    from receiver.store_types import Outcome

    # No smtp: the app's own email worker claims nothing here.
    async with running(make_config(tmp_path, [], smtp=None, routes=[])) as rx:
        store = rx.app[STORE]
        message = NewMessage("email", '["a@example.com"]', "test", 0, b"m", 1.0)
        await store.run(store.store.enqueue, [message], 1.0)
        # claimed and sent by a worker whose outcome the store refused at the time
        (row,) = await store.run(store.store.claim_due, "email", 2.0, 1)
        worker = EmailWorker(store, rx.app[RUNTIME], rx.app[METRICS])  # its loop not running
        worker._unrecorded[row.id] = Outcome(row.id, 3.0, "sent", [], {"server": "mx"})
        await worker.stop(0.1)
        (after,) = await store.run(store.store.list_outbox)
    assert (after.state, after.server) == ("sent", "mx")
