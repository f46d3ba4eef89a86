"""The hand-written config checks accept, convert and refuse exactly as pydantic models do.

``*Config`` here are the pydantic models the exporter config used to be. On random configs
(a valid one with random keys replaced, dropped or added, using every value type YAML
produces), :func:`exporters.config.validate` must give the same config, or the same first
error (key path and message) as ``ValidationError.errors()[0]``.
"""

from __future__ import annotations

import dataclasses
import datetime
import random
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from exporters import schema
from exporters.config import parse_duration, parse_size, validate

Format = Literal["regex", "json"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Model):
    path: str
    format: Format = "regex"
    metrics: list[str] | None = None
    start: Literal["beginning", "end"] = "end"


class MetricConfig(_Model):
    name: str
    type: Literal["counter", "gauge", "histogram"]
    help: str = ""
    format: Format = "regex"
    match: str | None = None
    where: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    labels: list[str] | dict[str, str] = Field(default_factory=list)
    static_labels: dict[str, str] = Field(default_factory=dict)
    map: dict[str, dict[str, str]] = Field(default_factory=dict)
    values: dict[str, list[str]] = Field(default_factory=dict)
    value: str | None = None
    scale: float = 1.0
    buckets: list[float] | None = None
    max_series: int = Field(default=1000, ge=1)


class ExporterConfig(_Model):
    listen: str = "127.0.0.1:9146"
    positions: str | None = None
    poll_interval: float = 0.5
    positions_interval: float = 5.0
    max_line_bytes: int = 64 * 1024
    one_shot_workers: int = Field(default=1, ge=0)
    sources: list[SourceConfig]
    metrics: list[MetricConfig]

    @field_validator("poll_interval", "positions_interval", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float:
        return parse_duration(v)

    @field_validator("max_line_bytes", mode="before")
    @classmethod
    def _size(cls, v: Any) -> int:
        return parse_size(v)


SCALARS: list[Any] = [
    "x", "", "5", "+5", "-3", "5.0", "5.5", " 7 ", "1_000", "1e3", "0x10", "inf", "nan", "5.",
    "regex", "json", "counter", "gauge", "histogram", "end", "beginning", "250ms", "2m",
    "64KiB", "1MB", "lots", "\u0663",
    0, 1, -1, 5, 2**70, 0.0, 5.0, 5.5, -0.5, 1e20, float("inf"), float("nan"),
    True, False, None, datetime.date(2024, 1, 2),
]  # fmt: skip
KEYS: list[Any] = ["a", "b", "name", "path", "zz", 1, None, True, 2.5]


def rand_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.random()
    if depth < 2 and kind < 0.2:
        return [rand_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if depth < 2 and kind < 0.4:
        return {rng.choice(KEYS): rand_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    return rng.choice(SCALARS)


def valid_config() -> dict[str, Any]:
    return {
        "listen": "127.0.0.1:9146",
        "poll_interval": "250ms",
        "sources": [{"path": "/var/log/x.log", "metrics": ["a_total"]}, {"path": "-"}],
        "metrics": [
            {"name": "a_total", "type": "counter", "match": "(?P<a>a)", "labels": ["a"]},
            {"name": "h", "type": "histogram", "match": "(?P<v>v)", "value": "v",
             "buckets": [1, 2.5], "scale": 0.001, "map": {"a": {"x": "y"}}},
            {"name": "j_total", "type": "counter", "format": "json", "where": {"l": 5},
             "labels": {"s": "svc"}, "values": {"s": ["a"]}, "static_labels": {"k": "v"}},
        ],
    }  # fmt: skip


def containers(node: Any) -> list[Any]:
    """Every dict and list inside ``node`` (``node`` included)."""
    out = [node]
    children = node.values() if isinstance(node, dict) else node
    for child in children:
        if isinstance(child, dict | list):
            out += containers(child)
    return out


def mutate(rng: random.Random, raw: dict[str, Any]) -> None:
    targets = containers(raw)
    for _ in range(rng.randint(1, 3)):
        node = rng.choice(targets)
        if isinstance(node, list):
            if node:
                node[rng.randrange(len(node))] = rand_value(rng)
            continue
        op = rng.random()
        names = [*node, "help", "format", "max_series", "one_shot_workers", "labels"]
        if op < 0.15 and node:
            del node[rng.choice(list(node))]
        elif op < 0.25:
            node[rng.choice(KEYS)] = rand_value(rng)
        else:
            node[rng.choice(names)] = rand_value(rng)


def reference(raw: dict[str, Any]) -> tuple[str, Any]:
    try:
        return "ok", ExporterConfig.model_validate(raw).model_dump()
    except ValidationError as e:
        err = e.errors()[0]
        return "error", (tuple(err["loc"]), err["msg"])


def ours(raw: dict[str, Any]) -> tuple[str, Any]:
    try:
        return "ok", dataclasses.asdict(validate(raw))
    except schema.Invalid as e:
        return "error", (e.loc, e.msg)


def test_a_valid_config_converts_like_pydantic() -> None:
    raw = valid_config() | {"max_line_bytes": "1MiB", "one_shot_workers": "2", "listen": "h:1"}
    got, want = ours(raw), reference(raw)
    assert got[0] == "ok"
    assert repr(got) == repr(want)


@pytest.mark.parametrize("seed", range(40))
def test_random_configs_get_pydantics_result_and_first_error(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(100):
        raw = valid_config()
        mutate(rng, raw)
        want = reference(raw)
        assert repr(ours(raw)) == repr(want), raw  # repr: nan == nan, 1 != 1.0
