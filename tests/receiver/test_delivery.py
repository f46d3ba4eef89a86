"""The email outbox worker's loop on the real app: slots, claims, and what it asks the store."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from receiver.keys import STORE
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
            # Both slots busy (the sink answers DATA after 0.5 s), 3 messages queued.
            await wait_for(lambda: sink.active == 2, what="two sends in flight")
            busy_from = len(asked)
            await wait_for(lambda: len(sink.messages) >= 1, what="the first send to end")
            while_busy = asked[busy_from:]
            await wait_mail(sink, 5)
    # While no slot was free, the worker waited for one instead of polling the store for
    # the next due time (one store job less per message in a storm).
    assert "next_due_at" not in while_busy
    assert sink.peak_connections <= 2
    assert len({m.data for m in sink.messages}) == 5
