"""A plain-text alert email built without templates, for when a user template breaks."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime

from receiver.model import Notification
from receiver.render_mime import literal_text

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def _one_line(value: str, limit: int = 200) -> str:
    return _CONTROL.sub(" ", value).strip()[:limit]


def fallback_email(
    n: Notification,
    *,
    sender: str,
    recipients: Sequence[str],
    message_id: str,
    subject: str,
    root: str | None,
    now: datetime,
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Subject"] = literal_text(_one_line(subject, 250))
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = message_id
    if root:
        msg["In-Reply-To"] = root
        msg["References"] = root
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    lines = [
        f"{n.status.upper()}: {len(n.firing)} firing, {len(n.resolved)} resolved",
        "(the configured template failed; this is alertmail's built-in plain message)",
        "",
    ]
    for a in sorted(n.alerts, key=lambda a: a.sort_key())[:50]:
        lines.append(f"[{a.status}] {_one_line(a.name)}")
        for k, v in sorted(a.labels.items()):
            lines.append(f"  {_one_line(k)}={_one_line(v)}")
        for k, v in sorted(a.annotations.items()):
            lines.append(f"  {_one_line(k)}: {_one_line(v, 1000)}")
        lines.append("")
    if len(n.alerts) > 50:
        lines.append(f"... and {len(n.alerts) - 50} more alerts not shown")
    if n.truncated_alerts:
        lines.append(f"Alertmanager left out {n.truncated_alerts} more alerts (max_alerts).")
    msg.set_content("\n".join(lines))
    return msg
