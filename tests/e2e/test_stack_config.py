"""The stack's config transforms, without starting anything (runs in the normal suite)."""

from __future__ import annotations

import argparse
import re
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from receiver.demo import run_demo
from receiver.stack import Stack, missing_packages
from receiver.stack_config import Ports, scale_promql, scale_rules
from tests.deploy.helpers import RULES_DIR, rule_files


@pytest.mark.parametrize(
    ("expr", "scaled"),
    [
        ("rate(x[5m])", "rate(x[15s])"),
        ("sum(rate(x[1h30m])) > 5", "sum(rate(x[270s])) > 5"),
        ("avg_over_time(x[1h] offset 1w)", "avg_over_time(x[3m] offset 504m)"),
        ("max_over_time(rate(x[5m])[1h:1m])", "max_over_time(rate(x[15s])[3m:3s])"),
        ("max_over_time(x[10m:])", "max_over_time(x[30s:])"),
        ('x{le="[5m]", job=~"offset 1w"} offset -1h', 'x{le="[5m]", job=~"offset 1w"} offset -3m'),
        ("time() - x > 900", "time() - x > 900"),
    ],
)
def test_scale_promql(expr: str, scaled: str) -> None:
    assert scale_promql(expr, 1 / 20) == scaled


_DURATION = re.compile(r"\b(?:\d+(?:ms|s|m|h|d|w|y))+\b")


def _flat(expr: object) -> str:
    return " ".join(str(expr).split())


def _normalised(rule: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rule.items() if k not in ("for", "expr")}


@pytest.mark.parametrize("path", rule_files(), ids=lambda p: p.name)
def test_scale_rules_changes_only_durations(path: Path) -> None:
    shipped = yaml.safe_load(path.read_text())
    scaled = yaml.safe_load(scale_rules(path.read_text(), 1 / 20))
    assert [g["name"] for g in scaled["groups"]] == [g["name"] for g in shipped["groups"]]
    for g_ship, g_scaled in zip(shipped["groups"], scaled["groups"], strict=True):
        for a, b in zip(g_ship["rules"], g_scaled["rules"], strict=True):
            assert _normalised(a) == _normalised(b)  # names, labels, annotations untouched
            assert ("for" in a) == ("for" in b)
            assert scale_promql(_flat(a["expr"]), 1 / 20) == _flat(b["expr"])
            # With durations masked, the expression is the same text.
            assert _DURATION.sub("D", _flat(a["expr"])) == _DURATION.sub("D", _flat(b["expr"]))


def test_generated_configs_pass_promtool_and_amtool(tmp_path: Path) -> None:
    stack = Stack(tmp_path, Ports.free())
    stack.write_configs()
    conf = tmp_path / "config"
    assert sorted(p.name for p in (conf / "rules").glob("*.yml")) == sorted(
        p.name for p in RULES_DIR.glob("*.yml")
    )
    for tool, args in (("promtool", ["check", "config", str(conf / "prometheus.yml")]),
                       ("amtool", ["check-config", str(conf / "alertmanager.yml")])):  # fmt: skip
        binary = shutil.which(tool)
        if binary is None:
            pytest.skip(f"{tool} not installed")
        res = subprocess.run([binary, *args], capture_output=True, text=True, check=False)
        assert res.returncode == 0, res.stdout + res.stderr


def test_demo_refuses_a_taken_port_and_starts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if missing_packages():
        pytest.skip("the demo would try to install Prometheus/Alertmanager first")
    monkeypatch.chdir(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        base = busy.getsockname()[1] - 2  # the receiver's port (base + 2) is taken
        args = argparse.Namespace(port_base=base, data_dir=None, mail_dir=None, duration=None)
        assert run_demo(args) == 1
    out = capsys.readouterr().out
    assert f"port {base + 2} (for receiver) is already in use" in out
    assert "--port-base" in out
    assert not (tmp_path / ".demo").exists()
