"""Alert emails rendered in worker processes, and what happens when a worker dies."""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from receiver.model import parse_notification
from receiver.render import Renderer
from receiver.render_pool import AlertJob, RenderPool
from tests.conftest import load_fixture
from tests.receiver.apphelpers import parse


def job() -> AlertJob:
    return AlertJob(
        n=parse_notification(load_fixture("firing_group_3_alerts.json")),
        sender="Alerts <alerts@example.com>",
        recipients=("oncall@example.com",),
        thread_root="<root@example.com>",
        thread_subject=None,
        now=datetime(2026, 12, 3, 17, 0, tzinfo=UTC),
        graphs={},
    )


async def test_worker_renders_the_same_email_as_in_process() -> None:
    renderer = Renderer(None, ZoneInfo("Europe/Berlin"))
    pool = RenderPool(renderer, workers=1)
    inline = RenderPool(renderer, workers=0)
    try:
        raw, message_id, subject = await pool.render(job())
        raw2, _, subject2 = await inline.render(job())
    finally:
        pool.close()
    msg = parse(raw)
    assert msg["Message-ID"] == message_id and msg["In-Reply-To"] == "<root@example.com>"
    assert subject == subject2 == msg["Subject"]
    text = msg.get_body(("plain",))
    assert text is not None and "CET" in text.get_content()  # the worker got the time zone
    assert len(raw) > 1000 and len(raw2) > 1000


async def test_dead_worker_falls_back_and_pool_restarts() -> None:
    pool = RenderPool(Renderer(None, ZoneInfo("UTC")), workers=1)
    try:
        await pool.render(job())
        assert pool._pool is not None
        for pid in list(pool._pool._processes):  # the OOM killer, say
            os.kill(pid, signal.SIGKILL)
        raw, _, _ = await pool.render(job())  # rendered in-process this time
        assert parse(raw)["Subject"]
        raw, _, _ = await pool.render(job())  # and a fresh pool for the next
        assert parse(raw)["Subject"]
    finally:
        pool.close()


async def test_renders_of_one_turn_go_in_a_few_batches_each_to_its_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool = RenderPool(Renderer(None, ZoneInfo("UTC")), workers=2)
    sizes: list[int] = []
    original = RenderPool._render_batch

    async def counted(self: RenderPool, batch: list[Any]) -> None:
        sizes.append(len(batch))
        await original(self, batch)

    monkeypatch.setattr(RenderPool, "_render_batch", counted)
    jobs = [replace(job(), thread_subject=f"subject {i}") for i in range(10)]
    try:
        results = await asyncio.gather(*(pool.render(j) for j in jobs))
    finally:
        pool.close()
    assert [subject for _, _, subject in results] == [f"subject {i}" for i in range(10)]
    assert sizes == [3, 3, 3, 1]  # two batches per worker, one pipe round trip each


async def test_a_failing_email_fails_alone_in_its_batch(tmp_path: Path) -> None:
    # A broken template makes every email fall back to the plain one, and a sender that
    # even the plain one refuses makes that email fail.
    (tmp_path / "alert.html.j2").write_text("{% if %}")
    pool = RenderPool(Renderer(tmp_path, ZoneInfo("UTC")), workers=1)
    try:
        ok, bad = await asyncio.gather(
            pool.render(job()),
            pool.render(replace(job(), sender="a@example.com\r\nBcc: x@example.com")),
            return_exceptions=True,
        )
    finally:
        pool.close()
    assert isinstance(bad, ValueError)
    assert not isinstance(ok, BaseException)
    assert "built-in plain message" in parse(ok[0]).get_content()
