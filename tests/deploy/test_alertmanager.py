"""Alertmanager config: amtool validation, routing of the shipped alerts, webhook setup."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from .helpers import ALERTMANAGER_YML, REPO, alerting_rules, load_yaml, require_binary, run

MIGRATION_DOC = REPO / "docs" / "migrating-from-email_configs.md"
WEBHOOK_PREFIX = "http://127.0.0.1:9095/webhook/"


def _receivers() -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in load_yaml(ALERTMANAGER_YML)["receivers"]}


def test_amtool_check_config() -> None:
    amtool = require_binary("amtool")
    res = run([amtool, "check-config", str(ALERTMANAGER_YML.relative_to(REPO))])
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def _route(amtool: str, labels: dict[str, str]) -> str:
    res = run(
        [
            amtool,
            "config",
            "routes",
            "test",
            f"--config.file={ALERTMANAGER_YML}",
            *(f"{k}={v}" for k, v in sorted(labels.items())),
        ]
    )
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout.strip()


def _expected_receiver(labels: dict[str, str]) -> str:
    if labels["alertname"] == "Watchdog":
        return "alertmail-watchdog"
    if labels.get("component") == "alertmail":
        return "alertmail-selfmon"
    return "alertmail"


@pytest.mark.parametrize(
    "labels",
    [
        pytest.param(
            {"alertname": r["alert"], **{k: str(v) for k, v in r["labels"].items()}},
            id=f"{r['alert']}-{r['labels']['severity']}",
        )
        for _, r in alerting_rules()
    ],
)
def test_every_shipped_alert_reaches_the_right_receiver(labels: dict[str, str]) -> None:
    """component="alertmail" goes around alertmail; the Watchdog goes to it."""
    amtool = require_binary("amtool")
    assert _route(amtool, {**labels, "service": "api", "instance": "127.0.0.1:9095"}) == (
        _expected_receiver(labels)
    )


def test_selfmon_receiver_does_not_go_through_alertmail() -> None:
    selfmon = _receivers()["alertmail-selfmon"]
    assert selfmon.get("email_configs"), "alertmail-selfmon must use Alertmanager's own email"
    assert not selfmon.get("webhook_configs")
    cfg = load_yaml(ALERTMANAGER_YML)
    smarthost = selfmon["email_configs"][0].get("smarthost") or cfg["global"]["smtp_smarthost"]
    assert smarthost != "127.0.0.1:9095"


@pytest.mark.parametrize("name", ["alertmail", "alertmail-watchdog"])
def test_alertmail_webhooks(name: str) -> None:
    receiver = _receivers()[name]
    (hook,) = receiver["webhook_configs"]
    assert hook["url"] == WEBHOOK_PREFIX + name
    assert hook["max_alerts"] == 50
    auth = hook["http_config"]["authorization"]
    assert auth.get("type", "Bearer") == "Bearer"
    assert Path(auth["credentials_file"]).is_absolute()
    assert "credentials" not in auth, "the token comes from a file, not the config"


def test_grouping_timing_and_watchdog_route() -> None:
    route = load_yaml(ALERTMANAGER_YML)["route"]
    assert route["receiver"] == "alertmail"
    assert route["group_by"] == ["alertname", "service", "severity"]
    assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == (
        "30s",
        "5m",
        "4h",
    )
    first = route["routes"][0]
    assert first["receiver"] == "alertmail-watchdog"
    assert first["matchers"] == ['alertname="Watchdog"']
    minutes = int(re.fullmatch(r"(\d+)m", first["repeat_interval"]).group(1))  # type: ignore[union-attr]
    assert 1 <= minutes <= 5


def test_critical_inhibits_warning_for_same_alert_and_service() -> None:
    rules = load_yaml(ALERTMANAGER_YML)["inhibit_rules"]
    assert {
        "source_matchers": ['severity="critical"'],
        "target_matchers": ['severity="warning"'],
        "equal": ["alertname", "service"],
    } in rules


def test_inhibition_with_amtool_routes_still_applies_to_both_severities() -> None:
    """Sanity: warning and critical of one alert share the same receiver and group."""
    amtool = require_binary("amtool")
    base = {"alertname": "AppErrorRateHigh", "service": "api", "team": "app"}
    assert _route(amtool, {**base, "severity": "warning"}) == _route(
        amtool, {**base, "severity": "critical"}
    )


def _doc_alertmanager_blocks() -> list[str]:
    text = MIGRATION_DOC.read_text(encoding="utf-8")
    return re.findall(r"```yaml\n(# alertmanager\.yml\n.*?)```", text, re.S)


def test_migration_doc_shows_both_sides() -> None:
    text = MIGRATION_DOC.read_text(encoding="utf-8")
    assert "email_configs" in text and "webhook_configs" in text
    assert "# /etc/alertmail/alertmail.yml" in text
    assert len(_doc_alertmanager_blocks()) == 2


@pytest.mark.parametrize("index", [0, 1], ids=["before", "after"])
def test_migration_doc_alertmanager_examples_are_valid(index: int, tmp_path: Path) -> None:
    amtool = require_binary("amtool")
    path = tmp_path / "alertmanager.yml"
    path.write_text(_doc_alertmanager_blocks()[index], encoding="utf-8")
    res = run([amtool, "check-config", str(path)])
    assert res.returncode == 0, res.stdout + res.stderr
