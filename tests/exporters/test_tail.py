"""Following real files in a temp dir: rotation, truncation, partial lines, positions, globs."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from exporters import tail
from exporters.metrics import Store
from exporters.tail import Tailer
from tests.exporters.conftest import make_config, samples, value


@pytest.fixture(autouse=True)
def no_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tail, "ROTATED_GRACE", 0.0)


class Rig:
    def __init__(self, tmp_path: Path, **source: Any) -> None:
        self.dir = tmp_path / "logs"
        self.dir.mkdir(exist_ok=True)
        src = {"path": str(self.dir / "*.log"), "start": "beginning"} | source
        raw = {
            "positions": str(tmp_path / "pos.json"),
            "max_line_bytes": 100,
            "sources": [src],
            "metrics": [
                {
                    "name": "lines_total",
                    "type": "counter",
                    "match": r"level=(?P<level>\w+)",
                    "labels": ["level"],
                }
            ],
        }
        self.cfg = make_config(tmp_path, raw)
        self.restart()

    def restart(self) -> None:
        self.registry = CollectorRegistry()
        self.tailer = Tailer(self.cfg, Store(self.cfg, self.registry))

    def poll(self) -> dict[Any, float]:
        self.tailer.poll()
        return samples(self.registry)

    def count(self, level: str = "info") -> float:
        return value(samples(self.registry), "lines_total", level=level) or 0.0

    def self_metric(self, name: str, **labels: str) -> float | None:
        return value(samples(self.registry), f"alertmail_exporter_{name}", **labels)


def append(path: Path, n: int, level: str = "info", start: int = 0) -> None:
    with path.open("a") as fh:
        fh.writelines(f"ts={start + i} level={level} msg=hello\n" for i in range(n))


def test_first_start_skips_existing_unless_beginning(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    append(tmp_path / "logs" / "a.log", 5)
    rig = Rig(tmp_path, start="end")
    rig.poll()
    assert rig.count() == 0
    append(rig.dir / "a.log", 3)
    rig.poll()
    assert rig.count() == 3
    (tmp_path / "other").mkdir()
    begin = Rig(tmp_path / "other")
    append(begin.dir / "b.log", 2)
    begin.poll()
    assert begin.count() == 2


def test_partial_line_waits_for_newline(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    log = rig.dir / "a.log"
    log.write_text("level=info partial")
    rig.poll()
    assert rig.count() == 0
    with log.open("a") as fh:
        fh.write(" done\nlevel=info no newline yet")
    rig.poll()
    assert rig.count() == 1
    assert rig.self_metric("lines_read_total", file=str(log)) == 1


def test_rename_and_create_rotation_loses_and_repeats_nothing(tmp_path: Path) -> None:
    rig = Rig(tmp_path, path=str(tmp_path / "logs" / "app.log"))
    log = rig.dir / "app.log"
    append(log, 10)
    rig.poll()
    append(log, 5)  # written before the rotation, not yet read
    log.rename(rig.dir / "app.log.1")
    append(rig.dir / "app.log.1", 2)  # a writer that has not reopened yet
    append(log, 7)
    rig.poll()
    assert rig.count() == 24
    assert rig.self_metric("rotations_total", file=str(log)) == 1
    append(log, 1)
    rig.poll()
    assert rig.count() == 25


def test_rotation_into_a_name_the_glob_also_matches(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    append(rig.dir / "app.log", 4)
    rig.poll()
    (rig.dir / "app.log").rename(rig.dir / "app.1.log")
    append(rig.dir / "app.log", 3)
    rig.poll()
    rig.poll()
    assert rig.count() == 7


def test_copytruncate_restarts_at_zero(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    log = rig.dir / "app.log"
    append(log, 10)
    rig.poll()
    with log.open("r+") as fh:
        fh.truncate(0)
    append(log, 3)
    rig.poll()
    assert rig.count() == 13
    assert rig.self_metric("truncations_total", file=str(log)) == 1


def test_truncated_and_regrown_past_offset_is_spotted_by_head_hash(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    log = rig.dir / "app.log"
    append(log, 3)
    rig.poll()
    log.write_text("")
    append(log, 6, level="warn")  # now longer than our offset: size alone cannot tell
    rig.poll()
    assert (rig.count(), rig.count("warn")) == (3, 6)
    assert rig.self_metric("truncations_total", file=str(log)) == 1


def test_restart_resumes_from_positions(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    log = rig.dir / "app.log"
    append(log, 10)
    with log.open("a") as fh:
        fh.write("level=info half a li")
    rig.poll()
    rig.tailer.save_positions()
    rig.tailer.close()
    with log.open("a") as fh:
        fh.write("ne\n")
    append(log, 4)
    append(rig.dir / "new.log", 2)  # appeared while stopped: read from its beginning
    rig.restart()
    rig.poll()
    assert rig.count() == 4 + 1 + 2
    assert rig.self_metric("lines_read_total", file=str(log)) == 5


def test_restart_inside_an_over_long_line_skips_its_rest(tmp_path: Path) -> None:
    rig = Rig(tmp_path)  # max_line_bytes: 100
    log = rig.dir / "app.log"
    log.write_text("x" * 150)  # over the limit, its newline not written yet
    rig.poll()
    rig.tailer.save_positions()
    rig.tailer.close()
    with log.open("a") as fh:
        fh.write(" level=info the end of the long line\n")
    append(log, 1)
    rig.restart()
    rig.poll()
    assert rig.count() == 1  # not the long line's tail, read as a line of its own
    assert rig.self_metric("lines_read_total", file=str(log)) == 1


def test_rotated_file_unfinished_at_a_stop_is_finished_after_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tail, "READ_SIZE", 100)
    monkeypatch.setattr(tail, "POLL_BUDGET", 200)  # a backlog larger than one poll reads
    rig = Rig(tmp_path)
    log = rig.dir / "app.log"
    append(log, 20)
    rig.poll()
    log.rename(rig.dir / "app.log.1")  # out of the glob
    append(log, 1, start=100)
    rig.poll()
    before = rig.count()
    assert before < 21  # the rotated file is still being drained
    rig.tailer.save_positions()
    rig.tailer.close()
    rig.restart()
    for _ in range(10):
        rig.poll()
    assert before + rig.count() == 21  # no line lost, none counted twice or cut short


def test_file_rotated_while_stopped_is_finished_then_new_one_read(tmp_path: Path) -> None:
    rig = Rig(tmp_path, path=str(tmp_path / "logs" / "app.log"))
    log = rig.dir / "app.log"
    append(log, 10)
    rig.poll()
    rig.tailer.save_positions()
    rig.tailer.close()
    append(log, 3)
    log.rename(rig.dir / "app.log.1")
    append(log, 4)
    rig.restart()
    rig.poll()
    assert rig.count() == 7


@pytest.mark.parametrize("lines", [12, 3])  # longer than the offset, or shorter
def test_file_rewritten_while_stopped_is_read_from_start_and_counted(
    tmp_path: Path, lines: int
) -> None:
    rig = Rig(tmp_path)
    log = rig.dir / "app.log"
    append(log, 10)
    rig.poll()
    rig.tailer.save_positions()
    rig.tailer.close()
    with log.open("r+") as fh:  # same inode, different content (copytruncate while stopped)
        fh.truncate(0)
    append(log, lines, level="warn")
    rig.restart()
    rig.poll()
    assert (rig.count(), rig.count("warn")) == (0, lines)
    assert rig.self_metric("truncations_total", file=str(log)) == 1


def test_glob_picks_up_new_files_while_running(tmp_path: Path) -> None:
    rig = Rig(tmp_path, start="end")
    append(rig.dir / "old.log", 3)
    rig.poll()
    append(rig.dir / "new.log", 5)
    append(rig.dir / "ignored.txt", 5)
    rig.poll()
    assert rig.count() == 5
    assert rig.self_metric("lines_read_total", file=str(rig.dir / "new.log")) == 5


def test_long_lines_and_invalid_utf8_are_skipped_and_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tail, "READ_SIZE", 64)  # long lines span several reads
    rig = Rig(tmp_path)
    log = rig.dir / "app.log"
    with log.open("wb") as fh:
        fh.write(b"level=info ok\n" + b"level=info " + b"x" * 500 + b"\n")
        fh.write(b"level=info \xff\xfe\nlevel=info ok " + b"y" * 80 + b"\n")
    rig.poll()
    assert rig.count() == 2
    assert rig.self_metric("lines_skipped_total", file=str(log), reason="too_long") == 1
    assert rig.self_metric("lines_skipped_total", file=str(log), reason="invalid_utf8") == 1
    assert rig.self_metric("lines_read_total", file=str(log)) == 4
    assert rig.self_metric("bytes_read_total", file=str(log)) == log.stat().st_size
    assert rig.self_metric("file_lag_bytes", file=str(log)) == 0


@pytest.mark.parametrize("seed", range(6))
def test_random_rotations_match_an_independent_count(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    rig = Rig(tmp_path, path=str(tmp_path / "logs" / "app.log"))
    log = rig.dir / "app.log"
    written = {"info": 0, "warn": 0}
    generation = 0
    for step in range(40):
        level = rng.choice(["info", "warn"])
        n = rng.randint(0, 30)
        append(log, n, level, start=step * 100)
        written[level] += n
        if rng.random() < 0.3:
            with log.open("a") as fh:  # half a line: the rest comes with the next append
                fh.write("ts=0 le")
            rig.poll()
            with log.open("a") as fh:
                fh.write("vel=info split\n")
            written["info"] += 1
        op = rng.random()
        if op < 0.2:
            rig.poll()  # a file created and rotated away between two polls is never seen
            generation += 1
            log.rename(rig.dir / f"app.log.{generation}")
            if rng.random() < 0.5:
                append(rig.dir / f"app.log.{generation}", 2, "info")
                written["info"] += 2
        elif op < 0.3:
            rig.poll()  # copytruncate loses unread lines by design: read before truncating
            with log.open("r+") as fh:
                fh.truncate(0)
        if rng.random() < 0.5:
            rig.poll()
    rig.poll()
    rig.poll()
    assert (rig.count("info"), rig.count("warn")) == (written["info"], written["warn"])
    assert os.path.exists(tmp_path / "pos.json") is False  # only saved on request


def test_stdin_is_read_to_its_end_with_its_last_line(tmp_path: Path) -> None:
    rig = Rig(tmp_path, path="-")
    (matcher,) = rig.tailer.matchers
    r, w = os.pipe()
    os.write(w, b"level=info a\nlevel=warn b\n" + b"x" * 150 + b"\nlevel=info c")
    os.close(w)
    try:
        tail.read_stream(r, rig.cfg.max_line_bytes, rig.tailer.store, matcher)
    finally:
        os.close(r)
    assert (rig.count("info"), rig.count("warn")) == (2, 1)  # the unterminated one too
    assert rig.self_metric("lines_read_total", file="-") == 4
    assert rig.self_metric("lines_skipped_total", file="-", reason="too_long") == 1


def test_stdin_reader_stops_when_told(tmp_path: Path) -> None:
    import threading

    rig = Rig(tmp_path, path="-")
    (matcher,) = rig.tailer.matchers
    stop = threading.Event()
    stop.set()
    r, w = os.pipe()
    try:  # nothing written and the pipe open: returns at once, not blocked in read
        tail.read_stream(r, 100, rig.tailer.store, matcher, stop)
    finally:
        os.close(r)
        os.close(w)
    assert rig.count() == 0
