"""Alert emails written straight to wire bytes: the same message as the stdlib would build."""

from __future__ import annotations

import email
import email.policy
import json
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from receiver import render_mime
from receiver.model import parse_notification
from receiver.render import InlineImage, Renderer, ThreadRef

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
NOW = datetime(2026, 12, 3, 16, 40, 37, tzinfo=UTC)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 3
HEADERS = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "Auto-Submitted",
    "X-Auto-Response-Suppress",
    "MIME-Version",
)


def parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def shape(part: Message) -> Any:
    """What a client sees of a part: type, the headers that matter, content or children."""
    assert isinstance(part, EmailMessage)
    if part.is_multipart():
        return (part.get_content_type(), [shape(p) for p in part.iter_parts()])
    content = part.get_content()
    if isinstance(content, str):
        content = content.replace("\r\n", "\n")
    return (
        part.get_content_type(),
        part.get_content_charset(),
        part.get_content_disposition(),
        part.get_filename(),
        part["Content-ID"],
        content,
    )


def payload(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def hostile() -> dict[str, Any]:
    p = payload("firing_group_3_alerts")
    p["groupLabels"] = {"alertname": "Fehlerrate hoch ü " + "x" * 150}
    p["alerts"][0]["annotations"]["summary"] = "日本語 ✓ " * 40 + "trailing space   "
    p["alerts"][0]["annotations"]["description"] = ".\nline one\r\n.lone dot above\n" + "y" * 300
    return p


@pytest.mark.parametrize(
    "data",
    [
        payload("firing_single"),
        payload("firing_group_3_alerts"),
        payload("mixed_group_one_resolved"),
        payload("resolved_single"),
        hostile(),
    ],
)
@pytest.mark.parametrize("root", [None, "<root.1@example.com>"])
@pytest.mark.parametrize("with_image", [False, True])
def test_wire_bytes_read_as_the_stdlib_message(
    data: dict[str, Any], root: str | None, with_image: bool
) -> None:
    renderer = Renderer(None, ZoneInfo("Europe/Berlin"))
    n = parse_notification(data)
    fp = n.alerts[0].fingerprint
    kw: dict[str, Any] = {
        "sender": "Ålerts Düsseldorf <alerts@example.com>",
        "recipients": ["oncall@example.com", "Team Ops <ops@example.org>"],
        "message_id": "<m.1@example.com>",
        "thread": ThreadRef(root_message_id=root, subject=None),
        "now": NOW,
    }
    if with_image:
        kw["images"] = [InlineImage(cid=f"graph-{fp}@alertmail", data=PNG, filename="grâph.png")]
        kw["graph_cids"] = {fp: f"graph-{fp}@alertmail"}

    wire = renderer.alert_wire(n, **kw)
    stdlib = parse(renderer.alert_email(n, **kw).as_bytes())
    ours = parse(wire.data)

    assert not [d for part in ours.walk() for d in part.defects]
    for name in HEADERS:
        assert ours[name] == stdlib[name], name
    assert (wire.message_id, wire.subject) == (stdlib["Message-ID"], stdlib["Subject"])
    assert shape(ours) == shape(stdlib)
    assert wire.data.isascii()  # 7bit clean: no part needs 8BITMIME
    assert all(len(line) <= 998 for line in wire.data.split(b"\r\n"))
    assert b"\n" not in wire.data.replace(b"\r\n", b"")  # CRLF only


def test_short_ascii_text_goes_as_is() -> None:
    assert render_mime.encode_text("one\ntwo\r\nthree") == ("7bit", b"one\r\ntwo\r\nthree\r\n")


def test_long_lines_go_quoted_printable_and_decode_back() -> None:
    text = "a = b " * 40 + "\n. \n"
    cte, body = render_mime.encode_text(text)
    assert cte == "quoted-printable"
    assert all(len(line) <= 76 for line in body.split(b"\r\n"))
    msg = parse(render_mime.text_part("plain", text))
    assert msg.get_content() == text.replace("\n", "\r\n")


def test_mostly_non_ascii_text_goes_base64() -> None:
    text = "日本語のテキスト" * 30
    cte, body = render_mime.encode_text(text)
    assert cte == "base64"
    assert all(len(line) <= 76 for line in body.split(b"\r\n"))
    assert parse(render_mime.text_part("plain", text)).get_content() == text + "\r\n"


def test_header_is_what_email_message_writes() -> None:
    subject = "[alertmail] Fehlerrate hoch — zahlungsdienst-ü " + "lang " * 20
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["Subject"] = subject
    expected = msg.as_bytes().split(b"\r\n\r\n", 1)[0] + b"\r\n"

    h = render_mime.header("Subject", subject)

    assert h.line == expected and h.value == subject


def test_header_refuses_a_line_break() -> None:
    with pytest.raises(ValueError):
        render_mime.header("Subject", "one\r\nBcc: victim@example.com")


def test_boundary_never_occurs_in_a_part(monkeypatch: pytest.MonkeyPatch) -> None:
    taken = uuid.UUID(int=1)
    ids = iter([taken, uuid.UUID(int=2)])
    monkeypatch.setattr(render_mime.uuid, "uuid4", lambda: next(ids))
    part = b"Content-Type: text/plain\r\n\r\n=_" + taken.hex.encode() + b"\r\n"

    body = render_mime.multipart("mixed", [part])

    assert f'boundary="=_{uuid.UUID(int=2).hex}"'.encode() in body
