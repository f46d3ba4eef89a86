"""/preview: pasted, shipped and received payloads; template errors with file:line."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.conftest import load_fixture
from tests.receiver.apphelpers import Running, server, wait_mail
from tests.receiver.web.test_pages import HOSTILE, hostile_payload
from tests.receiver.web.webhelpers import UI_AUTH, get, running_ui, ui_config
from tests.smtp_servers import smtp_sink

NOWHERE = [{"host": "127.0.0.1", "port": 9}]


async def preview(rx: Running, **form: str) -> tuple[int, str]:
    form.setdefault("kind", "alert")
    form.setdefault("source", "paste")
    resp = await rx.session.post(rx.url + "/preview", data=form, headers={"Authorization": UI_AUTH})
    return resp.status, await resp.text()


def iframe_src(html: str) -> str:
    m = re.search(r'<iframe class="email" sandbox src="([^"]+)"', html)
    assert m, "no sandboxed iframe in the page"
    return m.group(1)


async def test_preview_pasted_payload(tmp_path: Path) -> None:
    async with running_ui(ui_config(tmp_path, NOWHERE)) as rx:
        status, page = await preview(rx, payload=json.dumps(load_fixture("firing_single.json")))
        frame_status, frame, frame_resp = await get(rx, iframe_src(page))
        expired, _, _ = await get(rx, "/preview/html/nope")
        _, form_page, _ = await get(rx, "/preview")
    assert status == 200
    assert 'class="subject">' in page and "HighErrorRate" in page
    assert "High error log rate on api" in page  # the text part
    assert frame_status == 200 and "<html" in frame.lower()
    assert frame_resp.headers["Content-Security-Policy"].startswith("sandbox;")
    assert expired == 404
    assert "firing_single.json" in form_page and 'value="paste"' in form_page
    assert 'option value="alert"' in form_page


async def test_preview_example_and_received_notification(tmp_path: Path) -> None:
    async with smtp_sink() as sink, running_ui(ui_config(tmp_path, [server(sink)])) as rx:
        example_status, example = await preview(rx, source="example:warning_route_firing.json")
        await rx.post(hostile_payload())
        await wait_mail(sink, 1)
        _, form_page = await preview(rx, source="example:nope.json")
        _, listing, _ = await get(rx, "/preview")
        nid = re.search(r'value="notification:(\d+)"', listing)
        assert nid, "the received notification is not offered"
        status, received = await preview(rx, source=f"notification:{nid.group(1)}")
    assert example_status == 200 and "WarningLinesLogged" in example
    assert "no example named" in form_page
    assert status == 200 and "<script>alert" not in received
    assert "&lt;script&gt;" in received and HOSTILE not in received


async def test_preview_shows_template_error_with_file_and_line(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()  # empty: the shipped templates are used, until one is overridden
    cfg = ui_config(tmp_path, NOWHERE, templates_dir=str(templates))
    payload = json.dumps(load_fixture("firing_single.json"))
    async with running_ui(cfg) as rx:
        ok_status, ok = await preview(rx, payload=payload)
        # A template author saves a broken override; the next preview reads it from disk.
        (templates / "alert.html.j2").write_text(
            "<html><body>\n<h1>{{ title }}</h1>\n<p>{{ no_such_value.field }}</p>\n</body></html>\n"
        )
        runtime_status, runtime_error = await preview(rx, payload=payload)
        (templates / "alert.html.j2").write_text("<html>\n{% if %}\n</html>\n")
        syntax_status, syntax_error = await preview(rx, payload=payload)
        bad_json_status, bad_json = await preview(rx, payload='{"version": "4", ')
        not_v4_status, not_v4 = await preview(rx, payload='{"version": "3"}')
        api = await rx.session.post(
            rx.url + "/api/preview",
            json={"kind": "alert", "payload": load_fixture("firing_single.json")},
            headers={"Authorization": UI_AUTH},
        )
        api_body = await api.json()
    assert ok_status == 200 and "Template error" not in ok
    assert runtime_status == 200 and "Template error" in runtime_error
    assert re.search(r'class="error-location">[^<]*alert\.html\.j2:3<', runtime_error)
    assert "no_such_value" in runtime_error
    assert '<span class="hit">   3  &lt;p&gt;{{ no_such_value.field }}' in runtime_error
    assert syntax_status == 200 and re.search(r"alert\.html\.j2:2<", syntax_error)
    assert bad_json_status == 200 and "the payload is not JSON" in bad_json
    assert not_v4_status == 200 and "not an Alertmanager v4 notification" in not_v4
    assert api.status == 200 and api_body["error_kind"] == "template"
    assert api_body["file"].endswith("alert.html.j2") and api_body["line"] == 2


async def test_preview_digest_and_slack(tmp_path: Path) -> None:
    payload = json.dumps(load_fixture("warning_route_firing.json"))
    async with running_ui(ui_config(tmp_path, NOWHERE)) as rx:
        _, form_page, _ = await get(rx, "/preview")
        digest_status, digest = await preview(rx, kind="digest", payload=payload)
        slack_status, slack = await preview(rx, kind="slack", payload=payload)
        unknown_status, unknown = await preview(rx, kind="fax", payload=payload)
    assert 'option value="digest"' in form_page and 'option value="slack"' in form_page
    assert digest_status == 200 and "Template error" not in digest
    assert "WarningLinesLogged" in digest and '<iframe class="email"' in digest
    assert slack_status == 200 and "&#34;blocks&#34;" in slack and "<iframe" not in slack
    assert unknown_status == 200 and "unknown template kind" in unknown
