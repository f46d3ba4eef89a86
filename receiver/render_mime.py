"""Alert emails serialised straight to the bytes that go over SMTP.

The stdlib builds an `EmailMessage` by parsing every header it is given back into a
structured object, converts the message to multipart as parts are added, and encodes
quoted-printable in pure Python: some 40% of the CPU of rendering an alert email, and a
storm renders hundreds of them at once. So the wire form is written here
directly. Headers still go through the stdlib's header classes (with `email.policy.SMTP`,
as `EmailMessage` would), so encoding and folding of untrusted text are the stdlib's; only
the MIME structure and the body encoding are done here, with the C codecs of `binascii`.

Bodies are 7bit when they are ASCII with short lines, else quoted-printable or base64,
whichever is smaller: never 8bit, so no part depends on the server offering 8BITMIME.
"""

from __future__ import annotations

import binascii
import email.policy
import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import MIMEPart

POLICY = email.policy.SMTP
_MAX_LINE = POLICY.max_line_length or 78  # 78 in policy.SMTP; None would mean no limit
_CRLF = b"\r\n"


@dataclass(frozen=True)
class Header:
    line: bytes  # "Name: value\r\n", folded and encoded for the wire
    value: str  # what a mail client shows, e.g. the decoded Subject


@dataclass(frozen=True)
class Attachment:
    """An inline part of the HTML body (a graph), already validated by the caller."""

    data: bytes
    subtype: str
    cid: str  # with its <>
    filename: str


def literal_text(value: str) -> str:
    """Unstructured header text (a Subject) that a parser takes literally.

    The stdlib's header parser, like every mail client, decodes RFC 2047 encoded-words
    (``=?utf-8?q?...?=``) in the text it is given: a label holding one could smuggle CR/LF
    or NUL into the header once decoded. An invisible WORD JOINER after each ``=`` of
    ``=?`` means no encoded-word starts there; the word is then written encoded itself,
    so clients show the text as it was.
    """
    return value.replace("=?", "=\u2060?")


@functools.lru_cache(maxsize=512)
def header(name: str, value: str) -> Header:
    """One header as `EmailMessage` with `policy.SMTP` would write it.

    Cached: sender, recipients and the fixed headers repeat on every email of a storm."""
    # The same refusal `EmailMessage.__setitem__` makes: a header must stay one header.
    if len(value.splitlines()) > 1:
        raise ValueError("Header values may not contain linefeed or carriage return characters")
    h = POLICY.header_factory(name, value)
    return Header(h.fold(policy=POLICY).encode("ascii", "surrogateescape"), str(h))


def encode_text(text: str) -> tuple[str, bytes]:
    """(Content-Transfer-Encoding, body with CRLF line ends) for a UTF-8 text part."""
    lines = text.encode("utf-8").splitlines()
    body = _CRLF.join(lines) + _CRLF
    if body.isascii() and max((len(x) for x in lines), default=0) <= _MAX_LINE:
        return "7bit", body
    qp = binascii.b2a_qp(body, istext=True)  # CRLF in: soft breaks come out as "=\r\n"
    # Base64 is 78 bytes a line for 57 of data: only worth encoding when it is smaller.
    if len(qp) <= -(-len(body) // 57) * 78:
        return "quoted-printable", qp
    return "base64", _base64(body)


def _base64(data: bytes) -> bytes:
    # 57 input bytes per 76-character line, as the stdlib writes base64 bodies.
    return b"".join(
        binascii.b2a_base64(data[i : i + 57])[:-1] + _CRLF for i in range(0, len(data), 57)
    )


def text_part(subtype: str, text: str) -> bytes:
    cte, body = encode_text(text)
    head = f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: {cte}\r\n'
    return head.encode("ascii") + _CRLF + body


def image_part(image: Attachment) -> bytes:
    # Rare (only with graphs) and its headers take parameters that may need RFC 2231
    # encoding: the stdlib builds this one.
    part = MIMEPart(policy=POLICY)
    part.set_content(
        image.data,
        maintype="image",
        subtype=image.subtype,
        cid=image.cid,
        filename=image.filename,
        disposition="inline",
    )
    return part.as_bytes(policy=POLICY)


def multipart(subtype: str, parts: Sequence[bytes]) -> bytes:
    """A multipart entity: its Content-Type header, a blank line, then the parts."""
    boundary = _boundary(parts)
    body = b"".join(b"--" + boundary + _CRLF + p + _CRLF for p in parts)
    head = f'Content-Type: multipart/{subtype};\r\n boundary="{boundary.decode()}"\r\n'
    return head.encode("ascii") + _CRLF + body + b"--" + boundary + b"--" + _CRLF


def _boundary(parts: Sequence[bytes]) -> bytes:
    # "=_" never occurs in quoted-printable or base64 text; 7bit parts are checked.
    while True:
        boundary = f"=_{uuid.uuid4().hex}".encode("ascii")
        if not any(boundary in p for p in parts):
            return boundary


def alert_message(
    headers: Sequence[Header], html: str, text: str, images: Sequence[Attachment] = ()
) -> bytes:
    """multipart/alternative of text and HTML, the HTML in multipart/related with images."""
    html_part = text_part("html", html)
    if images:
        html_part = multipart("related", [html_part, *(image_part(i) for i in images)])
    body = multipart("alternative", [text_part("plain", text), html_part])
    return b"".join(h.line for h in headers) + b"MIME-Version: 1.0\r\n" + body
