"""compose file, Dockerfile, systemd units, Grafana provisioning, example configs."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from .helpers import DASHBOARDS_DIR, DEPLOY, REPO, load_yaml

COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
SYSTEMD = DEPLOY / "systemd"
EXPORTER_YML = DEPLOY / "exporter" / "exporter.yml"
RECEIVER_YML = DEPLOY / "receiver" / "alertmail.yml"
GRAFANA = DEPLOY / "grafana" / "provisioning"

# ----------------------------------------------------------------------------- compose


def _compose() -> dict[str, Any]:
    data = load_yaml(COMPOSE)
    assert isinstance(data, dict)
    return data


def test_compose_services_and_images() -> None:
    services = _compose()["services"]
    images = {name: svc.get("image", "") for name, svc in services.items()}
    assert images["prometheus"].startswith("prom/prometheus:")
    assert images["alertmanager"].startswith("prom/alertmanager:")
    assert images["grafana"].startswith("grafana/grafana:")
    build = services["alertmail-receiver"]["build"]
    assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
    assert services["alertmail-exporter"]["image"] == services["alertmail-receiver"]["image"]
    for name, svc in services.items():
        # The shipped configs talk to 127.0.0.1: every container shares the host network.
        assert svc.get("network_mode") == "host", name
        assert not svc.get("ports"), f"{name}: ports are meaningless with network_mode host"
        assert set(svc) <= {
            "image",
            "build",
            "command",
            "volumes",
            "secrets",
            "environment",
            "network_mode",
            "restart",
            "depends_on",
        }, name


def test_compose_commands_use_the_shipped_configs() -> None:
    services = _compose()["services"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]
    assert services["alertmail-receiver"]["command"][0] == "receive"
    assert services["alertmail-exporter"]["command"][0] == "export"


def test_compose_bind_mounts_exist_and_named_volumes_are_declared() -> None:
    data = _compose()
    declared = set(data.get("volumes") or {})
    checked = 0
    for name, svc in data["services"].items():
        for vol in svc.get("volumes", []):
            source, target = vol.split(":")[:2]
            assert target.startswith("/"), f"{name}: {vol}"
            if source.startswith((".", "/")):
                if "/logs/" in source:  # the user's log files, created by docker if missing
                    continue
                assert (COMPOSE.parent / source).resolve().exists(), f"{name}: {source}"
            else:
                assert source in declared, f"{name}: volume {source} not declared"
            checked += 1
    assert checked >= 8


def test_compose_secret_matches_the_configs_token_paths() -> None:
    data = _compose()
    assert "alertmail-token" in data["secrets"]
    am = load_yaml(DEPLOY / "alertmanager" / "alertmanager.yml")
    creds = {
        h["http_config"]["authorization"]["credentials_file"]
        for r in am["receivers"]
        for h in r.get("webhook_configs", [])
    }
    targets = {s["target"] for svc in data["services"].values() for s in svc.get("secrets", [])}
    assert creds <= targets
    assert load_yaml(RECEIVER_YML)["auth"]["bearer_token_file"] in targets
    # the secret itself is never committed
    assert "*" in (DEPLOY / "secrets" / ".gitignore").read_text().splitlines()


def test_compose_mounts_dashboards_where_grafana_provisioning_looks() -> None:
    provider = load_yaml(GRAFANA / "dashboards" / "alertmail.yml")["providers"][0]
    mounts = {
        vol.split(":")[1]: vol.split(":")[0] for vol in _compose()["services"]["grafana"]["volumes"]
    }
    source = mounts[provider["options"]["path"]]
    assert (COMPOSE.parent / source).resolve() == DASHBOARDS_DIR
    assert mounts["/etc/grafana/provisioning"] == "./grafana/provisioning"


def test_compose_config_with_docker_if_available() -> None:
    docker = shutil.which("docker")
    if (
        not docker
        or subprocess.run(
            [docker, "compose", "version"], capture_output=True, check=False
        ).returncode
        != 0
    ):
        pytest.skip("docker compose not installed; structure is checked by the tests above")
    res = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stderr


# --------------------------------------------------------------------------- Dockerfile


def test_dockerfile_builds_the_package_from_the_repo_root() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert re.search(r"^RUN pip install \.", text, re.M)
    assert re.search(r"^USER alertmail$", text, re.M), "do not run as root"
    assert 'ENTRYPOINT ["alertmail"]' in text
    copied = {
        src
        for line in re.findall(r"^COPY (.+)$", text, re.M)
        for src in line.split()[:-1]
        if not src.startswith("--")
    }
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    packages = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    forced = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"].get("force-include", {})
    needed = {"pyproject.toml", pyproject["project"]["readme"], *packages, *forced}
    assert {c.rstrip("/") for c in copied} >= needed
    for src in copied - {pyproject["project"]["readme"]}:  # README is written by the lead
        assert (REPO / src).exists(), src


# ------------------------------------------------------------------------------ systemd


def _unit(name: str) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in (SYSTEMD / name).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        assert current is not None, f"{name}: {line} outside a section"
        current.setdefault(key, []).append(value)
    return sections


UNITS = {"alertmail-receiver.service": "receive", "alertmail-exporter.service": "export"}


@pytest.mark.parametrize(("unit", "command"), UNITS.items())
def test_systemd_unit_is_hardened(unit: str, command: str) -> None:
    sections = _unit(unit)
    svc = sections["Service"]
    assert re.search(
        rf"\balertmail {command} --config /etc/alertmail/\S+\.yml$", svc["ExecStart"][0]
    )
    assert svc["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert svc.get("DynamicUser") == ["yes"] or svc.get("User") == ["alertmail"]
    assert svc["StateDirectory"] == ["alertmail"]
    assert svc["ProtectSystem"] == ["strict"]
    for key in (
        "NoNewPrivileges",
        "PrivateTmp",
        "ProtectHome",
        "RestrictNamespaces",
        "LockPersonality",
        "ProtectKernelTunables",
        "ProtectControlGroups",
    ):
        assert svc.get(key) == ["yes"], f"{unit}: {key}"
    assert svc.get("CapabilityBoundingSet") == [""]
    assert svc["Restart"] == ["on-failure"]
    assert sections["Install"]["WantedBy"] == ["multi-user.target"]


def test_systemd_unit_paths_match_the_configs() -> None:
    receiver = load_yaml(RECEIVER_YML)
    exporter = load_yaml(EXPORTER_YML)
    for path in (receiver["storage"]["path"], exporter["positions"]):
        assert path.startswith("/var/lib/alertmail/"), "must live in StateDirectory=alertmail"


def test_systemd_analyze_verify() -> None:
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze not installed")
    res = subprocess.run(
        [analyze, "verify", *(str(SYSTEMD / u) for u in UNITS)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    out = res.stdout + res.stderr
    if "Failed to" in out and "bus" in out.lower():
        pytest.skip(f"systemd-analyze cannot run here: {out.strip()[:200]}")
    problems = [
        line
        for line in out.splitlines()
        if re.search(r"Unknown (key|section|lvalue)|Failed to parse|Invalid|Missing", line)
    ]
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------- Grafana


def test_grafana_datasource_provisioning() -> None:
    data = load_yaml(GRAFANA / "datasources" / "prometheus.yml")
    assert data["apiVersion"] == 1
    (ds,) = data["datasources"]
    assert ds["type"] == "prometheus"
    assert ds["url"] == "http://127.0.0.1:9090"
    assert ds["access"] == "proxy"


def test_grafana_dashboard_provisioning() -> None:
    data = load_yaml(GRAFANA / "dashboards" / "alertmail.yml")
    assert data["apiVersion"] == 1
    (provider,) = data["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")


# ----------------------------------------------------------------- exporter config


NGINX_LINE = (
    '127.0.0.1 - - [03/Dec/2026:10:00:00 +0000] "GET /api/items?id=1 HTTP/1.1" 503 162 '
    '"-" "curl/8.0" rt=0.245'
)


def _metrics() -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in load_yaml(EXPORTER_YML)["metrics"]}


def _map_value(patterns: dict[str, str], value: str) -> list[str]:
    """Every mapped value whose regex matches, by search and by fullmatch: the shipped
    patterns are anchored, so both readings of `map` give the same single answer."""
    by_search = [v for p, v in patterns.items() if re.search(p, value)]
    by_full = [v for p, v in patterns.items() if re.fullmatch(p, value)]
    assert by_search == by_full
    return by_search


def test_exporter_config_structure() -> None:
    cfg = load_yaml(EXPORTER_YML)
    assert cfg["listen"] == "127.0.0.1:9146"
    assert cfg["positions"].endswith(".json")
    formats = {s["format"] for s in cfg["sources"]}
    assert formats == {"json", "regex"}
    names = set(_metrics())
    assert names == {"app_log_lines_total", "http_requests_total", "http_request_duration_seconds"}
    for source in cfg["sources"]:
        assert Path(source["path"]).is_absolute()
        assert set(source.get("metrics", [])) <= names


def test_exporter_json_metric_labels_and_level_map() -> None:
    metric = _metrics()["app_log_lines_total"]
    assert metric["type"] == "counter" and metric["format"] == "json"
    assert metric["labels"] == {"service": "service", "level": "level"}
    levels = metric["map"]["level"]
    for raw, want in [
        ("ERROR", "error"),
        ("error", "error"),
        ("Warn", "warning"),
        ("INFO", "info"),
        ("debug", "debug"),
    ]:
        assert _map_value(levels, raw) == [want], raw


def test_exporter_nginx_metrics_parse_a_sample_line() -> None:
    metrics = _metrics()
    requests = metrics["http_requests_total"]
    m = re.search(requests["match"], NGINX_LINE)
    assert m is not None
    assert set(requests["labels"]) <= set(m.groupdict())
    assert m["method"] == "GET"
    assert _map_value(requests["map"]["status"], m["status"]) == ["5xx"]
    for code, cls in [("200", "2xx"), ("304", "3xx"), ("404", "4xx"), ("599", "5xx")]:
        assert _map_value(requests["map"]["status"], code) == [cls]

    duration = metrics["http_request_duration_seconds"]
    assert duration["type"] == "histogram"
    m = re.search(duration["match"], NGINX_LINE)
    assert m is not None and float(m[duration["value"]]) == 0.245
    assert duration["buckets"] == sorted(duration["buckets"])
    assert 1 in duration["buckets"], "HTTPLatencyHigh's 1s threshold needs a bucket boundary"


# ----------------------------------------------------------------- receiver config


def test_receiver_example_config_matches_alertmanager() -> None:
    cfg = load_yaml(RECEIVER_YML)
    assert cfg["listen"] == "127.0.0.1:9095"
    assert cfg["deadman"]["alertname"] == "Watchdog"
    am = load_yaml(DEPLOY / "alertmanager" / "alertmanager.yml")
    watchdog_repeat = am["route"]["routes"][0]["repeat_interval"]
    assert int(cfg["deadman"]["after"].rstrip("m")) > 2 * int(watchdog_repeat.rstrip("m"))
    uids = {
        json_uid
        for d in cfg["reports"]
        for json_uid in (x.get("uid") for x in d["dashboards"])
        if json_uid
    }
    assert uids <= {"alertmail-logs", "alertmail-pipeline"}


# ------------------------------------------- the project's own loaders accept the configs


def test_exporter_config_loads_with_the_exporter() -> None:
    from exporters.config import load_config

    cfg = load_config(str(EXPORTER_YML))
    assert {m.name for m in cfg.metrics} == set(_metrics())
    assert [m.name for s in cfg.sources for m in cfg.metrics_for(s)] == [
        "app_log_lines_total",
        "http_requests_total",
        "http_request_duration_seconds",
    ]


def test_receiver_example_config_loads_with_the_receiver(tmp_path: Path) -> None:
    from receiver.config import config_from_dict

    data = load_yaml(RECEIVER_YML)
    token = tmp_path / "token"
    token.write_text("example-token\n", encoding="utf-8")
    data["auth"]["bearer_token_file"] = str(token)  # /etc/alertmail/token does not exist here
    cfg = config_from_dict(data, str(RECEIVER_YML))
    assert cfg.deadman is not None and cfg.deadman.alertname == "Watchdog"
    # The Watchdog is the dead man's switch's heartbeat, consumed before routing: the first
    # route is a real one.
    assert str(cfg.routes[0].matchers[0]) == 'severity="critical"'
    from receiver.dispatch_plan import is_heartbeat
    from receiver.model import parse_notification

    beat = parse_notification({"alerts": [{"labels": {"alertname": "Watchdog"}}]})
    assert is_heartbeat(beat, cfg.deadman.alertname)


def test_exporter_config_produces_the_metrics_the_rules_use(tmp_path: Path) -> None:
    """Run the real exporter (one-shot) with the shipped config on sample logs."""
    alertmail = Path(sys.executable).parent / "alertmail"
    if not alertmail.exists():
        pytest.skip("the alertmail command is not installed in this environment")
    app_log = tmp_path / "app.jsonl"
    app_log.write_text(
        '{"service": "api", "level": "ERROR", "msg": "boom"}\n'
        '{"service": "api", "level": "info", "msg": "ok"}\n',
        encoding="utf-8",
    )
    access_log = tmp_path / "access.log"
    access_log.write_text(NGINX_LINE + "\n" + NGINX_LINE.replace('" 503 ', '" 200 ') + "\n")
    cfg = load_yaml(EXPORTER_YML)
    cfg["sources"][0]["path"] = str(app_log)
    cfg["sources"][1]["path"] = str(access_log)
    cfg["positions"] = str(tmp_path / "positions.json")
    for source in cfg["sources"]:
        source["start"] = "beginning"
    config = tmp_path / "exporter.yml"
    config.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    res = subprocess.run(
        [str(alertmail), "export", "--one-shot", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in res.stdout.splitlines()
        if line and not line.startswith("#")
    }
    assert samples['app_log_lines_total{level="error",service="api"}'] == 1
    assert samples['http_requests_total{method="GET",status="5xx"}'] == 1
    assert samples['http_requests_total{method="GET",status="2xx"}'] == 1
    assert samples['http_requests_total{method="POST",status="5xx"}'] == 0, "pre-initialised"
    assert samples['http_request_duration_seconds_bucket{le="0.25"}'] == 2
    assert samples["http_request_duration_seconds_count"] == 2
