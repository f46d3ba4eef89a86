"""Shared helpers for the deployment-file tests (paths, binaries, rule loading)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
PROMETHEUS_DIR = DEPLOY / "prometheus"
PROMETHEUS_YML = PROMETHEUS_DIR / "prometheus.yml"
RULES_DIR = PROMETHEUS_DIR / "rules"
RULE_TESTS_DIR = PROMETHEUS_DIR / "tests"
ALERTMANAGER_YML = DEPLOY / "alertmanager" / "alertmanager.yml"
DASHBOARDS_DIR = REPO / "dashboards"
RUNBOOKS_DIR = REPO / "docs" / "runbooks"
RUNBOOK_URL_BASE = "https://github.com/alertmail/alertmail/blob/main/docs/runbooks/"

# Debian ships Alertmanager as prometheus-alertmanager; upstream calls it alertmanager.
BINARY_ALTERNATIVES = {"alertmanager": ("alertmanager", "prometheus-alertmanager")}
BINARY_PACKAGES = {
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "amtool": "prometheus-alertmanager",
    "alertmanager": "prometheus-alertmanager",
}


def require_binary(name: str) -> str:
    """Path of a binary, or skip the test when it is not installed (CI installs them)."""
    for candidate in BINARY_ALTERNATIVES.get(name, (name,)):
        path = shutil.which(candidate)
        if path:
            return path
    pytest.skip(f"{name} not installed (Debian package {BINARY_PACKAGES.get(name, name)})")


def run(cmd: Sequence[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(cmd), cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.yml"))


def rule_test_files() -> list[Path]:
    return sorted(RULE_TESTS_DIR.glob("*.yml"))


def iter_rules() -> Iterator[tuple[Path, str, dict[str, Any]]]:
    """(file, group name, rule) for every rule of every shipped rule file."""
    for path in rule_files():
        for group in load_yaml(path)["groups"]:
            for rule in group["rules"]:
                yield path, group["name"], rule


def alerting_rules() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, rule) for path, _, rule in iter_rules() if "alert" in rule]


def alert_names() -> list[str]:
    return sorted({rule["alert"] for _, rule in alerting_rules()})


def recording_rule_names() -> set[str]:
    return {rule["record"] for _, _, rule in iter_rules() if "record" in rule}
