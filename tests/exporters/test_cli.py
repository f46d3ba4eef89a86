"""One-shot runs end to end: counts equal an independent count of the generated log."""

from __future__ import annotations

import random
import re
import sys
from pathlib import Path

import pytest
import yaml

from exporters import oneshot
from exporters.cli import run
from exporters.match import ChunkResult
from tests.exporters.conftest import samples, value

CONFIG = {
    "sources": [{"path": "LOG", "format": "regex"}, {"path": "JSONL", "format": "json"}],
    "metrics": [
        {
            "name": "http_requests_total",
            "type": "counter",
            "match": r'"(?P<method>[A-Z]+) [^"]*" (?P<status>\d{3}) ',
            "labels": ["method", "status"],
            "map": {"status": {"5..": "5xx"}},
        },
        {
            "name": "http_request_duration_seconds",
            "type": "histogram",
            "match": r"rt=(?P<ms>\d+)ms",
            "value": "ms",
            "scale": 0.001,
            "buckets": [0.1, 0.5],
        },
        {
            "name": "app_log_lines_total",
            "type": "counter",
            "format": "json",
            "labels": {"service": "service", "level": "level"},
        },
    ],
}


def write_logs(
    tmp_path: Path, n: int, workers: int | None = None
) -> tuple[Path, dict[tuple[str, str], int], list[int]]:
    rng = random.Random(n)
    counts: dict[tuple[str, str], int] = {}
    rts: list[int] = []
    with (tmp_path / "access.log").open("w") as fh:
        for i in range(n):
            method, status = rng.choice(["GET", "POST"]), rng.choice(["200", "404", "503"])
            rt = rng.randrange(1000)
            if i % 7 == 0:
                fh.write(f'garbage line {i} with "quote\n')
                continue
            fh.write(f'1.2.3.4 - - [x] "{method} /p/{i} HTTP/1.1" {status} 12 rt={rt}ms\n')
            key = (method, "5xx" if status == "503" else status)
            counts[key] = counts.get(key, 0) + 1
            rts.append(rt)
    with (tmp_path / "app.jsonl").open("w") as fh:
        fh.write(
            '{"service": "api", "level": "info"}\nnot json\n{"service": "db", "level": "error"}'
        )
    config = CONFIG if workers is None else {**CONFIG, "one_shot_workers": workers}
    raw = yaml.safe_dump(config).replace("LOG", str(tmp_path / "access.log"))
    cfg = tmp_path / "exporter.yml"
    cfg.write_text(raw.replace("JSONL", str(tmp_path / "app.jsonl")))
    return cfg, counts, rts


@pytest.mark.parametrize("workers", [None, 0, 2])
def test_one_shot_counts_equal_independent_count(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    workers: int | None,
) -> None:
    """By default one process; ``one_shot_workers`` 0 (one per core) or N forks workers."""
    monkeypatch.setattr(oneshot, "PARALLEL_MIN", 1024)  # small files qualify too
    monkeypatch.setattr("os.cpu_count", lambda: 3)
    calls: list[int] = []
    real = oneshot._parallel

    def spy(index: int, path: str, size: int, n: int, limit: int) -> ChunkResult:
        calls.append(n)
        return real(index, path, size, n, limit)

    monkeypatch.setattr(oneshot, "_parallel", spy)
    cfg, counts, rts = write_logs(tmp_path, 20_000, workers=workers)
    assert run(str(cfg), one_shot=True) == 0
    assert calls == ({None: [], 0: [3], 2: [2]}[workers])
    got = samples(capsys.readouterr().out)
    for (method, status), n in counts.items():
        assert value(got, "http_requests_total", method=method, status=status) == n
    assert value(got, "http_request_duration_seconds_count") == len(rts)
    assert value(got, "http_request_duration_seconds_bucket", le="0.1") == sum(
        r <= 100 for r in rts
    )
    assert value(got, "http_request_duration_seconds_sum") == pytest.approx(sum(rts) / 1000)
    assert value(got, "app_log_lines_total", service="db", level="error") == 1  # no final newline
    assert (
        value(got, "alertmail_exporter_parse_errors_total", file=str(tmp_path / "app.jsonl")) == 1
    )
    log = str(tmp_path / "access.log")
    assert value(got, "alertmail_exporter_lines_read_total", file=log) == 20_000
    assert value(got, "alertmail_exporter_bytes_read_total", file=log) == Path(log).stat().st_size


def test_one_shot_output_passes_promtool_style_checks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, _, _ = write_logs(tmp_path, 50)
    run(str(cfg), one_shot=True)
    out = capsys.readouterr().out
    for name in ("lines_read", "bytes_read", "lines_matched", "parse_errors", "lines_skipped",
                 "rotations", "truncations", "series_folded"):  # fmt: skip
        assert re.search(rf"^# TYPE alertmail_exporter_{name}_total counter$", out, re.M), name
    assert "# TYPE alertmail_exporter_file_lag_bytes gauge" in out
    assert "alertmail_exporter_build_info{" in out


def test_main_reports_config_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from exporters.__main__ import main

    bad = tmp_path / "bad.yml"
    bad.write_text("sources: []\nmetrics: [{name: x_total, type: counter, match: '(('}]\n")
    monkeypatch.setattr(sys, "argv", ["exporters", "--one-shot", "--config", str(bad)])
    assert main() == 2
    assert (
        "metrics[0].match: metric x_total: regex '((' does not compile" in capsys.readouterr().err
    )


def test_one_shot_restores_the_garbage_collector(tmp_path: Path) -> None:
    """One-shot runs without the cyclic GC (a pure speed-up) and leaves it as it found it."""
    import gc

    cfg, _, _ = write_logs(tmp_path, 50)
    assert gc.isenabled()
    assert run(str(cfg), one_shot=True) == 0
    assert gc.isenabled()


def test_one_shot_reads_stdin(tmp_path: Path) -> None:
    import subprocess

    cfg = tmp_path / "stdin.yml"
    metric = {"name": "lines_total", "type": "counter", "match": r"level=(?P<l>\w+)"}
    cfg.write_text(
        yaml.safe_dump({"sources": [{"path": "-"}], "metrics": [metric | {"labels": ["l"]}]})
    )
    out = subprocess.run(
        [sys.executable, "-m", "exporters", "--one-shot", "--config", str(cfg)],
        input=b"level=info\nlevel=warn\nlevel=info",  # the last line unterminated
        capture_output=True,
        check=True,
        timeout=60,
    )
    got = samples(out.stdout.decode())
    assert value(got, "lines_total", l="info") == 2 and value(got, "lines_total", l="warn") == 1
    assert value(got, "alertmail_exporter_lines_read_total", file="-") == 3


def test_alertmail_export_one_shot_imports_nothing_it_does_not_use(tmp_path: Path) -> None:
    import subprocess

    cfg = tmp_path / "x.yml"
    log = tmp_path / "x.log"
    log.write_text("level=info\n")
    metric = {"name": "lines_total", "type": "counter", "match": "level="}
    cfg.write_text(yaml.safe_dump({"sources": [{"path": str(log)}], "metrics": [metric]}))
    code = (
        "import sys; from receiver.cli import main; "
        f"rc = main(['export', '--one-shot', '--config', {str(cfg)!r}]); "
        "heavy = [m for m in ('pydantic', 'asyncio', 'aiohttp', 'prometheus_client', "
        "'email.policy') if m in sys.modules]; print('HEAVY', heavy, rc)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert "lines_total 1.0" in out or "lines_total 1" in out
    assert "HEAVY [] 0" in out  # start-up is part of every one-shot run's CPU time
