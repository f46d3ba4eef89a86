"""Email rendering: sandboxed Jinja2 templates, CSS inlining, MIME building. No I/O but reads.

Templates live in ``templates/`` (packaged as ``receiver/_templates``); a user's
``templates_dir`` is searched first, so overriding one file is enough. Autoescaping is on for
every template except plain-text ones (``*.txt.j2``, ``*.subject.j2``, ``*.css.j2``): a safe
default for the HTML, Slack and report templates later issues add. Undefined names are an
error (StrictUndefined) so a typo in a user template fails ``alertmail check`` with its file
and line instead of silently rendering an empty field at 3 a.m.
"""

from __future__ import annotations

import email.policy
import email.utils
import logging
import re
import time
import traceback
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import css_inline
import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup, escape

from receiver import render_mime
from receiver.errors import TemplateError
from receiver.model import Notification
from receiver.render_context import (
    MAX_ALERTS,
    AlertView,
    Counts,
    Detail,
    Link,
    aware,
    format_time,
    notification_context,
    one_line,
    subject_context,
)
from receiver.render_samples import sample_notifications
from receiver.units import format_duration

log = logging.getLogger(__name__)

HTML_BUDGET = 92_000
"""Bytes of HTML per email. Gmail clips bodies past ~102 KB and hides the rest (the silence
links included) behind "[Message clipped]"; the margin covers clients that count differently."""

MAX_SUBJECT = 160
_TEXT_SUFFIXES = (".txt.j2", ".text.j2", ".subject.j2", ".css.j2", ".txt")
_CID_RE = re.compile(r"^[A-Za-z0-9._@+-]{1,200}$")
_DOMAIN_RE = re.compile(r"^[A-Za-z0-9.-]{1,253}$")
_ALERT_TEMPLATES = ("alert.subject.j2", "alert.html.j2", "alert.txt.j2")
_TEST_TEMPLATES = ("test.html.j2", "test.txt.j2")


@dataclass(frozen=True)
class InlineImage:
    cid: str
    data: bytes
    subtype: str = "png"
    filename: str = "graph.png"


@dataclass(frozen=True)
class WireEmail:
    """An email ready for SMTP DATA, with the header values the outbox records."""

    data: bytes
    message_id: str
    subject: str


@dataclass(frozen=True)
class ThreadRef:
    root_message_id: str | None  # Message-ID of the thread's first message; None when this IS it
    subject: str | None  # the thread's stored subject (reused verbatim when given)


def packaged_templates_dir() -> Path:
    """receiver/_templates in an installed wheel (hatch force-include), else <repo>/templates."""
    here = Path(__file__).resolve().parent
    packaged = here / "_templates"
    return packaged if packaged.is_dir() else here.parent / "templates"


def envelope_address(sender: str) -> str:
    """``"Alerts <a@b>"`` -> ``"a@b"`` (the SMTP MAIL FROM)."""
    return email.utils.parseaddr(one_line(sender))[1] or one_line(sender)


def make_message_id(sender: str) -> str:
    """``<uuid4hex.timestamp@domain-of-sender>``: the sender's domain keeps spam filters calm."""
    local, at, domain = envelope_address(sender).rpartition("@")
    if not (local and at and _DOMAIN_RE.match(domain)):
        domain = "alertmail.invalid"
    return f"<{uuid.uuid4().hex}.{int(time.time())}@{domain}>"


def header_value(value: str, limit: int | None = None) -> str:
    """Untrusted text made safe for a header: one line, no control characters, capped."""
    return one_line(value, limit)


def _autoescape(name: str | None) -> bool:
    return not (name or "").lower().endswith(_TEXT_SUFFIXES)


def _nl2br(value: str) -> Markup:
    # Escape first, then add the only markup we mean: line breaks (Outlook ignores pre-wrap).
    return Markup("<br>\n").join(escape(value).split("\n"))


def _error_location(exc: BaseException, fallback: str) -> str:
    """The "file:line" of the innermost template frame (Jinja maps tracebacks to templates)."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return f"{exc.filename or exc.name or fallback}:{exc.lineno}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith(".j2")]
    if frames:
        return f"{frames[-1].filename}:{frames[-1].lineno}"
    return fallback


def _describe(exc: BaseException, name: str) -> str:
    if isinstance(exc, jinja2.TemplateNotFound):
        return f"{name}: template not found: {exc.name}"
    message = exc.message if isinstance(exc, jinja2.TemplateError) else None
    return f"{_error_location(exc, name)}: {message or f'{type(exc).__name__}: {exc}'}"


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox, with a shortcut for the objects an alert email reads most.

    An email reads a few hundred attributes; the sandbox checks each against the lists of
    internal attributes and of mutating methods (the latter with isinstance checks on
    abstract base classes). For the frozen view objects of render_context and Jinja's own
    loop object those checks can refuse nothing but a name starting with "_", so that is
    all that is checked for them. Every other object gets the full checks.
    """

    _PLAIN: frozenset[type] = frozenset({AlertView, Link, Counts, jinja2.runtime.LoopContext})

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if type(obj) in self._PLAIN:
            return not attr.startswith("_")
        return bool(super().is_safe_attribute(obj, attr, value))


class Renderer:
    def __init__(self, templates_dir: Path | None, timezone: ZoneInfo) -> None:
        self.templates_dir = templates_dir
        self.timezone = timezone
        loaders: list[jinja2.BaseLoader] = []
        if templates_dir is not None:
            loaders.append(jinja2.FileSystemLoader(str(templates_dir)))
        loaders.append(jinja2.FileSystemLoader(str(packaged_templates_dir())))
        self._env = _Sandbox(
            loader=jinja2.ChoiceLoader(loaders),
            autoescape=_autoescape,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self._env.filters["nl2br"] = _nl2br
        self._env.filters["duration"] = format_duration
        self._env.filters["localtime"] = lambda dt: format_time(dt, self.timezone)
        # Remote stylesheets would be network I/O inside rendering; templates carry their CSS.
        self._inliner = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)

    # --- template access (also for digests, Slack, previews) -----------------------------

    def render_string(self, template_name: str, **context: Any) -> str:
        """Render one template; raises TemplateError("file:line: message")."""
        try:
            return self._env.get_template(template_name).render(context)
        except Exception as exc:
            # Templates are user code in a sandbox: anything they raise is a template error.
            raise TemplateError(_describe(exc, template_name)) from exc

    def render_html(self, template_name: str, **context: Any) -> str:
        """render_string + CSS inlined into style attributes (Gmail and Outlook drop <style>)."""
        html = self.render_string(template_name, **context)
        try:
            return str(self._inliner.inline(html))
        except css_inline.InlineError as exc:
            raise TemplateError(f"{template_name}: CSS could not be inlined: {exc}") from exc

    # --- alert emails ---------------------------------------------------------------------

    def thread_subject(self, n: Notification) -> str:
        """Never raises: callers use it on their fallback path when a body template broke.

        A broken subject template (reported by check()) falls back to the built-in wording.
        """
        ctx = subject_context(n)
        try:
            subject = header_value(self.render_string("alert.subject.j2", **ctx), MAX_SUBJECT)
        except TemplateError as exc:
            log.error("subject template failed, using the built-in subject: %s", exc)
            subject = ""
        return subject or header_value(f"[alertmail] {ctx['title']}", MAX_SUBJECT)

    def alert_bodies(
        self, n: Notification, *, now: datetime, graph_cids: Mapping[str, str] = {}
    ) -> tuple[str, str]:
        """(html, text) with the HTML under HTML_BUDGET: detail is dropped before alerts are."""
        cids = {fp: cid for fp, cid in graph_cids.items() if _CID_RE.match(cid)}
        if len(cids) != len(graph_cids):
            log.warning(
                "ignoring %d graph content-ids with unsafe characters", len(graph_cids) - len(cids)
            )
        attempts = [(MAX_ALERTS, d) for d in Detail]
        shown = MAX_ALERTS
        while shown > 0:  # then fewer alerts, down to none: the budget always wins
            shown //= 2
            attempts.append((shown, Detail.MINIMAL))
        for max_alerts, detail in attempts:
            ctx = notification_context(
                n, tz=self.timezone, now=now, max_alerts=max_alerts, detail=detail, graph_cids=cids
            )
            html = self.render_html("alert.html.j2", **ctx)
            size = len(html.encode("utf-8"))
            if size <= HTML_BUDGET:
                break
            log.info(
                "alert email HTML is %d bytes at %s/%d alerts; reducing",
                size,
                detail.name,
                max_alerts,
            )
        text = self.render_string("alert.txt.j2", **ctx)
        return html, text

    def alert_email(
        self,
        n: Notification,
        *,
        sender: str,
        recipients: Sequence[str],
        message_id: str,
        thread: ThreadRef,
        now: datetime,
        images: Sequence[InlineImage] = (),
        graph_cids: Mapping[str, str] = {},
    ) -> EmailMessage:
        """The alert email as a message object (previews, ``check``); see `alert_wire`."""
        fields, html, text = self._alert_content(
            n, sender, recipients, message_id, thread, now, graph_cids
        )
        msg = self._message_with(fields)
        self._bodies(msg, html, text, images)
        return msg

    def alert_wire(
        self,
        n: Notification,
        *,
        sender: str,
        recipients: Sequence[str],
        message_id: str,
        thread: ThreadRef,
        now: datetime,
        images: Sequence[InlineImage] = (),
        graph_cids: Mapping[str, str] = {},
    ) -> WireEmail:
        """The alert email as it is sent: the same message as `alert_email`, serialised
        without building the message object (see receiver.render_mime)."""
        fields, html, text = self._alert_content(
            n, sender, recipients, message_id, thread, now, graph_cids
        )
        headers = [render_mime.header(name, value) for name, value in fields]
        data = render_mime.alert_message(headers, html, text, _attachments(images))
        values = {name: h.value for (name, _), h in zip(fields, headers, strict=True)}
        return WireEmail(data, values["Message-ID"], values["Subject"])

    def _alert_content(
        self,
        n: Notification,
        sender: str,
        recipients: Sequence[str],
        message_id: str,
        thread: ThreadRef,
        now: datetime,
        graph_cids: Mapping[str, str],
    ) -> tuple[list[tuple[str, str]], str, str]:
        """(header fields, html, text) of an alert email."""
        subject = header_value(thread.subject, MAX_SUBJECT) if thread.subject else ""
        fields = self._header_fields(
            sender=sender,
            to=recipients,
            subject=subject or self.thread_subject(n),
            message_id=message_id,
            now=now,
        )
        if thread.root_message_id:
            root = header_value(thread.root_message_id)
            fields += [("In-Reply-To", root), ("References", root)]
        html, text = self.alert_bodies(n, now=now, graph_cids=graph_cids)
        return fields, html, text

    # --- test email -----------------------------------------------------------------------

    def test_email(self, *, sender: str, to: str, message_id: str, now: datetime) -> EmailMessage:
        ctx = {
            "sender": one_line(sender),
            "to": one_line(to),
            "generated_at": format_time(now, self.timezone),
            "timezone": self.timezone.key,
        }
        msg = self._headers(
            sender=sender,
            to=[to],
            subject="[alertmail] test message",
            message_id=message_id,
            now=now,
        )
        self._bodies(
            msg,
            self.render_html("test.html.j2", **ctx),
            self.render_string("test.txt.j2", **ctx),
            (),
        )
        return msg

    # --- check ------------------------------------------------------------------------------

    def check(self) -> list[str]:
        """Every template compiles; alert and test emails render from sample data.

        Errors are "file:line: message". Templates this module does not know (a later issue's,
        or a user's extra partial) are compiled only: their context is not ours to invent.
        """
        errors: list[str] = []
        names = sorted(set(self._env.list_templates(filter_func=lambda n: n.endswith(".j2"))))
        for name in names:
            try:
                self._env.get_template(name)
            except Exception as exc:  # syntax errors, unreadable files
                errors.append(_describe(exc, name))
        for name in (*_ALERT_TEMPLATES, *_TEST_TEMPLATES):
            if name not in names:
                errors.append(f"{name}: template not found")
        if errors:
            return errors
        now = datetime(2026, 12, 3, 17, 0, tzinfo=UTC)
        for sample in sample_notifications(now):
            try:
                # thread_subject() hides subject errors (see there); check() must not.
                self.render_string("alert.subject.j2", **subject_context(sample))
                self.alert_email(
                    sample,
                    sender="Alerts <alerts@example.com>",
                    recipients=["oncall@example.com"],
                    message_id="<check@example.com>",
                    thread=ThreadRef(root_message_id="<root@example.com>", subject=None),
                    now=now,
                    graph_cids={sample.alerts[0].fingerprint: "graph0"} if sample.alerts else {},
                )
            except TemplateError as exc:
                errors.append(str(exc))
        try:
            self.test_email(
                sender="alerts@example.com",
                to="oncall@example.com",
                message_id="<check-test@example.com>",
                now=now,
            )
        except TemplateError as exc:
            errors.append(str(exc))
        return list(dict.fromkeys(errors))

    # --- MIME -------------------------------------------------------------------------------

    def message(
        self,
        *,
        sender: str,
        to: Sequence[str],
        subject: str,
        message_id: str,
        now: datetime,
        html: str,
        text: str,
        images: Sequence[InlineImage] = (),
    ) -> EmailMessage:
        """A complete email with our standard headers (digests, reports, dead man's switch)."""
        msg = self._headers(
            sender=sender,
            to=to,
            subject=header_value(subject, MAX_SUBJECT) or "[alertmail]",
            message_id=message_id,
            now=now,
        )
        self._bodies(msg, html, text, images)
        return msg

    def _headers(
        self, *, sender: str, to: Sequence[str], subject: str, message_id: str, now: datetime
    ) -> EmailMessage:
        return self._message_with(
            self._header_fields(
                sender=sender, to=to, subject=subject, message_id=message_id, now=now
            )
        )

    @staticmethod
    def _message_with(fields: Sequence[tuple[str, str]]) -> EmailMessage:
        # policy.SMTP: CRLF line endings and RFC 2047 encoding of non-ASCII header text. It
        # also refuses CR/LF in header values; the fields are sanitised first, so a hostile
        # label becomes clean text instead of an exception that blocks a notification.
        msg = EmailMessage(policy=email.policy.SMTP)
        for name, value in fields:
            msg[name] = value
        return msg

    def _header_fields(
        self, *, sender: str, to: Sequence[str], subject: str, message_id: str, now: datetime
    ) -> list[tuple[str, str]]:
        return [
            ("From", header_value(sender)),
            ("To", ", ".join(header_value(r) for r in to if r.strip())),
            # untrusted (labels): no encoded-word in it may decode (see literal_text)
            ("Subject", render_mime.literal_text(subject)),
            ("Date", email.utils.format_datetime(aware(now).astimezone(self.timezone))),
            ("Message-ID", header_value(message_id)),
            # RFC 3834 / Exchange: keep vacation responders and auto-replies from looping
            # back. (Precedence: bulk is left out: non-standard, and some filters treat it
            # as spam.)
            ("Auto-Submitted", "auto-generated"),
            ("X-Auto-Response-Suppress", "All"),
        ]

    @staticmethod
    def _bodies(msg: EmailMessage, html: str, text: str, images: Sequence[InlineImage]) -> None:
        msg.set_content(text, subtype="plain", charset="utf-8")
        msg.add_alternative(html, subtype="html", charset="utf-8")
        attachments = _attachments(images)
        if not attachments:
            return
        html_part = next(p for p in msg.iter_parts() if p.get_content_type() == "text/html")
        for a in attachments:
            # add_related turns the text/html part into multipart/related around it.
            html_part.add_related(
                a.data,
                maintype="image",
                subtype=a.subtype,
                cid=a.cid,
                filename=a.filename,
                disposition="inline",
            )


def _attachments(images: Sequence[InlineImage]) -> list[render_mime.Attachment]:
    """The images fit to go inline: each with a safe content-id and a header-safe name."""
    out = []
    for image in images:
        cid = image.cid.strip("<>")
        if not _CID_RE.match(cid):
            log.warning("skipping inline image with an unsafe content-id")
            continue
        filename = header_value(image.filename, 100) or "image"
        out.append(render_mime.Attachment(image.data, image.subtype, f"<{cid}>", filename))
    return out
