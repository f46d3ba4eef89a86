"""The email outbox worker's loop on the real app: slots, claims, and what it asks the store."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from receiver.keys import STORE
from tests.conftest import load_fixture
from tests.receiver.apphelpers import make_config, running, server, wait_mail
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
