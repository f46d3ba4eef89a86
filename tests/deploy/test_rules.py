"""Prometheus config and rules: promtool checks, unit tests, conventions, runbooks."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from .helpers import (
    PROMETHEUS_DIR,
    PROMETHEUS_YML,
    REPO,
    RUNBOOK_URL_BASE,
    RUNBOOKS_DIR,
    alert_names,
    alerting_rules,
    iter_rules,
    load_yaml,
    recording_rule_names,
    require_binary,
    rule_files,
    rule_test_files,
    run,
)

SEVERITIES = {"critical", "warning", "info", "none"}
PIPELINE_RULES = "alertmail-pipeline.yml"
ALWAYS_FIRING = {"Watchdog"}


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


# ---------------------------------------------------------------------------- promtool


def test_promtool_check_config() -> None:
    promtool = require_binary("promtool")
    res = run([promtool, "check", "config", _rel(PROMETHEUS_YML)])
    assert res.returncode == 0, res.stdout + res.stderr
    # check config also loads the rule files it references: all of them.
    assert f"SUCCESS: {len(rule_files())} rule files found" in res.stdout + res.stderr


def test_promtool_check_rules() -> None:
    promtool = require_binary("promtool")
    res = run([promtool, "check", "rules", *map(_rel, rule_files())])
    assert res.returncode == 0, res.stdout + res.stderr
    found = sum(int(n) for n in re.findall(r"SUCCESS: (\d+) rules found", res.stdout))
    assert found == len(list(iter_rules()))


def test_promtool_test_rules() -> None:
    promtool = require_binary("promtool")
    files = rule_test_files()
    assert files, "no promtool unit tests in deploy/prometheus/tests"
    res = run([promtool, "test", "rules", *map(_rel, files)], timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("SUCCESS") == len(files), res.stdout


# ------------------------------------------------------------------- prometheus.yml


def test_prometheus_yml_scrapes_the_pipeline() -> None:
    cfg = load_yaml(PROMETHEUS_YML)
    jobs = {
        job["job_name"]: (
            job.get("metrics_path", "/metrics"),
            [t for sc in job["static_configs"] for t in sc["targets"]],
        )
        for job in cfg["scrape_configs"]
    }
    assert jobs["alertmail-exporter"] == ("/metrics", ["127.0.0.1:9146"])
    assert jobs["alertmail-receiver"] == ("/metrics", ["127.0.0.1:9095"])
    assert jobs["alertmanager"][1] == ["127.0.0.1:9093"]
    targets = [
        t
        for am in cfg["alerting"]["alertmanagers"]
        for sc in am["static_configs"]
        for t in sc["targets"]
    ]
    assert targets == ["127.0.0.1:9093"]


def test_prometheus_yml_rule_files_are_relative_and_match_every_rule_file() -> None:
    cfg = load_yaml(PROMETHEUS_YML)
    matched: set[Path] = set()
    for pattern in cfg["rule_files"]:
        assert not pattern.startswith("/"), "rule_files must be relative to prometheus.yml"
        matched.update(PROMETHEUS_DIR.glob(pattern))
    assert matched == set(rule_files())


# ---------------------------------------------------------------------- conventions


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        pytest.param(p, r, id=f"{r['alert']}-{r['labels'].get('severity')}")
        for p, r in alerting_rules()
    ],
)
def test_alert_labels_and_annotations(path: Path, rule: dict[str, Any]) -> None:
    name = rule["alert"]
    labels, annotations = rule.get("labels", {}), rule.get("annotations", {})
    assert labels.get("severity") in SEVERITIES, name
    assert "team" in labels or "component" in labels, f"{name}: needs a team or component label"
    if path.name == PIPELINE_RULES:
        # alertmail's own health is routed around alertmail by this label.
        assert labels.get("component") == "alertmail", name
    else:
        assert labels.get("component") != "alertmail", name
        assert "for" in rule, f"{name}: log alerts need `for:` to ride out blips"
    assert annotations.get("runbook_url") == f"{RUNBOOK_URL_BASE}{name}.md"
    assert annotations.get("summary"), name
    assert annotations.get("description"), name
    assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", name), f"{name}: use CamelCase alert names"


def test_watchdog_always_fires_with_severity_none() -> None:
    rules = [r for _, r in alerting_rules() if r["alert"] == "Watchdog"]
    assert len(rules) == 1
    assert rules[0]["expr"].strip() == "vector(1)"
    assert rules[0]["labels"]["severity"] == "none"
    assert "for" not in rules[0]


def test_recording_rule_names_follow_level_metric_operations() -> None:
    names = recording_rule_names()
    assert names
    for name in names:
        assert re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_:]+", name), name


def test_anomaly_rules_are_plain_promql_over_a_day_and_last_week() -> None:
    exprs = {r["record"]: r["expr"] for _, _, r in iter_rules() if "record" in r}
    assert "avg_over_time(service:app_log_errors:rate5m[1d])" in exprs.values()
    assert "stddev_over_time(service:app_log_errors:rate5m[1d])" in exprs.values()
    assert any("offset 1w" in e for e in exprs.values())
    anomaly = next(r for _, r in alerting_rules() if r["alert"] == "ErrorRateAnomaly")
    assert "zscore" in anomaly["expr"]
    assert "service:app_log_errors:rate5m >" in anomaly["expr"], "minimum-volume guard"


# ------------------------------------------------------------------- unit test coverage


def _collect_rule_tests() -> dict[str, dict[str, bool]]:
    """Per alertname: is there a test where it fires, one where it is quiet, and a
    quiet check after a firing one in the same test group (it resolves)?"""
    seen: dict[str, dict[str, bool]] = defaultdict(
        lambda: {"fires": False, "quiet": False, "resolves": False}
    )

    def seconds(d: str) -> int:
        units = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
        return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)(ms|[wdhms])", d) if u != "ms")

    for path in rule_test_files():
        for group in load_yaml(path)["tests"]:
            cases = sorted(group.get("alert_rule_test", []), key=lambda c: seconds(c["eval_time"]))
            fired_at: dict[str, int] = {}
            for case in cases:
                name, t = case["alertname"], seconds(case["eval_time"])
                if case.get("exp_alerts"):
                    seen[name]["fires"] = True
                    fired_at.setdefault(name, t)
                else:
                    seen[name]["quiet"] = True
                    if name in fired_at and t > fired_at[name]:
                        seen[name]["resolves"] = True
    return seen


@pytest.mark.parametrize("alertname", alert_names())
def test_every_alert_has_unit_tests_that_fire_stay_quiet_and_resolve(alertname: str) -> None:
    tests = _collect_rule_tests()
    assert alertname in tests, f"no promtool unit test for {alertname}"
    assert tests[alertname]["fires"], f"{alertname}: no test where it fires"
    if alertname not in ALWAYS_FIRING:
        assert tests[alertname]["quiet"], f"{alertname}: no test where it stays quiet"
        assert tests[alertname]["resolves"], f"{alertname}: no test where it resolves"


def test_unit_tests_only_name_existing_alerts() -> None:
    assert set(_collect_rule_tests()) <= set(alert_names())


def test_unit_tests_load_the_shipped_rules() -> None:
    for path in rule_test_files():
        cfg = load_yaml(path)
        resolved = {p.resolve() for pattern in cfg["rule_files"] for p in path.parent.glob(pattern)}
        # The shipped files themselves, never copies (a test may load only the file it tests).
        assert resolved and resolved <= {p.resolve() for p in rule_files()}, path.name


# --------------------------------------------------------------------------- runbooks


@pytest.mark.parametrize("alertname", alert_names())
def test_every_alert_has_a_runbook(alertname: str) -> None:
    runbook = RUNBOOKS_DIR / f"{alertname}.md"
    assert runbook.is_file(), f"missing {runbook.relative_to(REPO)}"
    text = runbook.read_text(encoding="utf-8")
    assert text.startswith(f"# {alertname}\n")
    for heading in ("## What it means", "## How to confirm", "## What to do"):
        assert heading in text, f"{runbook.name}: missing '{heading}'"
    assert "```" in text, f"{runbook.name}: show the PromQL or commands to confirm"


def test_no_orphan_runbooks() -> None:
    pages = {p.stem for p in RUNBOOKS_DIR.glob("*.md")} - {"README"}
    assert pages == set(alert_names())


def test_runbook_relative_links_resolve() -> None:
    checked = 0
    for page in RUNBOOKS_DIR.glob("*.md"):
        for target in re.findall(r"\]\(([^)#:]+)\)", page.read_text(encoding="utf-8")):
            assert (page.parent / target).resolve().exists(), f"{page.name}: broken link {target}"
            checked += 1
    assert checked > 0
