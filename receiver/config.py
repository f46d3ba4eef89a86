"""Typed receiver config (DESIGN.md "Receiver config") and loading with clear errors.

Every problem is reported as ``file: key.path: what is wrong``; the CLI exits 2 on them.
Secrets come from ``*_file`` keys or ``${ENV}`` references and are held as SecretStr so
they never reach a log line or a repr.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)

from receiver.cron import CronError, parse_cron
from receiver.errors import ConfigError
from receiver.matchers import Matcher, parse_matcher
from receiver.units import parse_duration, parse_size
from receiver.yaml_load import load_yaml

Duration = Annotated[float, BeforeValidator(parse_duration)]
# true/false as YAML writes them (yes/no/on/off too): not pydantic's lax "yes" or 1 strings
Flag = Annotated[bool, Strict()]
PositiveDuration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
Size = Annotated[int, BeforeValidator(parse_size)]


def _check_http_url(value: str) -> str:
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


HttpUrl = Annotated[str, AfterValidator(_check_http_url)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _read_secret_file(path: str) -> SecretStr:
    try:
        return SecretStr(Path(path).read_text(encoding="utf-8").strip())
    except OSError as exc:
        raise ValueError(f"cannot read secret file {path}: {exc.strerror or exc}") from exc


class TlsListener(_Model):
    cert_file: Path
    key_file: Path


class BasicAuth(_Model):
    username: str
    password: SecretStr | None = None
    password_file: str | None = None

    @model_validator(mode="after")
    def _load(self) -> BasicAuth:
        if self.password_file is not None:
            if self.password is not None:
                raise ValueError("give password or password_file, not both")
            object.__setattr__(self, "password", _read_secret_file(self.password_file))
        if self.password is None:
            raise ValueError("password or password_file is required")
        return self


class WebhookAuth(_Model):
    bearer_token: SecretStr | None = None
    bearer_token_file: str | None = None
    basic_auth: BasicAuth | None = None

    @model_validator(mode="after")
    def _load(self) -> WebhookAuth:
        if self.bearer_token_file is not None:
            object.__setattr__(self, "bearer_token", _read_secret_file(self.bearer_token_file))
        if self.bearer_token is None and self.basic_auth is None:
            raise ValueError("set bearer_token, bearer_token_file or basic_auth")
        return self


class UiAuth(_Model):
    basic_auth: BasicAuth | None = None
    write: Flag = False


class Storage(_Model):
    path: Path = Path("alertmail.db")
    retention: Duration = 30 * 86400.0


class PrometheusConfig(_Model):
    url: HttpUrl = "http://127.0.0.1:9090"
    external_urls: list[HttpUrl] = Field(default_factory=list)
    query_timeout: Duration = 2.0
    max_concurrent_queries: int = Field(default=4, ge=1)


class GrafanaConfig(_Model):
    url: HttpUrl
    token: SecretStr | None = None
    token_file: str | None = None

    @model_validator(mode="after")
    def _load(self) -> GrafanaConfig:
        if self.token_file is not None:
            object.__setattr__(self, "token", _read_secret_file(self.token_file))
        return self


class TlsClientConfig(_Model):
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None
    insecure_skip_verify: Flag = False


class SmtpServer(_Model):
    host: str
    port: int = Field(default=25, ge=1, le=65535)
    starttls: Flag | None = None  # None: use it when offered (like Alertmanager's require_tls off)
    tls: Flag = False  # implicit TLS (port 465)
    username: str | None = None
    password: SecretStr | None = None
    password_file: str | None = None
    tls_config: TlsClientConfig = TlsClientConfig()
    timeout: Duration = 10.0
    hello: str | None = None

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"

    @model_validator(mode="after")
    def _load(self) -> SmtpServer:
        if self.password_file is not None:
            object.__setattr__(self, "password", _read_secret_file(self.password_file))
        if self.tls and self.starttls:
            raise ValueError("tls (implicit TLS) and starttls cannot both be true")
        return self


class SmtpPool(_Model):
    max_connections: int = Field(default=20, ge=1, le=1000)


class RetryPolicy(_Model):
    initial: Duration = 5.0
    max: Duration = 300.0
    give_up_after: Duration = 86400.0


class SmtpConfig(_Model):
    from_: str = Field(alias="from")
    servers: list[SmtpServer] = Field(min_length=1)
    pool: SmtpPool = SmtpPool()
    retry: RetryPolicy = RetryPolicy()

    @field_validator("from_")
    @classmethod
    def _no_crlf(cls, v: str) -> str:
        if any(c in v for c in "\r\n\0") or "@" not in v:
            raise ValueError("expected an address like 'Alerts <alerts@example.com>'")
        return v


class SlackTarget(_Model):
    url: SecretStr | None = None
    url_file: str | None = None
    token: SecretStr | None = None
    token_file: str | None = None
    channel: str | None = None

    @model_validator(mode="after")
    def _load(self) -> SlackTarget:
        if self.url_file is not None:
            object.__setattr__(self, "url", _read_secret_file(self.url_file))
        if self.token_file is not None:
            object.__setattr__(self, "token", _read_secret_file(self.token_file))
        if self.url is None and self.token is None:
            raise ValueError("set url/url_file (incoming webhook) or token/token_file + channel")
        if self.token is not None and not self.channel:
            raise ValueError("a bot token needs a channel")
        return self


class SlackConfig(_Model):
    webhooks: dict[str, SlackTarget] = Field(default_factory=dict)
    api_url: HttpUrl = "https://slack.com/api"
    timeout: Duration = 10.0
    retry: RetryPolicy = RetryPolicy()


class FloodConfig(_Model):
    max_emails: int = Field(default=10, ge=1)
    window: Duration = 600.0
    catchup_every: Duration = 60.0


class DeadmanConfig(_Model):
    alertname: str = "Watchdog"
    after: Duration = 600.0
    email: list[str] = Field(min_length=1)


_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class QuietHours(_Model):
    from_: str = Field(alias="from")
    to: str

    @field_validator("from_", "to")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if not _HHMM.match(v):
            raise ValueError(f"expected a time HH:MM, got {v!r}")
        return v


def _parse_matcher(value: object) -> Matcher:
    if isinstance(value, Matcher):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a matcher string like 'severity=\"critical\"', got {value!r}")
    return parse_matcher(value)


class Route(_Model):
    name: str | None = None
    matchers: list[Annotated[Matcher, BeforeValidator(_parse_matcher)]] = Field(
        default_factory=list
    )
    email: list[str] = Field(default_factory=list)
    slack: list[str] = Field(default_factory=list)
    mode: Literal["immediate", "digest"] = "immediate"
    every: PositiveDuration = 3600.0  # digest windows: 0 would divide by zero
    quiet_hours: QuietHours | None = None
    continue_: Flag = Field(default=False, alias="continue")

    @field_validator("email")
    @classmethod
    def _addresses(cls, v: list[str]) -> list[str]:
        for addr in v:
            if any(c in addr for c in "\r\n\0,;<> ") or addr.count("@") != 1:
                raise ValueError(f"not a plain email address: {addr!r}")
        return v


class DashboardRef(_Model):
    uid: str | None = None
    file: str | None = None
    panels: list[int] | None = None
    variables: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one(self) -> DashboardRef:
        if (self.uid is None) == (self.file is None):
            raise ValueError("give exactly one of uid or file")
        return self


class ReportConfig(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    schedule: str

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str) -> str:
        try:
            parse_cron(v)
        except CronError as exc:
            raise ValueError(f"not a cron schedule: {exc}") from None
        return v

    range: Duration = 7 * 86400.0
    dashboards: list[DashboardRef] = Field(default_factory=list)
    to: list[str] = Field(min_length=1)
    subject: str | None = None


class Config(_Model):
    listen: str = "127.0.0.1:9095"
    tls: TlsListener | None = None
    auth: WebhookAuth | None = None
    ui_auth: UiAuth = UiAuth()
    max_body: Size = 16 * 1024 * 1024
    timezone: str = "UTC"
    templates_dir: Path | None = None
    storage: Storage = Storage()
    prometheus: PrometheusConfig = PrometheusConfig()
    grafana: GrafanaConfig | None = None
    smtp: SmtpConfig | None = None
    slack: SlackConfig = SlackConfig()
    dedup_window: Duration = 120.0
    flood: FloodConfig | None = None
    deadman: DeadmanConfig | None = None
    routes: list[Route] = Field(default_factory=list)
    reports: list[ReportConfig] = Field(default_factory=list)
    shutdown_timeout: Duration = 10.0
    # Processes rendering alert emails off the event loop (0: render in a thread).
    render_workers: int = Field(default=2, ge=0, le=32)

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"expected host:port, got {v!r}")
        if ":" in host and not (host.startswith("[") and host.endswith("]")):
            raise ValueError(f"an IPv6 address goes in brackets, e.g. [::1]:9095; got {v!r}")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # OSError: a zone folder
            raise ValueError(f"unknown time zone {v!r}") from exc
        return v

    @model_validator(mode="after")
    def _cross(self) -> Config:
        for i, route in enumerate(self.routes):
            for target in route.slack:
                if target not in self.slack.webhooks:
                    raise ValueError(f"routes[{i}].slack: no slack.webhooks entry named {target!r}")
            if route.email and self.smtp is None:
                raise ValueError(f"routes[{i}].email: recipients set but no smtp section")
        return self

    @property
    def listen_host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]") or "0.0.0.0"

    @property
    def listen_port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand_env(node: Any, path: str, file: str) -> Any:
    if isinstance(node, str):

        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in os.environ:
                raise ConfigError(file, path, f"environment variable {name} is not set")
            return os.environ[name]

        return _ENV_REF.sub(sub, node)
    if isinstance(node, dict):
        return {k: _expand_env(v, f"{path}.{k}" if path else str(k), file) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand_env(v, f"{path}[{i}]", file) for i, v in enumerate(node)]
    return node


def _key_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith("function-") or part in ("is-instance[Matcher]",):
            continue
        else:
            name = part.rstrip("_") if part in ("from_", "continue_") else part
            out += f".{name}" if out else name
    return out


def _problem(err: Any) -> str:
    msg = str(err.get("msg", "invalid"))
    msg = msg.removeprefix("Value error, ")
    if err.get("type") == "extra_forbidden":
        return "unknown key"
    if err.get("type") == "missing":
        return "required key is missing"
    return msg


def config_from_dict(data: Any, file: str = "<config>") -> Config:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(file, "", "expected a YAML mapping at the top level")
    data = _expand_env(data, "", file)
    base = Path(file).parent if file != "<config>" else Path(".")
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        lines = [f"{_key_path(e['loc']) or '(top level)'}: {_problem(e)}" for e in errors]
        first = errors[0]
        err = ConfigError(file, _key_path(first["loc"]), _problem(first))
        if len(lines) > 1:
            err.args = ("\n".join(f"{file}: {line}" for line in lines),)
        raise err from None
    if cfg.templates_dir is not None and not cfg.templates_dir.is_absolute():
        cfg = cfg.model_copy(update={"templates_dir": base / cfg.templates_dir})
    if cfg.templates_dir is not None and not cfg.templates_dir.is_dir():
        raise ConfigError(file, "templates_dir", f"{cfg.templates_dir} is not a directory")
    if cfg.tls is not None:
        for key in ("cert_file", "key_file"):
            p: Path = getattr(cfg.tls, key)
            if not p.is_file():
                raise ConfigError(file, f"tls.{key}", f"{p} does not exist")
    return cfg


def load_config(path: str | Path) -> Config:
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(file, "", f"cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(file, "", f"not UTF-8 text: byte {exc.start}") from exc
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(file, "", f"not valid YAML: {where}{problem}") from exc
    try:
        return config_from_dict(data, file)
    except RecursionError as exc:  # a YAML alias inside itself: a: &a [*a]
        raise ConfigError(file, "", "a YAML alias refers to itself") from exc
