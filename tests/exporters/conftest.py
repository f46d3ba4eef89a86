"""Shared helpers: a plain line-by-line reference implementation and config builders."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from exporters.config import ExporterConfig, MetricConfig, parse_config
from exporters.match import Key

Sample = tuple[str, tuple[tuple[str, str], ...]]


def reference_counts(metric: MetricConfig, data: bytes, limit: int = 65536) -> Counter[Key]:
    """What a naive exporter counts: one ``re.search`` per line, nothing clever."""
    assert metric.match is not None
    pattern = re.compile(metric.match.encode())
    groups = [*metric.label_sources.values(), *([metric.value] if metric.value else [])]
    out: Counter[Key] = Counter()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for line in lines:
        if len(line) > limit:
            continue
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            continue
        m = pattern.search(line)
        if m:
            out[tuple((m.group(g) or b"").decode("utf-8", "replace") for g in groups)] += 1
    return out


def make_config(tmp_path: Path, raw: dict[str, Any]) -> ExporterConfig:
    path = tmp_path / "exporter.yml"
    path.write_text(yaml.safe_dump(raw))
    return parse_config(raw, str(path))


def samples(registry_or_text: CollectorRegistry | str) -> dict[Sample, float]:
    from prometheus_client import generate_latest

    text = (
        registry_or_text
        if isinstance(registry_or_text, str)
        else generate_latest(registry_or_text).decode()
    )
    out: dict[Sample, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(got: dict[Sample, float], name: str, **labels: str) -> float | None:
    return got.get((name, tuple(sorted(labels.items()))))


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()
