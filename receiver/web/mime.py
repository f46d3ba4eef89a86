"""Show a stored message as its recipient sees it: headers, text part, HTML, inline images.

outbox.payload holds the exact RFC 5322 bytes sent (retries resend them unchanged), so
this reads what went out rather than rendering again. The HTML is only ever served from
its own endpoint under a sandboxing CSP; inline images referenced as ``cid:`` are turned
into ``data:`` URIs so they show without giving the frame any network access.
"""

from __future__ import annotations

import base64
import email
import email.policy
import re
from dataclasses import dataclass, field
from email.message import EmailMessage, Message

# Raster types a browser shows without running anything (SVG can carry script: excluded).
SAFE_IMAGES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
_CID_REF = re.compile(r"cid:([^\"'\s)>]+)", re.IGNORECASE)
MAX_HEADER = 2000


@dataclass(frozen=True, slots=True)
class Part:
    index: int
    content_type: str
    size: int
    filename: str | None
    content_id: str | None
    disposition: str | None

    @property
    def is_image(self) -> bool:
        return self.content_type in SAFE_IMAGES


@dataclass(slots=True)
class Shown:
    is_email: bool
    subject: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    text: str | None = None
    html: str | None = None
    parts: list[Part] = field(default_factory=list)
    raw: str | None = None  # non-email payloads (Slack JSON) and unparseable ones
    problem: str | None = None


def parse(payload: bytes) -> EmailMessage:
    msg = email.message_from_bytes(payload, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def leaves(msg: Message) -> list[Message]:
    return [p for p in msg.walk() if not p.is_multipart()]


def _decoded(part: Message) -> bytes:
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def _text(part: Message) -> str:
    charset = part.get_content_charset() or "utf-8"
    try:
        return _decoded(part).decode(charset, errors="replace")
    except LookupError:
        return _decoded(part).decode("utf-8", errors="replace")


def _cid(part: Message) -> str | None:
    value = part.get("Content-ID")
    return str(value).strip().strip("<>") if value else None


def show(payload: bytes, channel: str = "email") -> Shown:
    if channel != "email":
        return Shown(is_email=False, raw=payload.decode("utf-8", errors="replace"))
    try:
        msg = parse(payload)
        parts = leaves(msg)
    except Exception as exc:  # a damaged stored message must not break the page
        return Shown(
            is_email=False,
            raw=payload.decode("utf-8", errors="replace"),
            problem=f"the stored message could not be parsed: {exc}",
        )
    out = Shown(is_email=True, subject=str(msg.get("Subject", "")))
    out.headers = [(k, str(v)[:MAX_HEADER]) for k, v in msg.items()]
    images: dict[str, str] = {}
    for i, part in enumerate(parts):
        ctype = part.get_content_type()
        data = _decoded(part)
        info = Part(
            index=i,
            content_type=ctype,
            size=len(data),
            filename=part.get_filename(),
            content_id=_cid(part),
            disposition=part.get_content_disposition(),
        )
        out.parts.append(info)
        if ctype == "text/plain" and out.text is None and info.disposition != "attachment":
            out.text = _text(part)
        elif ctype == "text/html" and out.html is None and info.disposition != "attachment":
            out.html = _text(part)
        elif info.is_image and info.content_id:
            images[info.content_id] = f"data:{ctype};base64,{base64.b64encode(data).decode()}"
    if out.html is not None and images:
        html = out.html
        out.html = _CID_REF.sub(lambda m: images.get(m.group(1), m.group(0)), html)
    return out


def part_content(payload: bytes, index: int) -> tuple[str, bytes, str | None] | None:
    """(content type to serve, bytes, filename) of leaf part ``index``, or None.

    Only safe raster images keep their type; text is served as text/plain (never as
    HTML from our origin) and anything else as an opaque download.
    """
    parts = leaves(parse(payload))
    if not 0 <= index < len(parts):
        return None
    part = parts[index]
    ctype = part.get_content_type()
    data = _decoded(part)
    if ctype in SAFE_IMAGES:
        return ctype, data, part.get_filename()
    if ctype.startswith("text/"):
        return "text/plain; charset=utf-8", _text(part).encode("utf-8"), part.get_filename()
    return "application/octet-stream", data, part.get_filename() or f"part-{index}"
