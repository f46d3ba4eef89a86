"""Email rendering: MIME structure, thread headers, 3 a.m. content, size caps, hostile values.

Every message is rendered to bytes and parsed back, so the tests see what a mail client sees.
"""

from __future__ import annotations

import copy
import email
import email.policy
import json
import re
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import unquote
from zoneinfo import ZoneInfo

import pytest

from receiver.errors import TemplateError
from receiver.fallback import fallback_email
from receiver.model import Notification, parse_notification
from receiver.render import (
    HTML_BUDGET,
    InlineImage,
    Renderer,
    ThreadRef,
    envelope_address,
    make_message_id,
    packaged_templates_dir,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
BERLIN = ZoneInfo("Europe/Berlin")
SENDER = "Alerts <alerts@example.com>"
RECIPIENTS = ["oncall@example.com", "Team Ops <ops@example.org>"]
# 12 minutes after the fixtures' 16:28:37.865Z start.
NOW = datetime(2026, 12, 3, 16, 40, 37, 865000, tzinfo=UTC)
FIRST = ThreadRef(root_message_id=None, subject=None)
ROOT_ID = "<root.1@example.com>"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def raw(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def fixture(name: str) -> Notification:
    return parse_notification(raw(name))


@pytest.fixture
def renderer() -> Renderer:
    return Renderer(None, BERLIN)


def send(
    renderer: Renderer,
    n: Notification,
    *,
    thread: ThreadRef = FIRST,
    images: tuple[InlineImage, ...] = (),
    graph_cids: dict[str, str] | None = None,
    message_id: str = "<m.1@example.com>",
) -> EmailMessage:
    """Render as it is sent (the wire bytes) and parse back as a mail client would."""
    wire = renderer.alert_wire(
        n,
        sender=SENDER,
        recipients=RECIPIENTS,
        message_id=message_id,
        thread=thread,
        now=NOW,
        images=images,
        graph_cids=graph_cids or {},
    )
    parsed = email.message_from_bytes(wire.data, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    assert not [d for part in parsed.walk() for d in part.defects]
    assert (wire.message_id, wire.subject) == (parsed["Message-ID"], parsed["Subject"])
    return parsed


def bodies(msg: EmailMessage) -> tuple[str, str]:
    html = msg.get_body(("html",))
    text = msg.get_body(("plain",))
    assert html is not None and text is not None
    # Bodies travel with CRLF line ends; compare text the way a client displays it.
    return html.get_content().replace("\r\n", "\n"), text.get_content().replace("\r\n", "\n")


def header_block(msg: EmailMessage) -> list[str]:
    head = msg.as_bytes().split(b"\r\n\r\n", 1)[0].decode("ascii")
    return head.split("\r\n")


def with_alerts(base: str, alerts: list[dict[str, Any]], **extra: Any) -> Notification:
    payload = raw(base)
    payload["alerts"] = alerts
    payload.update(extra)
    return parse_notification(payload)


def many_alerts(
    count: int, *, description: str = "short", severity_cycle: bool = False
) -> list[dict[str, Any]]:
    template = raw("firing_group_3_alerts")["alerts"][0]
    severities = ["info", "warning", "critical"]
    out = []
    for i in range(count):
        a = copy.deepcopy(template)
        a["labels"]["service"] = f"svc{i:03d}"
        if severity_cycle:
            a["labels"]["severity"] = severities[i % 3]
        a["annotations"]["description"] = description
        a["fingerprint"] = f"fp{i:05d}"
        out.append(a)
    return out


def hrefs(html: str) -> list[str]:
    return [h.replace("&amp;", "&") for h in re.findall(r'href="([^"]*)"', html)]


# --- structure -----------------------------------------------------------------------------


def test_alternative_with_real_text_part(renderer: Renderer) -> None:
    msg = send(renderer, fixture("firing_single"))
    assert msg.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in msg.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    html, text = bodies(msg)
    assert "High error log rate on api (127.0.0.1:19100)" in text
    assert "Silence: http://127.0.0.1:19093/#/silences/new?filter=" in text
    assert "<" not in text.splitlines()[0]
    assert html.lstrip().startswith("<!DOCTYPE html>")
    assert all(p.get_content_charset() == "utf-8" for p in msg.iter_parts())


def test_images_make_related_part_with_content_ids(renderer: Renderer) -> None:
    n = fixture("firing_group_3_alerts")
    fp = n.alerts[0].fingerprint
    msg = send(
        renderer,
        n,
        images=(InlineImage(cid=f"graph-{fp}@alertmail", data=PNG),),
        graph_cids={fp: f"graph-{fp}@alertmail"},
    )
    assert msg.get_content_type() == "multipart/alternative"
    plain, related = list(msg.iter_parts())
    assert plain.get_content_type() == "text/plain"
    assert related.get_content_type() == "multipart/related"
    html_part, image = list(related.iter_parts())
    assert html_part.get_content_type() == "text/html"
    assert image.get_content_type() == "image/png"
    assert image["Content-ID"] == f"<graph-{fp}@alertmail>"
    assert image.get_content_disposition() == "inline"
    assert image.get_content() == PNG
    html = html_part.get_content()
    assert f'src="cid:graph-{fp}@alertmail"' in html
    assert html.count('src="cid:') == 1  # only the alert the graph belongs to


def test_css_is_inlined_and_only_media_queries_stay(renderer: Renderer) -> None:
    html, _ = bodies(send(renderer, fixture("firing_single")))
    h1 = re.search(r"<h1[^>]*>", html)
    assert h1 is not None and "style=" in h1.group(0) and "color: #b91c1c" in h1.group(0)
    styles = re.findall(r"<style>(.*?)</style>", html, re.S)
    assert styles and all(s.strip().startswith("@media") for s in styles)


# --- headers and threads -------------------------------------------------------------------


def test_headers_of_first_message(renderer: Renderer) -> None:
    msg = send(renderer, fixture("firing_single"), message_id="<abc.123@example.com>")
    assert msg["From"] == SENDER
    assert [a.addr_spec for a in msg["To"].addresses] == ["oncall@example.com", "ops@example.org"]
    assert msg["Subject"] == "[alertmail] HighErrorRate"
    assert msg["Message-ID"] == "<abc.123@example.com>"
    assert msg["Date"].datetime == NOW.replace(microsecond=0)
    assert msg["Date"].datetime.utcoffset() == timedelta(hours=1)  # shown in Berlin time
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg["MIME-Version"] == "1.0"
    assert msg["In-Reply-To"] is None and msg["References"] is None


def test_reply_headers_point_at_thread_root(renderer: Renderer) -> None:
    thread = ThreadRef(root_message_id=ROOT_ID, subject=None)
    msg = send(renderer, fixture("resolved_single"), thread=thread)
    assert msg["In-Reply-To"] == ROOT_ID
    assert msg["References"] == ROOT_ID


def test_subject_is_stable_across_a_thread(renderer: Renderer) -> None:
    names = ["firing_single", "resolved_single", "mixed_group_one_resolved"]
    subjects = {send(renderer, fixture(name))["Subject"] for name in names}
    assert subjects == {"[alertmail] HighErrorRate"}
    assert renderer.thread_subject(fixture("firing_single")) == "[alertmail] HighErrorRate"


def test_thread_subject_from_group_labels_without_status() -> None:
    payload = raw("warning_route_firing")
    payload["groupLabels"] = {"alertname": "HighErrorRate", "service": "api"}
    subject = Renderer(None, BERLIN).thread_subject(parse_notification(payload))
    assert subject == "[alertmail] HighErrorRate (service=api)"
    payload["groupLabels"] = {}
    assert Renderer(None, BERLIN).thread_subject(parse_notification(payload)) == (
        "[alertmail] alerts for webhook-warning"
    )


def test_stored_thread_subject_is_reused_verbatim(renderer: Renderer) -> None:
    stored = "[alertmail] HighErrorRate (as first sent)"
    msg = send(renderer, fixture("resolved_single"), thread=ThreadRef(ROOT_ID, stored))
    assert msg["Subject"] == stored


def test_subject_length_is_capped(renderer: Renderer) -> None:
    payload = raw("firing_single")
    payload["groupLabels"] = {"alertname": "A" * 90, "x": "y" * 90, "z": "w" * 90}
    subject = renderer.thread_subject(parse_notification(payload))
    assert len(subject) <= 160 and "\n" not in subject


def test_non_ascii_values_survive(renderer: Renderer) -> None:
    payload = raw("firing_single")
    payload["groupLabels"] = {"alertname": "Fehlerrate hoch"}
    payload["alerts"][0]["labels"]["service"] = "zahlungsdienst-ü"
    payload["alerts"][0]["annotations"]["summary"] = "Zahlungen schlagen fehl: 日本語 ✓"
    msg = send(renderer, parse_notification(payload))
    assert msg["Subject"] == "[alertmail] Fehlerrate hoch"
    html, text = bodies(msg)
    assert "Zahlungen schlagen fehl: 日本語 ✓" in text
    assert "Zahlungen schlagen fehl: 日本語 ✓" in html
    assert "service=zahlungsdienst-ü" in text


# --- content for 3 a.m. ----------------------------------------------------------------------


def test_status_and_counts_in_first_line_and_preheader(renderer: Renderer) -> None:
    msg = send(renderer, fixture("mixed_group_one_resolved"))
    html, text = bodies(msg)
    expected = "FIRING: 2 critical, 1 resolved — HighErrorRate on db, worker"
    assert text.splitlines()[0] == expected
    preheader = re.search(r'<div style="display:none[^>]*>([^<]*)</div>', html)
    assert preheader is not None and preheader.group(1).startswith(expected)
    h1 = re.search(r"<h1[^>]*>(.*?)</h1>", html)
    assert h1 is not None and h1.group(1) == expected
    # The status is in the body, never the subject.
    assert "FIRING" not in msg["Subject"]


def test_resolved_only_first_line(renderer: Renderer) -> None:
    _, text = bodies(send(renderer, fixture("resolved_single")))
    assert text.splitlines()[0] == "RESOLVED: 1 alert — HighErrorRate on api"


def test_counts_by_severity(renderer: Renderer) -> None:
    n = with_alerts("firing_group_3_alerts", many_alerts(6, severity_cycle=True))
    _, text = bodies(send(renderer, n))
    assert text.splitlines()[0].startswith("FIRING: 2 critical, 2 warning, 2 info — HighErrorRate")


def test_times_in_configured_timezone_with_durations(renderer: Renderer) -> None:
    html, text = bodies(send(renderer, fixture("firing_single")))
    # startsAt 16:28:15.849Z is 17:28:15 in Berlin in December (CET).
    assert "firing for 12m, started 2026-12-03 17:28:15 CET" in text
    assert "firing for 12m · started 2026-12-03 17:28:15 CET" in html
    _, text = bodies(send(renderer, fixture("resolved_single")))
    assert "resolved after 11s, started 2026-12-03 17:28:15 CET, ended 2026-12-03 17:28:26 CET" in (
        text
    )


def test_summer_time_abbreviation() -> None:
    payload = raw("firing_single")
    payload["alerts"][0]["startsAt"] = "2026-07-01T10:00:00Z"
    msg = Renderer(None, BERLIN).alert_email(
        parse_notification(payload),
        sender=SENDER,
        recipients=RECIPIENTS,
        message_id="<x@example.com>",
        thread=FIRST,
        now=datetime(2026, 7, 1, 11, 5, tzinfo=UTC),
    )
    text = msg.get_body(("plain",))
    assert text is not None
    assert "firing for 1h 5m, started 2026-07-01 12:00:00 CEST" in text.get_content()


def test_silence_link_is_prefilled_and_encoded(renderer: Renderer) -> None:
    html, text = bodies(send(renderer, fixture("firing_single")))
    prefix = "http://127.0.0.1:19093/#/silences/new?filter="
    links = [h for h in hrefs(html) if h.startswith(prefix)]
    assert len(links) == 1
    encoded = links[0][len(prefix) :]
    assert not set('{}"=, ') & set(encoded)  # fully percent-encoded
    assert unquote(encoded) == (
        '{alertname="HighErrorRate",instance="127.0.0.1:19100",job="demo",'
        'level="error",service="api",severity="critical"}'
    )
    assert f"Silence: {links[0]}" in text


def test_silence_link_escapes_quotes_in_label_values(renderer: Renderer) -> None:
    payload = raw("firing_single")
    payload["alerts"][0]["labels"] = {"alertname": "Bad", "path": 'C:\\x "quoted"'}
    html, _ = bodies(send(renderer, parse_notification(payload)))
    link = next(h for h in hrefs(html) if "/silences/new" in h)
    assert unquote(link.split("filter=", 1)[1]) == '{alertname="Bad",path="C:\\\\x \\"quoted\\""}'


def test_runbook_and_generator_links(renderer: Renderer) -> None:
    payload = raw("firing_group_3_alerts")
    payload["alerts"][0]["annotations"]["runbook_url"] = "https://runbooks.example.com/errors"
    payload["alerts"][1]["annotations"]["runbook"] = "https://wiki.example.com/db?a=1&b=2"
    html, text = bodies(send(renderer, parse_notification(payload)))
    assert re.search(r'<a href="https://runbooks\.example\.com/errors"[^>]*>Runbook</a>', html)
    assert re.search(r'<a href="https://wiki\.example\.com/db\?a=1&amp;b=2"[^>]*>Runbook</a>', html)
    assert "Runbook: https://runbooks.example.com/errors" in text
    generator = payload["alerts"][0]["generatorURL"]
    assert generator in hrefs(html)
    assert f"Graph: {generator}" in text


@pytest.mark.parametrize(("count", "words"), [(7, "7 alerts"), (1, "1 alert")])
def test_truncated_alerts_are_stated(renderer: Renderer, count: int, words: str) -> None:
    payload = raw("firing_group_3_alerts")
    payload["truncatedAlerts"] = count
    html, text = bodies(send(renderer, parse_notification(payload)))
    assert f"Alertmanager left out {words} (max_alerts)" in text
    assert f"Alertmanager left out {words} (max_alerts)" in html


def test_no_truncation_note_without_truncation(renderer: Renderer) -> None:
    html, text = bodies(send(renderer, fixture("firing_group_3_alerts")))
    assert "left out" not in html and "left out" not in text
    assert "more alert" not in text


def test_fifty_alert_cap_keeps_most_important(renderer: Renderer) -> None:
    alerts = many_alerts(60, severity_cycle=True)
    for a in alerts[:12]:  # some resolved ones: they must be the ones left out first
        a["status"] = "resolved"
        a["endsAt"] = "2026-12-03T16:30:00Z"
    n = with_alerts("firing_group_3_alerts", alerts)
    html, text = bodies(send(renderer, n))
    assert text.count("\n[FIRING") + text.count("\n[RESOLVED") == 50
    assert html.count('<div class="card ') == 50
    assert "and 10 more alerts not shown (0 firing, 10 resolved)" in text
    assert "and 10 more alerts not shown (0 firing, 10 resolved)" in html
    # Firing critical first; the counts cover all 60 alerts, not only the shown 50.
    assert text.splitlines()[0].startswith("FIRING: 16 critical, 16 warning, 16 info, 12 resolved")
    first_block = text.split("\n\n[", 1)[1]
    assert first_block.startswith("FIRING critical]")


def test_size_cap_drops_detail_not_alerts(renderer: Renderer) -> None:
    n = with_alerts("firing_group_3_alerts", many_alerts(50, description="d" * 2048))
    msg = send(renderer, n)
    html, text = bodies(msg)
    assert len(html.encode()) < 100_000
    assert len(html.encode()) <= HTML_BUDGET
    assert "were left out" in html and "were left out" in text
    assert html.count('<div class="card ') == 50  # every alert is still there ...
    assert sum("/silences/new" in h for h in hrefs(html)) == 50  # ... with its silence link
    assert "d" * 2048 not in html
    # The labels dropped from each alert are shown once for the group.
    assert "Labels common to all alerts" in html and "job=demo" in text


def test_size_cap_holds_for_huge_values(renderer: Renderer) -> None:
    # Long PromQL makes long generator URLs; nothing but showing fewer alerts gets these under.
    alerts = many_alerts(50)
    for i, a in enumerate(alerts):
        a["labels"].update({f"k{j}": f"{i}" + "v" * 500 for j in range(20)})
        a["generatorURL"] = "http://prometheus.example.com/graph?g0.expr=" + "x" * 4000
    html, text = bodies(send(renderer, with_alerts("firing_group_3_alerts", alerts)))
    assert len(html.encode()) <= HTML_BUDGET
    assert "more alerts not shown" in html and "more alerts not shown" in text


# --- hostile values --------------------------------------------------------------------------


def test_crlf_in_alertname_cannot_inject_headers(renderer: Renderer) -> None:
    payload = raw("firing_single")
    evil = "HighErrorRate\r\nBcc: victim@evil.example\r\nX-Injected: 1"
    payload["groupLabels"]["alertname"] = evil
    payload["commonLabels"]["alertname"] = evil
    payload["alerts"][0]["labels"]["alertname"] = evil
    payload["alerts"][0]["labels"]["service"] = "api\nBcc: other@evil.example"
    thread = ThreadRef(ROOT_ID + "\r\nBcc: x@evil.example", "stored\r\nBcc: y@evil.example")
    for t in (FIRST, thread):
        msg = send(renderer, parse_notification(payload), thread=t)
        assert msg["Bcc"] is None and msg["X-Injected"] is None
        names = [line.split(":", 1)[0] for line in header_block(msg) if not line[:1].isspace()]
        assert "Bcc" not in names and "X-Injected" not in names
        assert "\n" not in msg["Subject"] and "\r" not in msg["Subject"]
    msg = send(renderer, parse_notification(payload))
    assert msg["Subject"] == "[alertmail] HighErrorRate Bcc: victim@evil.example X-Injected: 1"


def test_encoded_words_in_values_stay_literal_text(renderer: Renderer) -> None:
    # The header parser (and every mail client) decodes RFC 2047 encoded-words: one in a
    # label must not turn into CR/LF or NUL, nor into another header, once decoded.
    payload = raw("firing_single")
    evil = "=?utf-8?q?x=0D=0AReply-To:_attacker@evil.example=0D=0A=0D=0Ahi?= =?utf-8?q?a=00b?="
    for labels in (payload["groupLabels"], payload["commonLabels"], payload["alerts"][0]["labels"]):
        labels["alertname"] = evil
    n = parse_notification(payload)
    wire = send(renderer, n)
    obj = renderer.alert_email(
        n, sender=SENDER, recipients=RECIPIENTS, message_id="<m.2@example.com>", thread=FIRST,
        now=NOW,
    )  # fmt: skip
    plain = fallback_email(
        n, sender=SENDER, recipients=RECIPIENTS, message_id="<m.3@example.com>",
        subject=evil, root=None, now=NOW,
    )  # fmt: skip
    for msg in (wire, obj, plain):
        again = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
        assert again["Reply-To"] is None and msg["Reply-To"] is None
        subject = str(again["Subject"])
        assert not any(c in subject for c in "\r\n\x00"), subject
        # shown as the label was written (a word joiner keeps "=?" from starting a word)
        assert subject.replace("\u2060", "").endswith(evil)
        assert again.get_body(("plain",)) is not None  # the MIME structure is intact


def test_fallback_email_says_what_it_left_out() -> None:
    n = with_alerts("firing_group_3_alerts", many_alerts(53), truncatedAlerts=7)
    msg = fallback_email(
        n, sender=SENDER, recipients=RECIPIENTS,
        message_id="<m.4@example.com>", subject="s", root=None, now=NOW,
    )  # fmt: skip
    text = msg.get_content()
    assert "... and 3 more alerts not shown" in text
    assert "left out 7 more alerts" in text


def test_html_in_annotations_is_escaped(renderer: Renderer) -> None:
    payload = raw("firing_single")
    payload["alerts"][0]["annotations"]["summary"] = "<script>alert(1)</script>"
    payload["alerts"][0]["annotations"]["description"] = '<img src=x onerror="alert(2)">\nline 2'
    payload["alerts"][0]["labels"]["service"] = "<b>api</b>"
    html, text = bodies(send(renderer, parse_notification(payload)))
    assert "<script" not in html and "<b>api" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;api&lt;/b&gt;" in html
    assert "<br>" in html  # the description's own newline, added after escaping
    assert "<script>alert(1)</script>" in text  # plain text shows values as they are


def test_template_syntax_in_values_stays_literal(renderer: Renderer) -> None:
    payload = raw("firing_single")
    payload["alerts"][0]["annotations"]["summary"] = "{{ 7*7 }} {% for x in y %}"
    payload["alerts"][0]["labels"]["service"] = "{{ config }}"
    html, text = bodies(send(renderer, parse_notification(payload)))
    for body in (html, text):
        assert "{{ 7*7 }} {% for x in y %}" in body
        assert "{{ config }}" in body
        assert "49 " not in body


def test_only_http_links_become_hrefs(renderer: Renderer) -> None:
    payload = raw("firing_single")
    payload["alerts"][0]["annotations"]["runbook_url"] = "javascript:alert(document.cookie)"
    payload["alerts"][0]["generatorURL"] = "data:text/html;base64,PHNjcmlwdD4="
    payload["externalURL"] = "javascript:alert(3)//"
    html, text = bodies(send(renderer, parse_notification(payload)))
    assert all(h.startswith(("http://", "https://")) for h in hrefs(html))
    assert not any(h.startswith(("javascript:", "data:")) for h in hrefs(html))
    assert "Runbook: javascript:alert(document.cookie)" in html  # shown, as text
    assert "Graph: data:text/html;base64,PHNjcmlwdD4=" in html
    assert "Runbook: javascript:alert(document.cookie)" in text
    assert "/silences/new" not in html  # no safe Alertmanager URL, no silence link


def test_control_characters_are_removed_from_bodies(renderer: Renderer) -> None:
    payload = raw("firing_single")
    payload["alerts"][0]["annotations"]["summary"] = "bell\x07 esc\x1b[31m nul\x00 end"
    html, text = bodies(send(renderer, parse_notification(payload)))
    assert "bell esc[31m nul end" in text and "bell esc[31m nul end" in html
    assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f]", text + html)


# --- templates -------------------------------------------------------------------------------


def test_packaged_templates_pass_check(renderer: Renderer) -> None:
    assert (packaged_templates_dir() / "alert.html.j2").is_file()
    assert renderer.check() == []


def test_user_template_overrides_one_file(tmp_path: Path) -> None:
    (tmp_path / "alert.txt.j2").write_text(
        "CUSTOM {{ status_line }}\n{{ alerts | length }} shown\n"
    )
    r = Renderer(tmp_path, BERLIN)
    assert r.check() == []
    html, text = bodies(send(r, fixture("firing_group_3_alerts")))
    assert text.splitlines() == [
        "CUSTOM FIRING: 3 critical — HighErrorRate on api, db, worker",
        "3 shown",
    ]
    assert "High error log rate on db" in html  # the packaged HTML template still applies


def test_user_subject_template(tmp_path: Path) -> None:
    (tmp_path / "alert.subject.j2").write_text("[PROD] {{ title }}\n")
    assert send(Renderer(tmp_path, BERLIN), fixture("firing_single"))["Subject"] == (
        "[PROD] HighErrorRate"
    )


def test_check_reports_syntax_error_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "alert.html.j2"
    path.write_text("<p>fine</p>\n<p>fine</p>\n{% if %}\n")
    errors = Renderer(tmp_path, BERLIN).check()
    assert len(errors) == 1
    assert errors[0].startswith(f"{path}:3: ")


def test_check_reports_undefined_name_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "alert.txt.j2"
    path.write_text("{{ status_line }}\n{{ alerts | length }}\n{{ staus }}\n")
    errors = Renderer(tmp_path, BERLIN).check()
    assert errors and errors[0].startswith(f"{path}:3: ")
    assert "'staus' is undefined" in errors[0]


def test_broken_subject_template_is_reported_but_never_blocks_a_subject(tmp_path: Path) -> None:
    path = tmp_path / "alert.subject.j2"
    path.write_text("[X] {{ title }}\n{{ status_line }}\n")  # status_line is not available here
    r = Renderer(tmp_path, BERLIN)
    errors = r.check()
    assert errors and errors[0].startswith(f"{path}:2: ")
    assert r.thread_subject(fixture("firing_single")) == "[alertmail] HighErrorRate"


def test_sandbox_blocks_unsafe_attribute_access(tmp_path: Path) -> None:
    (tmp_path / "alert.txt.j2").write_text("{{ status_line.__class__.__mro__ }}\n")
    errors = Renderer(tmp_path, BERLIN).check()
    assert errors and "alert.txt.j2:1: " in errors[0]
    with pytest.raises(TemplateError, match=r"alert\.txt\.j2:1"):
        send(Renderer(tmp_path, BERLIN), fixture("firing_single"))


def test_render_string_for_other_templates(tmp_path: Path) -> None:
    (tmp_path / "slack.txt.j2").write_text("{{ value }}\n")
    (tmp_path / "digest.html.j2").write_text("<p>{{ value }}</p>\n")
    r = Renderer(tmp_path, BERLIN)
    assert r.render_string("slack.txt.j2", value="<b>") == "<b>\n"
    assert r.render_string("digest.html.j2", value="<b>") == "<p>&lt;b&gt;</p>\n"
    assert r.check() == []  # unknown templates are compiled, not rendered without context


# --- test email and helpers ------------------------------------------------------------------


def test_test_email(renderer: Renderer) -> None:
    msg = renderer.test_email(sender=SENDER, to="me@example.com", message_id="<t@x>", now=NOW)
    parsed = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    assert parsed.get_content_type() == "multipart/alternative"
    assert parsed["To"] == "me@example.com"
    assert parsed["Subject"] == "[alertmail] test message"
    assert parsed["Auto-Submitted"] == "auto-generated"
    html, text = bodies(parsed)
    assert "2026-12-03 17:40:37 CET" in text and "me@example.com" in html


def test_message_id_and_envelope_address() -> None:
    assert envelope_address("Alerts <alerts@example.com>") == "alerts@example.com"
    assert envelope_address("alerts@example.com") == "alerts@example.com"
    first, second = make_message_id(SENDER), make_message_id(SENDER)
    assert re.fullmatch(r"<[0-9a-f]{32}\.\d+@example\.com>", first)
    assert first != second
    assert make_message_id("no-domain").endswith("@alertmail.invalid>")


@pytest.mark.parametrize(
    "value",
    [
        "plain value",
        "  padded  ",
        "two  spaces",
        "tab\there",
        "line\nbreak\r\nand\rcr",
        "nul\x00 esc\x1b del\x7f c1\x85",
        "nbsp\xa0and\u3000ideographic",
        "bidi \u202eevil\u202c",
        "sep\u2028line",
        "ümlaut",
        "",
    ],
)
def test_text_hygiene_shortcut_matches_the_full_rules(value: str) -> None:
    from receiver import render_context as rc

    expected_line = rc._SPACES_RE.sub(" ", rc._LINE_CONTROL_RE.sub(" ", value)).strip()
    body = rc._BODY_CONTROL_RE.sub("", value.replace("\r\n", "\n").replace("\r", "\n"))
    assert rc.one_line(value) == expected_line
    assert rc.clean_text(value) == body
