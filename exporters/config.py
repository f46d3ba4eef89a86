"""Exporter config: typed models (frozen dataclasses, unknown keys refused) and semantic checks.

Field types are checked by :mod:`exporters.schema` with pydantic's error messages, without
importing pydantic (that import alone was a tenth of a one-shot run's CPU time).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from exporters import schema
from exporters.linere import batch_pattern, user_pattern
from receiver.errors import ConfigError
from receiver.yaml_load import load_yaml

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)\Z")
_SIZE = re.compile(r"(\d+)\s*(B|KiB|MiB|GiB|KB|MB|GB)?\Z")
_SIZE_UNITS = {None: 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
_SIZE_UNITS.update({"KB": 1000, "MB": 1000**2, "GB": 1000**3})
Format = Literal["regex", "json"]


def parse_duration(value: str | float) -> float:
    """``250ms``, ``1s``, ``5m``, ``1h`` (or a number of seconds) to seconds."""
    if isinstance(value, int | float):
        return float(value)
    m = _DURATION.match(value.strip()) if isinstance(value, str) else None
    if not m:
        raise ValueError(f"not a duration: {value!r} (use e.g. 250ms, 1s, 5m)")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def parse_size(value: str | int) -> int:
    """``64KiB``, ``1MiB``, ``4096`` to bytes."""
    if isinstance(value, int):
        return value
    m = _SIZE.match(value.strip()) if isinstance(value, str) else None
    if not m:
        raise ValueError(f"not a size: {value!r} (use e.g. 64KiB, 1MiB)")
    return int(m.group(1)) * _SIZE_UNITS[m.group(2)]


@dataclass(frozen=True, kw_only=True)
class SourceConfig:
    path: str  # a file, a glob, or "-" for stdin
    format: Format = "regex"
    metrics: list[str] | None = None  # None: every metric of the source's format
    start: Literal["beginning", "end"] = "end"  # where existing files start at first run


@dataclass(frozen=True, kw_only=True)
class MetricConfig:
    name: str
    type: Literal["counter", "gauge", "histogram"]
    help: str = ""
    format: Format = "regex"
    match: str | None = None
    where: dict[str, str | int | float | bool | None] = field(default_factory=dict)
    labels: list[str] | dict[str, str] = field(default_factory=list)
    static_labels: dict[str, str] = field(default_factory=dict)
    map: dict[str, dict[str, str]] = field(default_factory=dict)
    values: dict[str, list[str]] = field(default_factory=dict)  # label values known upfront
    value: str | None = None
    scale: float = 1.0
    buckets: list[float] | None = None
    max_series: int = 1000  # >= 1

    @property
    def label_sources(self) -> dict[str, str]:
        """label name -> regex group name or JSON dotted field path."""
        if isinstance(self.labels, dict):
            return dict(self.labels)
        return {(s.replace(".", "_") if self.format == "json" else s): s for s in self.labels}


@dataclass(frozen=True, kw_only=True)
class ExporterConfig:
    listen: str = "127.0.0.1:9146"
    positions: str | None = None
    poll_interval: float = 0.5
    positions_interval: float = 5.0
    max_line_bytes: int = 64 * 1024
    # one-shot: forked processes scanning a large regex file in parallel (0: one per core).
    # 1 (no worker) costs the least CPU in total; more only shortens the wall-clock time.
    one_shot_workers: int = 1  # >= 0
    sources: list[SourceConfig]
    metrics: list[MetricConfig]

    def metrics_for(self, source: SourceConfig) -> list[MetricConfig]:
        if source.metrics is None:
            return [m for m in self.metrics if m.format == source.format]
        by_name = {m.name: m for m in self.metrics}
        return [by_name[n] for n in source.metrics]


# The field types above, as checks (in the same order: the first problem is reported).
_text, _texts = schema.text, schema.list_of(schema.text)
_source = schema.model(
    SourceConfig,
    {
        "path": _text,
        "format": schema.one_of("regex", "json"),
        "metrics": schema.optional(_texts),
        "start": schema.one_of("beginning", "end"),
    },
)
_metric = schema.model(
    MetricConfig,
    {
        "name": _text,
        "type": schema.one_of("counter", "gauge", "histogram"),
        "help": _text,
        "format": schema.one_of("regex", "json"),
        "match": schema.optional(_text),
        "where": schema.dict_of(schema.scalar),
        "labels": schema.either(("list[str]", _texts), ("dict[str,str]", schema.dict_of(_text))),
        "static_labels": schema.dict_of(_text),
        "map": schema.dict_of(schema.dict_of(_text)),
        "values": schema.dict_of(_texts),
        "value": schema.optional(_text),
        "scale": schema.number,
        "buckets": schema.optional(schema.list_of(schema.number)),
        "max_series": schema.integer(ge=1),
    },
)
_duration = schema.before(parse_duration, schema.number)
_exporter = schema.model(
    ExporterConfig,
    {
        "listen": _text,
        "positions": schema.optional(_text),
        "poll_interval": _duration,
        "positions_interval": _duration,
        "max_line_bytes": schema.before(parse_size, schema.integer()),
        "one_shot_workers": schema.integer(ge=0),
        "sources": schema.list_of(_source),
        "metrics": schema.list_of(_metric),
    },
)


def _key(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_config(path: str) -> ExporterConfig:
    """Read, validate and check an exporter config file; raises ConfigError."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(path, "", f"cannot read: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(path, "", f"not UTF-8 text: byte {e.start}") from e
    try:
        raw = load_yaml(text)
    except yaml.YAMLError as e:
        try:  # the pure-Python parser's message quotes the offending line
            yaml.safe_load(text)
        except yaml.YAMLError as plain:
            raise ConfigError(path, "", f"not valid YAML: {plain}") from plain
        raise ConfigError(path, "", f"not valid YAML: {e}") from e  # e.g. a key twice
    return parse_config(raw, path)


def validate(raw: Any) -> ExporterConfig:
    """The config from parsed YAML, field types checked only; raises schema.Invalid."""
    cfg: ExporterConfig = _exporter(raw, ())
    return cfg


def parse_config(raw: Any, path: str = "<config>") -> ExporterConfig:
    if not isinstance(raw, dict):
        raise ConfigError(path, "", "the config must be a mapping")
    try:
        cfg = validate(raw)
    except schema.Invalid as e:
        raise ConfigError(path, _key(e.loc), e.msg) from e
    _check(cfg, path)
    return cfg


def _check(cfg: ExporterConfig, path: str) -> None:
    _host, sep, port = cfg.listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(path, "listen", f"expected HOST:PORT, got {cfg.listen!r}")
    seen: set[str] = set()
    for i, m in enumerate(cfg.metrics):
        if m.name in seen:
            raise ConfigError(path, f"metrics[{i}].name", f"duplicate metric {m.name!r}")
        seen.add(m.name)
        _check_metric(m, path, f"metrics[{i}]")
    by_name = {m.name: m for m in cfg.metrics}
    for i, s in enumerate(cfg.sources):
        for j, name in enumerate(s.metrics or []):
            key = f"sources[{i}].metrics[{j}]"
            if name not in by_name:
                raise ConfigError(path, key, f"no metric named {name!r}")
            if by_name[name].format != s.format:
                problem = f"metric {name!r} is format {by_name[name].format}, source is {s.format}"
                raise ConfigError(path, key, problem)


def _check_metric(m: MetricConfig, path: str, key: str) -> None:
    def fail(sub: str, problem: str) -> ConfigError:
        return ConfigError(path, f"{key}.{sub}", f"metric {m.name}: {problem}")

    if not _METRIC_NAME.match(m.name):
        raise fail("name", "not a valid Prometheus metric name")
    if m.type == "counter" and not m.name.endswith("_total"):
        raise fail("name", "counter names must end in _total (Prometheus exposes NAME_total)")
    if m.type != "counter" and m.value is None:
        raise fail("value", f"a {m.type} needs `value` (the group or field to use)")
    if m.buckets is not None:
        if m.type != "histogram":
            raise fail("buckets", "only histograms have buckets")
        if not m.buckets or any(a >= b for a, b in zip(m.buckets, m.buckets[1:], strict=False)):
            raise fail("buckets", "buckets must be non-empty and strictly increasing")
    groups: set[str] | None = None
    if m.format == "regex":
        if m.where:
            raise fail("where", "`where` is for format json; use `match` for regex")
        if m.match is None:
            raise fail("match", "a regex metric needs `match`")
        try:
            groups = set(user_pattern(m.match).groupindex)
            batch_pattern(m.match)
        except re.error as e:
            raise fail("match", f"regex {m.match!r} does not compile: {e}") from e
    elif m.match is not None:
        raise fail("match", "`match` is for format regex; use `where` for json")
    sources = m.label_sources
    names = list(sources) + list(m.static_labels)
    for name in names:
        if not _LABEL_NAME.match(name) or name.startswith("__"):
            raise fail("labels", f"{name!r} is not a valid label name")
        if m.type == "histogram" and name == "le":
            raise fail("labels", "`le` is reserved for histogram buckets")
    if len(set(names)) != len(names):
        raise fail("labels", "a label is named twice (labels and static_labels)")
    if groups is not None:
        for label, group in sources.items():
            if group not in groups:
                raise fail("labels", f"label {label!r}: {group!r} is not a named group of match")
        if m.value is not None and m.value not in groups:
            raise fail("value", f"{m.value!r} is not a named group of match")
    for label, table in m.map.items():
        if label not in sources:
            raise fail("map", f"{label!r} is not one of the metric's labels")
        for pattern in table:
            try:
                re.compile(pattern)
            except re.error as e:
                raise fail(f"map.{label}", f"regex {pattern!r} does not compile: {e}") from e
    for label in m.values:
        if label not in sources:
            raise fail("values", f"{label!r} is not one of the metric's labels")
