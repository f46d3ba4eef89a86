"""The webhook body's fast path: the exact shape Alertmanager sends, decoded in one C pass.

msgspec decodes and type-checks the JSON into the structs below in about the time
orjson takes to build plain dicts, so a well-formed notification costs no Python per
field. Anything else (unknown fields, numbers in label maps, a missing groupKey, escaped
lone surrogates, invalid UTF-8) is not an error here: `decode` returns None and the
caller takes the lenient path, `model.parse_notification`, which decides between a
notification and a 400. Both paths build the same `Notification` from the same input.
"""

from __future__ import annotations

import re
from typing import Literal

import msgspec

from receiver.model import (
    Alert,
    Notification,
    derived_group_key,
    fallback_fingerprint,
    parse_timestamp,
)

# Escaped UTF-16 surrogates: the lenient path turns lone ones into U+FFFD.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")


class _Alert(msgspec.Struct, forbid_unknown_fields=True):
    status: Literal["firing", "resolved"] = "firing"
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    # As text: model.parse_timestamp decides what a timestamp means, for both paths.
    startsAt: str = ""
    endsAt: str = ""
    generatorURL: str = ""
    fingerprint: str = ""


class _Notification(msgspec.Struct, forbid_unknown_fields=True):
    alerts: list[_Alert]
    version: Literal["4"] = "4"
    status: Literal["firing", "resolved", ""] = ""
    receiver: str = ""
    groupKey: str = ""
    groupLabels: dict[str, str] = {}
    commonLabels: dict[str, str] = {}
    commonAnnotations: dict[str, str] = {}
    externalURL: str = ""
    truncatedAlerts: int = 0


_DECODER = msgspec.json.Decoder(_Notification)


def decode(body: bytes, receiver_override: str | None = None) -> Notification | None:
    """The notification in ``body``, or None when it is not in Alertmanager's exact shape.

    Raises PayloadError for a body in that shape whose timestamps are not RFC 3339 (as
    the lenient path would)."""
    try:
        wire = _DECODER.decode(body)
    except msgspec.DecodeError:  # ValidationError included
        return None
    if _SURROGATE_ESCAPE.search(body):
        return None
    alerts = tuple(
        Alert(
            status=a.status,
            labels=a.labels,
            annotations=a.annotations,
            starts_at=parse_timestamp(a.startsAt, f"alerts[{i}].startsAt"),
            ends_at=parse_timestamp(a.endsAt, f"alerts[{i}].endsAt"),
            generator_url=a.generatorURL,
            fingerprint=a.fingerprint or fallback_fingerprint(a.labels),
        )
        for i, a in enumerate(wire.alerts)
    )
    status = wire.status or ("firing" if any(a.firing for a in alerts) else "resolved")
    return Notification(
        receiver=receiver_override or wire.receiver,
        status=status,
        alerts=alerts,
        group_labels=wire.groupLabels,
        common_labels=wire.commonLabels,
        common_annotations=wire.commonAnnotations,
        external_url=wire.externalURL,
        group_key=wire.groupKey or derived_group_key(wire.groupLabels),
        truncated_alerts=max(0, wire.truncatedAlerts),
        version="4",
    )
