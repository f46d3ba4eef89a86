"""Re-queueing from the pages: needs ui_auth.write and the page's CSRF token."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import load_fixture
from tests.receiver.apphelpers import Running, server, wait_mail
from tests.receiver.web.test_pages import first_delivery, wait_state
from tests.receiver.web.webhelpers import UI_AUTH, csrf_of, get, get_json, running_ui, ui_config
from tests.smtp_servers import smtp_sink

REFUSE = "554 5.7.1 Message refused"


async def post(rx: Running, path: str, **kw: object) -> tuple[int, str, str | None]:
    headers = dict(kw.pop("headers", {}))  # type: ignore[call-overload]
    headers.setdefault("Authorization", UI_AUTH)
    resp = await rx.session.post(rx.url + path, allow_redirects=False, headers=headers, **kw)  # type: ignore[arg-type]
    return resp.status, await resp.text(), resp.headers.get("Location")


async def dead_delivery(rx: Running) -> int:
    await rx.post(load_fixture("firing_single.json"))
    outbox_id = await first_delivery(rx)
    await wait_state(rx, outbox_id, "dead")
    return outbox_id


async def test_requeue_refused_when_write_is_off(tmp_path: Path) -> None:
    async with (
        smtp_sink(data_reply=REFUSE) as sink,
        running_ui(ui_config(tmp_path, [server(sink)], write=False)) as rx,
    ):
        outbox_id = await dead_delivery(rx)
        _, page, _ = await get(rx, f"/deliveries/{outbox_id}")
        assert "/requeue" not in page
        token = csrf_of((await get(rx, "/preview"))[1])  # a valid token; write is off
        status, body, _ = await post(
            rx, f"/deliveries/{outbox_id}/requeue", data={"csrf_token": token}
        )
        api, api_body, _ = await post(
            rx, f"/api/deliveries/{outbox_id}/requeue", headers={"X-CSRF-Token": token}
        )
        detail = await get_json(rx, f"/api/deliveries/{outbox_id}")
    assert status == 403 and "ui_auth" in body and "write: true" in body
    assert api == 403 and "write" in api_body
    assert detail["state"] == "dead" and detail["history"] and len(detail["history"]) == 1
    assert "dead" in detail["status_text"] and REFUSE.split()[0] in detail["last_error"]


async def test_requeue_needs_csrf_token_then_resends(tmp_path: Path) -> None:
    async with (
        smtp_sink(data_reply=REFUSE) as sink,
        running_ui(ui_config(tmp_path, [server(sink)], write=True)) as rx,
    ):
        outbox_id = await dead_delivery(rx)
        path = f"/deliveries/{outbox_id}/requeue"
        no_token, body, _ = await post(rx, path, data={})
        wrong, _, _ = await post(rx, path, data={"csrf_token": "0" * 64})
        no_auth, _, _ = await post(rx, path, data={}, headers={"Authorization": ""})
        _, page, _ = await get(rx, f"/deliveries/{outbox_id}")
        assert 'action="/deliveries/' in page and "Re-queue now" in page
        ok, _, location = await post(rx, path, data={"csrf_token": csrf_of(page)})
        # The sink refuses again: the message is tried a second time and is dead again.
        await wait_state(rx, outbox_id, "dead")
        detail = await get_json(rx, f"/api/deliveries/{outbox_id}")
        _, flash_page, _ = await get(rx, location or "/")
        api_ok, api_body, _ = await post(
            rx,
            f"/api/deliveries/{outbox_id}/requeue",
            headers={"X-CSRF-Token": csrf_of(page)},
        )
    assert (no_token, wrong, no_auth) == (403, 403, 401)
    assert "CSRF" in body
    assert ok == 303 and location == f"/deliveries/{outbox_id}?requeued=1"
    assert "Re-queued" in flash_page
    assert len(detail["history"]) >= 2
    assert len(sink.messages) == 0
    assert api_ok == 200 and "re-queued" in api_body


async def test_sent_delivery_cannot_be_requeued(tmp_path: Path) -> None:
    async with (
        smtp_sink() as sink,
        running_ui(ui_config(tmp_path, [server(sink)], write=True)) as rx,
    ):
        await rx.post(load_fixture("firing_single.json"))
        await wait_mail(sink, 1)
        outbox_id = await first_delivery(rx)
        await wait_state(rx, outbox_id, "sent")
        _, page, _ = await get(rx, f"/deliveries/{outbox_id}")
        token = csrf_of((await get(rx, "/preview"))[1])
        status, body, _ = await post(
            rx, f"/deliveries/{outbox_id}/requeue", data={"csrf_token": token}
        )
    assert "Re-queue now" not in page
    assert status == 409 and "only dead or retrying" in body
