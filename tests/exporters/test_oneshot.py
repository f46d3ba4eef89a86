"""One-shot ranges: split anywhere, read in any chunk size, every line counted once, whole."""

from __future__ import annotations

import itertools
import random
import re
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from exporters import oneshot
from exporters.config import MetricConfig
from exporters.match import ChunkResult, Matcher
from exporters.metrics import Store
from tests.exporters.conftest import make_config, samples, value

METRIC = MetricConfig(name="ends_total", type="counter", match=r"(?P<e>[a-z])$", labels=["e"])


def reference(data: bytes, limit: int) -> Counter[tuple[str, ...]]:
    pattern = re.compile(rb"([a-z])$")
    counts: Counter[tuple[str, ...]] = Counter()
    for line in data.split(b"\n")[:-1]:
        m = pattern.search(line)
        if m and len(line) <= limit:
            counts[(m[1].decode(),)] += 1
    return counts


@pytest.mark.parametrize("seed", range(40))
def test_ranges_count_each_line_once_whatever_the_split_and_read_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    rng = random.Random(seed)
    lines = [
        "".join(rng.choice("xyz ") for _ in range(rng.randint(0, 40))) + rng.choice("abc1")
        for _ in range(rng.randint(1, 60))
    ]
    data = "".join(line + "\n" for line in lines).encode()
    path = tmp_path / "x.log"
    path.write_bytes(data)
    limit = 30
    monkeypatch.setattr(oneshot, "READ_SIZE", rng.choice([4, 7, 16, 64]))
    monkeypatch.setattr(oneshot, "_MATCHERS", [Matcher("regex", [METRIC])])
    cuts = sorted(rng.sample(range(1, len(data)), min(4, len(data) - 1)))
    bounds = [0, *cuts, len(data)]
    total = ChunkResult()
    for start, end in itertools.pairwise(bounds):
        total.merge(oneshot.scan_range(0, str(path), start, end, limit))
    assert total.counts.get("ends_total", Counter()) == reference(data, limit)
    assert total.lines == len(lines)


def test_a_file_two_sources_name_is_read_by_the_first_as_when_tailing(
    tmp_path: Path, registry: CollectorRegistry
) -> None:
    log = tmp_path / "app.log"
    log.write_text("level=info\nlevel=warn\n")
    counter = {"type": "counter", "match": "level=(?P<l>\\w+)", "labels": ["l"]}
    cfg = make_config(
        tmp_path,
        {
            "sources": [
                {"path": str(tmp_path / "*.log"), "metrics": ["a_total"]},
                {"path": str(log), "metrics": ["b_total"]},
            ],
            "metrics": [{"name": "a_total", **counter}, {"name": "b_total", **counter}],
        },
    )
    store = Store(cfg, registry)
    oneshot.run_once(cfg, store)
    got = samples(registry)
    assert value(got, "a_total", l="info") == 1
    assert value(got, "b_total", l="info") is None  # not read a second time
    assert value(got, "alertmail_exporter_lines_read_total", file=str(log)) == 2
