"""Alert emails rendered in worker processes, and what happens when a worker dies."""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

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
