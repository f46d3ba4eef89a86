"""End to end in a real headless Chromium: what an operator sees at 3 a.m.

Needs Debian's ``chromium`` and the ``playwright`` Python package (its bundled browsers are
not used: no ``playwright install``). Screenshots go to test-artifacts/ (gitignored).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from receiver.app import reload_app
from tests.conftest import load_fixture
from tests.receiver.apphelpers import Running, server
from tests.receiver.web.test_pages import first_delivery, wait_state
from tests.receiver.web.webhelpers import UI_PASSWORD, UI_USER, running_ui, ui_config
from tests.smtp_servers import CONNECT_REFUSED, closed_port, smtp_sink

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else shutil.which("chromium")
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}

try:
    from playwright.async_api import Browser, Page, async_playwright, expect
except ImportError:  # pragma: no cover - depends on the machine
    async_playwright = None  # type: ignore[assignment]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if async_playwright is None:
        pytest.skip("playwright is not installed (pip install playwright)")
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    async with async_playwright() as pw:
        b = await pw.chromium.launch(
            executable_path=CHROMIUM,
            args=ARGS,
            headless=True,
        )
        try:
            yield b
        finally:
            await b.close()


async def new_page(browser: Browser, base_url: str, **kw: Any) -> tuple[Page, list[str]]:
    """A page signed in to the UI, and the list its console errors are collected in."""
    context = await browser.new_context(
        base_url=base_url,
        http_credentials={"username": UI_USER, "password": UI_PASSWORD},
        **kw,
    )
    context.set_default_timeout(15_000)
    page = await context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return page, errors


async def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def test_delivery_appears_live_then_shows_the_email(tmp_path: Path, browser: Browser) -> None:
    async with smtp_sink() as sink, running_ui(ui_config(tmp_path, [server(sink)])) as rx:
        page, errors = await new_page(browser, rx.url)
        await page.goto("/?refresh=2")
        await expect(page.get_by_text("No deliveries yet.")).to_be_visible()
        await rx.post(load_fixture("firing_group_3_alerts.json"))
        # No reload: the page's script fetches /api/overview and replaces the sections.
        row = page.locator("tbody[data-rows='deliveries.recent'] tr").first
        await expect(row.locator(".badge")).to_have_text("sent", timeout=15_000)
        await expect(page.locator("tbody[data-rows='alerts.items'] tr")).to_have_count(3)
        await expect(page.locator("[data-refresh-note]")).to_contain_text("live")
        await shot(page, "overview-desktop")
        await row.get_by_role("link").click()
        await expect(page.locator("h1")).to_contain_text("Delivery #")
        email = page.frame_locator("iframe.email")
        await expect(email.get_by_role("heading", level=1)).to_contain_text("HighErrorRate")
        await expect(page.locator("pre.text-part")).to_contain_text("High error log rate")
        await shot(page, "delivery-sent-desktop")
        await page.locator("iframe.email").scroll_into_view_if_needed()
        await page.screenshot(path=str(ARTIFACTS / "delivery-sent-email.png"))
        assert errors == []


async def test_smtp_down_shows_retrying_and_error(tmp_path: Path, browser: Browser) -> None:
    async with closed_port() as dead:
        # A long first backoff: the delivery stays "retrying" while the page is looked at,
        # instead of flickering through "sending" on the next attempt.
        smtp = {
            "from": "Alerts <alerts@example.com>",
            "servers": [server(dead)],
            "retry": {"initial": "60s", "max": "5m"},
        }
        cfg = ui_config(tmp_path, [server(dead)], smtp=smtp)
        async with running_ui(cfg) as rx:
            await _retrying_delivery_pages(rx, browser)


async def _retrying_delivery_pages(rx: Running, browser: Browser) -> None:
    await rx.post(load_fixture("firing_single.json"))
    outbox_id = await first_delivery(rx)
    await wait_state(rx, outbox_id, "retrying")
    page, errors = await new_page(browser, rx.url, color_scheme="dark", **PHONE)
    await page.goto("/")
    await expect(page.locator(".health-failing").first).to_be_visible()
    await shot(page, "overview-phone-dark")
    await page.goto("/deliveries?state=retrying")
    await expect(page.locator("tbody .badge.state-retrying").first).to_be_visible()
    await page.get_by_label("Delivery details").first.click()
    await expect(page.locator(".error-text").first).to_contain_text(re.compile(CONNECT_REFUSED))
    await expect(page.locator(".status-line")).to_contain_text("retry in")
    await shot(page, "delivery-retrying-phone-dark")
    await page.locator("iframe.email").scroll_into_view_if_needed()
    await page.screenshot(path=str(ARTIFACTS / "delivery-retrying-phone-dark-email.png"))
    bg = await page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert bg == "rgb(17, 20, 24)"  # the dark palette is in use
    assert errors == []


def _config_file(path: Path, tmp_path: Path, smtp_port: int) -> None:
    data = {
        "listen": "127.0.0.1:0",
        "auth": {"bearer_token": "t0ken"},
        "ui_auth": {"basic_auth": {"username": UI_USER, "password": UI_PASSWORD}, "write": True},
        "storage": {"path": str(tmp_path / "alertmail.db")},
        "smtp": {
            "from": "Alerts <alerts@example.com>",
            "servers": [{"host": "127.0.0.1", "port": smtp_port, "starttls": False}],
        },
        "routes": [{"email": ["oncall@example.com"]}],
    }
    path.write_text(yaml.safe_dump(data))


async def test_requeue_a_dead_delivery(tmp_path: Path, browser: Browser) -> None:
    from receiver.config import load_config

    cfg_path = tmp_path / "alertmail.yml"
    async with smtp_sink(data_reply="554 5.7.1 Refused") as refusing, smtp_sink() as good:
        _config_file(cfg_path, tmp_path, refusing.port)
        async with running_ui(load_config(cfg_path), config_path=cfg_path) as rx:
            await rx.post(load_fixture("firing_single.json"))
            outbox_id = await first_delivery(rx)
            await wait_state(rx, outbox_id, "dead")
            # The operator fixes the mail relay, then re-sends the dead message.
            _config_file(cfg_path, tmp_path, good.port)
            await reload_app(rx.app)
            page, errors = await new_page(browser, rx.url)
            await page.goto(f"/deliveries/{outbox_id}")
            await expect(page.locator("h1 .badge")).to_have_text("dead")
            await expect(page.locator("dd").filter(has_text="554 5.7.1").first).to_be_visible()
            await shot(page, "delivery-dead-desktop")
            await page.get_by_role("button", name=f"Re-queue delivery {outbox_id}").click()
            await expect(page.locator(".flash")).to_contain_text("Re-queued")
            await wait_state(rx, outbox_id, "sent")
            await page.reload()
            await expect(page.locator("h1 .badge")).to_have_text("sent")
            assert len(good.messages) == 1
            assert errors == []


async def test_preview_shows_template_error_line(tmp_path: Path, browser: Browser) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    cfg = ui_config(tmp_path, [{"host": "127.0.0.1", "port": 9}], templates_dir=str(templates))
    async with running_ui(cfg) as rx:
        (templates / "alert.html.j2").write_text(
            "<html><body>\n<h1>{{ title }}</h1>\n<p>{{ alerts[0].nope }}</p>\n</body></html>\n"
        )
        page, errors = await new_page(browser, rx.url)
        await page.goto("/preview")
        await page.get_by_label("Payload").select_option("paste")
        await page.get_by_label("Alertmanager webhook JSON").fill(
            json.dumps(load_fixture("firing_single.json"), indent=2)
        )
        await page.get_by_role("button", name="Render").click()
        await expect(page.locator(".error-location")).to_contain_text("alert.html.j2:3")
        await expect(page.locator("pre.source .hit")).to_contain_text("alerts[0].nope")
        await shot(page, "preview-template-error")
        # Fixed on disk, rendered again: the preview shows the email.
        (templates / "alert.html.j2").unlink()
        await page.get_by_role("button", name="Render").click()
        email = page.frame_locator("iframe.email")
        await expect(email.get_by_role("heading", level=1)).to_contain_text("HighErrorRate")
        await shot(page, "preview-ok")
        assert errors == []
