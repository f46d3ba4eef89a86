"""A receiver with no smtp section still routes, records and keeps dispatching."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path

from receiver.config import config_from_dict
from receiver.keys import STORE
from tests.conftest import load_fixture
from tests.receiver.apphelpers import TOKEN, running


async def test_no_smtp_and_no_routes_still_processes_everything(tmp_path: Path) -> None:
    cfg = config_from_dict(
        {"auth": {"bearer_token": TOKEN}, "storage": {"path": str(tmp_path / "a.db")}}
    )
    async with running(cfg) as rx:
        for i in range(3):
            body = copy.deepcopy(load_fixture("firing_single.json"))
            body["groupKey"] = f"group-{i}"
            assert (await rx.post(body)).status == 200
        store = rx.app[STORE]
        for _ in range(100):
            if not await store.run(store.store.pending_notifications):
                break
            await asyncio.sleep(0.05)
        assert await store.run(store.store.pending_notifications) == []
