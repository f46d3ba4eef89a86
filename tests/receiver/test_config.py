from __future__ import annotations

from pathlib import Path

import pytest

from receiver.config import config_from_dict, load_config
from receiver.errors import ConfigError

DESIGN_EXAMPLE = """
listen: 127.0.0.1:9095
auth: {bearer_token_file: TOKEN}
ui_auth: {basic_auth: {username: ops, password_file: TOKEN}, write: false}
max_body: 16MiB
timezone: Europe/Berlin
storage: {path: /tmp/alertmail-test.db, retention: 30d}
prometheus:
  url: http://127.0.0.1:9090
  external_urls: [http://prometheus.example.com:9090]
smtp:
  from: "Alerts <alerts@example.com>"
  servers:
    - {host: smtp1.example.com, port: 587, starttls: true, username: u, password_file: TOKEN,
       tls_config: {insecure_skip_verify: false}}
    - {host: smtp2.example.com, port: 465, tls: true}
  pool: {max_connections: 20}
  retry: {initial: 5s, max: 5m, give_up_after: 24h}
slack:
  webhooks: {ops: {url: "https://hooks.slack.com/services/T/B/X"}}
dedup_window: 2m
flood: {max_emails: 10, window: 10m, catchup_every: 1m}
deadman: {alertname: Watchdog, after: 10m, email: [oncall@example.com]}
routes:
  - matchers: ['severity="critical"']
    email: [oncall@example.com]
    slack: [ops]
    mode: immediate
  - matchers: ['severity=~"warning|info"', 'team!="db"']
    email: [team@example.com]
    mode: digest
    every: 1h
    quiet_hours: {from: "22:00", to: "07:00"}
    continue: true
  - email: [catchall@example.com]
reports:
  - name: weekly-ops
    schedule: "0 8 * * MON"
    range: 7d
    dashboards: [{uid: alertmail-logs}, {file: dashboards/alerting-pipeline.json}]
    to: [leads@example.com]
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "TOKEN").write_text("s3cret\n")
    p = tmp_path / "alertmail.yml"
    p.write_text(text.replace("TOKEN", str(tmp_path / "TOKEN")))
    return p


def test_design_example_loads(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, DESIGN_EXAMPLE))
    assert cfg.listen_port == 9095
    assert cfg.auth is not None and cfg.auth.bearer_token is not None
    assert cfg.auth.bearer_token.get_secret_value() == "s3cret"
    assert cfg.smtp is not None and cfg.smtp.retry.max == 300
    assert cfg.smtp.servers[0].password is not None
    assert cfg.routes[1].continue_ is True and cfg.routes[1].every == 3600
    assert cfg.routes[1].quiet_hours is not None and cfg.routes[1].quiet_hours.from_ == "22:00"
    assert cfg.max_body == 16 * 1024 * 1024
    assert cfg.dedup_window == 120


def test_secrets_never_in_repr(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, DESIGN_EXAMPLE))
    assert "s3cret" not in repr(cfg)
    assert "s3cret" not in str(cfg.model_dump())


@pytest.mark.parametrize(
    ("snippet", "key", "problem"),
    [
        ("listen: 127.0.0.1:9095\nlisten_port: 1\n", "listen_port", "unknown key"),
        ("dedup_window: soon\n", "dedup_window", "duration"),
        ("max_body: lots\n", "max_body", "size"),
        ("timezone: Mars/Olympus\n", "timezone", "unknown time zone"),
        ("smtp: {from: a@b, servers: [{host: h, port: x}]}\n", "smtp.servers[0].port", "integer"),
        ("auth: {bearer_token_file: /nonexistent/token}\n", "auth", "cannot read secret file"),
        (
            "routes: [{matchers: ['severity=~\"(\"'], email: [a@b.c]}]\nsmtp: {from: a@b, "
            "servers: [{host: h}]}\n",
            "routes[0].matchers[0]",
            "bad regular expression",
        ),
        (
            "routes: [{email: ['a@b.c\\r\\nBcc: x@y']}]\nsmtp: {from: a@b, servers: [{host: h}]}\n",
            "routes[0].email",
            "plain email address",
        ),
        ("smtp: {from: a@b, servers: []}\n", "smtp.servers", "at least 1"),
        ("routes: [{slack: [nope]}]\n", "", "no slack.webhooks entry named 'nope'"),
        ("timezone: America\n", "timezone", "unknown time zone"),  # a folder of zones
        ('listen: "::1"\n', "listen", "in brackets"),
        ('ui_auth: {write: "yes"}\n', "ui_auth.write", "valid boolean"),  # a string, not true
        ("routes: [{mode: digest, every: 0s}]\n", "routes[0].every", "greater than 0"),
        ("dedup_window: .inf\n", "dedup_window", "finite"),
        ("a: &a [*a]\n", "", "refers to itself"),
    ],
)
def test_one_clear_error_per_problem(tmp_path: Path, snippet: str, key: str, problem: str) -> None:
    p = write(tmp_path, snippet)
    with pytest.raises(ConfigError) as info:
        load_config(p)
    err = info.value
    assert err.file == str(p)
    assert err.key_path == key
    assert problem in str(err)
    assert str(p) in str(err)


def test_env_references(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AM_TOKEN", "from-env")
    cfg = config_from_dict({"auth": {"bearer_token": "${AM_TOKEN}"}})
    assert cfg.auth is not None and cfg.auth.bearer_token is not None
    assert cfg.auth.bearer_token.get_secret_value() == "from-env"
    monkeypatch.delenv("AM_TOKEN")
    with pytest.raises(ConfigError, match=r"auth\.bearer_token: environment variable AM_TOKEN"):
        config_from_dict({"auth": {"bearer_token": "${AM_TOKEN}"}})


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.yml"
    p.write_text("listen: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML: line 2"):
        load_config(p)


def test_a_key_given_twice_is_an_error(tmp_path: Path) -> None:
    p = write(tmp_path, "routes: [{email: [a@b.c]}]\ndedup_window: 2m\nroutes: []\n")
    with pytest.raises(ConfigError, match="line 3, column 1: found the key 'routes' twice"):
        load_config(p)
    # a YAML merge key is not a duplicate
    merged = "smtp: &s {from: a@b.c, servers: [{host: h}]}\nx: {<<: *s, <<: *s}\n"
    with pytest.raises(ConfigError, match="unknown key"):  # only for being an unknown key
        load_config(write(tmp_path, merged))


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    p = tmp_path / "latin1.yml"
    p.write_bytes("timezone: Europe/Z\xfcrich\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(p)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yml")


def test_defaults_are_usable() -> None:
    cfg = config_from_dict(None)
    assert cfg.listen == "127.0.0.1:9095"
    assert cfg.smtp is None and cfg.routes == []
