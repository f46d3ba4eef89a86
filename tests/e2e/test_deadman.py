"""The dead man's switch end to end: the shipped Watchdog rule and route keep alertmail's
`deadman` quiet; with Alertmanager stopped it emails, started again it says so."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import pytest

from receiver.stack import Stack
from tests.e2e.conftest import start_stack
from tests.e2e.helpers import get_json, read_mails, wait_mail, wait_until

pytestmark = pytest.mark.e2e
# Alertmanager repeats the Watchdog every ~8s at this scale (repeat 6s, group_interval 2s).
DEADMAN_AFTER = 15.0


@pytest.fixture(scope="module")
def deadman_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = start_stack(tmp_path_factory, "deadman", deadman_after=DEADMAN_AFTER)
    try:
        yield s
    finally:
        s.stop()


def _heartbeat_seen(stack: Stack) -> float:
    with urllib.request.urlopen(stack.url("receiver") + "/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("alertmail_deadman_last_seen_timestamp_seconds "):
                return float(line.split()[1])
    return 0.0


def test_deadman_email_when_alertmanager_stops_and_when_it_is_back(deadman_stack: Stack) -> None:
    stack = deadman_stack
    wait_until(lambda: _heartbeat_seen(stack) > 0, 30, "Watchdog heartbeat at the receiver", stack)
    first = _heartbeat_seen(stack)
    wait_until(lambda: _heartbeat_seen(stack) > first, 20, "a second heartbeat", stack)
    # Heartbeats are consumed, never mailed; and the switch has not fired.
    assert read_mails(stack.mail_dir) == []

    stack.stop_service("alertmanager")
    broken = wait_mail(stack, lambda m: "ALERTING PIPELINE BROKEN" in str(m["Subject"]),
                       DEADMAN_AFTER + 20, "from the dead man's switch")  # fmt: skip
    assert "no Watchdog received" in str(broken["Subject"])

    stack.start_service("alertmanager")
    # No gossip cluster: the stack opens no port it did not choose.
    assert get_json(stack.url("alertmanager") + "/api/v2/status")["cluster"]["status"] == "disabled"
    back = wait_mail(stack, lambda m: "received again" in str(m["Subject"]), 30,
                     "saying the Watchdog is received again")  # fmt: skip
    assert "Watchdog received again" in str(back["Subject"])
