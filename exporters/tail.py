"""Follow files like a production agent: globs, rotation, truncation, persisted positions.

Files are tracked by (device, inode), not by name:
* rename-and-create rotation: the old inode disappears from the glob; it is read to its
  end (and kept open for ``ROTATED_GRACE`` seconds in case writers still append to it)
  while the new file at the same name is read from its beginning;
* copytruncate: the size drops below our offset (or the first bytes change), so reading
  restarts at 0. Lines written between the copy and the truncation that we had not read
  yet are in the copy only: that window is lost (inherent to copytruncate);
* partial lines wait for their newline; lines over ``max_line_bytes`` are skipped.

Positions (path, device, inode, offset of the first unprocessed byte, a hash of the file's
first bytes) are written atomically, so a restart resumes exactly where it stopped.
"""

from __future__ import annotations

import fnmatch
import glob
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from exporters.config import ExporterConfig, SourceConfig
from exporters.lines import Splitter
from exporters.match import ChunkResult, Matcher
from exporters.metrics import Store

log = logging.getLogger(__name__)
READ_SIZE = 1 << 20
POLL_BUDGET = 64 << 20  # bytes per file per poll, so one huge backlog does not starve others
HEAD = 1024  # bytes hashed to spot a replaced file
ROTATED_GRACE = 5.0


def _head(fd: int, length: int) -> str:
    import hashlib  # here: loading OpenSSL costs one-shot runs, which never call this

    return hashlib.sha1(os.pread(fd, length, 0)).hexdigest() if length else ""


@dataclass
class Followed:
    label: str  # the name it was first followed under (the `file` label)
    path: str  # the name it has now
    fd: int
    dev: int
    ino: int
    offset: int  # next byte to read
    splitter: Splitter
    matcher: Matcher
    head_len: int = 0
    head: str = ""
    gone_since: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def consumed(self) -> int:
        return self.offset - len(self.splitter.carry)


def read_fd(f: Followed, store: Store, budget: int | None = None) -> int:
    """Read and process whole lines until EOF or budget; returns bytes read.

    Raw matches of all reads are counted into one batch, decoded and applied once.
    """
    total = 0
    acc = ChunkResult()
    while budget is None or total < budget:
        data = os.pread(f.fd, READ_SIZE, f.offset)
        if not data:
            break
        f.offset += len(data)
        total += len(data)
        head, start, end, dropped = f.splitter.take(data)
        acc.lines += dropped
        acc.too_long += dropped
        if head:
            f.matcher.run(head, f.splitter.limit, acc)
        if end > start:
            f.matcher.run(data, f.splitter.limit, acc, start, end)
    if total:
        f.matcher.finish(acc)
        acc.bytes = total
        store.apply(f.label, acc)
    return total


def read_stream(
    fd: int, limit: int, store: Store, matcher: Matcher, stop: threading.Event | None = None
) -> None:
    """Read a stream (stdin, file label "-") until its end, or until ``stop`` is set; at
    its end an unterminated last line counts."""
    store.add_file("-")
    splitter = Splitter(limit)
    while stop is None or not stop.is_set():
        data = os.read(fd, READ_SIZE)
        if not data:
            rest = b"" if splitter.discarding else splitter.flush()
            if rest:
                res = matcher.run(rest, limit)
                res.bytes = 0
                store.apply("-", res)
            return
        whole, dropped = splitter.feed(data)
        res = matcher.run(whole, limit) if whole else ChunkResult()
        res.bytes, res.lines, res.too_long = len(data), res.lines + dropped, res.too_long + dropped
        store.apply("-", res)


def flush(f: Followed, store: Store) -> None:
    """Process an unterminated last line (end of a one-shot read, a rotated-away file)."""
    if f.splitter.discarding:
        f.splitter.discarding = False
        return
    rest = f.splitter.flush()
    if rest:
        res = f.matcher.run(rest, f.splitter.limit)
        res.bytes = 0
        store.apply(f.label, res)


class Tailer:
    def __init__(self, cfg: ExporterConfig, store: Store) -> None:
        self.cfg = cfg
        self.store = store
        self.files: dict[tuple[int, int], Followed] = {}
        self.by_path: dict[str, tuple[int, int]] = {}
        self.lock = threading.Lock()
        self.matchers = [Matcher(s.format, cfg.metrics_for(s)) for s in cfg.sources]
        self.saved = self._load_positions()
        self.first_start = self.saved is None
        self.started = False

    # ---- positions -------------------------------------------------------------------
    def _load_positions(self) -> dict[tuple[int, int], dict[str, Any]] | None:
        if not self.cfg.positions or not os.path.exists(self.cfg.positions):
            return None
        try:
            with open(self.cfg.positions, encoding="utf-8") as f:
                entries = json.load(f)["files"]
            return {(e["dev"], e["ino"]): e for e in entries}
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("ignoring unreadable positions file %s: %s", self.cfg.positions, e)
            return {}

    def save_positions(self) -> None:
        if not self.cfg.positions:
            return
        with self.lock:
            # Rotated-away files too: one still being drained is finished after a restart
            # (see _drain_lost). "discarding": the offset is inside an over-long line.
            entries = [
                {"path": f.path, "label": f.label, "dev": f.dev, "ino": f.ino,
                 "offset": f.consumed, "head_len": f.head_len, "head": f.head,
                 "discarding": f.splitter.discarding, "gone": f.gone_since is not None}
                for f in self.files.values()
            ]  # fmt: skip
        target = self.cfg.positions
        os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
        tmp = target + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"version": 1, "files": entries}, f)
            f.flush()
            # on disk before the rename: after a power cut the file is the old one or this
            # one, never empty (which would restart every file from its start or its end)
            os.fsync(f.fileno())
        os.replace(tmp, target)

    # ---- following -------------------------------------------------------------------
    def poll(self) -> None:
        """One pass: discover files, follow each to its end (bounded), handle rotation."""
        with self.lock:
            seen: set[tuple[int, int]] = set()
            for source, matcher in zip(self.cfg.sources, self.matchers, strict=True):
                if source.path != "-":
                    self._discover(source, matcher, seen)
            now = time.monotonic()
            for key, f in list(self.files.items()):
                if key not in seen and f.gone_since is None:
                    f.gone_since = now  # renamed away or deleted: drain, then let go
                got = self._follow(f)
                if f.gone_since is not None and not got and now - f.gone_since >= ROTATED_GRACE:
                    self._close(key)
            if not self.started and self.saved:
                self._drain_lost()
            self.started = True

    def close(self) -> None:
        """At a graceful stop. With positions saved, a rotated-away file's rest (and its
        unterminated last line) is read after the restart instead (see save_positions)."""
        with self.lock:
            for key in list(self.files):
                self._close(key, final=not self.cfg.positions)

    def _paths(self, source: SourceConfig) -> list[str]:
        if glob.has_magic(source.path):
            return sorted(glob.glob(source.path))
        return [source.path] if os.path.exists(source.path) else []

    def _discover(self, source: SourceConfig, matcher: Matcher, seen: set[tuple[int, int]]) -> None:
        for path in self._paths(source):
            try:
                st = os.stat(path)
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue
            seen.add(key)
            if key in self.files:
                self.files[key].path = path
            else:
                prev = self.by_path.get(path)
                if prev is not None and prev != key:
                    self.store.rotations.labels(path).inc()
                self._open(path, key, source, matcher)
            self.by_path[path] = key

    def _open(self, path: str, key: tuple[int, int], src: SourceConfig, matcher: Matcher) -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as e:
            log.warning("cannot open %s: %s", path, e)
            return
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != key:  # replaced between stat and open: next poll
            os.close(fd)
            return
        f = Followed(path, path, fd, key[0], key[1], 0, Splitter(self.cfg.max_line_bytes), matcher)
        entry = (self.saved or {}).pop(key, None)
        if entry is not None:
            f.label = entry.get("label", path)
            hl = int(entry.get("head_len", 0))
            if (
                st.st_size >= entry["offset"]
                and st.st_size >= hl
                and _head(fd, hl) == entry["head"]
            ):
                f.offset = int(entry["offset"])
                f.splitter.discarding = bool(entry.get("discarding"))
            else:  # truncated (or rewritten in place) while we were stopped: from 0
                self.store.truncations.labels(f.label).inc()
        elif not self.started and self.first_start and src.start == "end":
            f.offset = st.st_size
        self.store.add_file(f.label)
        self._update_head(f, st.st_size)
        self.files[key] = f
        log.info("following %s from offset %d", path, f.offset)

    def _update_head(self, f: Followed, size: int) -> None:
        if f.head_len < HEAD and size > f.head_len:
            f.head_len = min(size, HEAD)
            f.head = _head(f.fd, f.head_len)

    def _follow(self, f: Followed) -> int:
        size = os.fstat(f.fd).st_size
        if size < f.offset or (f.head_len and _head(f.fd, f.head_len) != f.head):
            log.info(
                "%s was truncated (size %d < offset %d): reading from 0", f.path, size, f.offset
            )
            self.store.truncations.labels(f.label).inc()
            f.offset, f.head_len, f.head = 0, 0, ""
            f.splitter = Splitter(self.cfg.max_line_bytes)
        got = read_fd(f, self.store, POLL_BUDGET)
        size = os.fstat(f.fd).st_size
        self._update_head(f, size)
        self.store.lag.labels(f.label).set(max(size - f.offset, 0))
        return got

    def _close(self, key: tuple[int, int], final: bool = True) -> None:
        f = self.files.pop(key)
        if f.gone_since is not None and final:  # rotated away and quiet: last line complete
            flush(f, self.store)
        os.close(f.fd)
        if self.by_path.get(f.path) == key:
            del self.by_path[f.path]

    def _drain_lost(self) -> None:
        """Files renamed away while we were stopped: read their rest once, from the dirs."""
        lost = dict(self.saved or {})
        self.saved = {}
        dirs = {os.path.dirname(e["path"]) or "." for e in lost.values()}
        for d in dirs:
            try:
                entries = list(os.scandir(d))
            except OSError:
                continue
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                saved = lost.pop((st.st_dev, st.st_ino), None)
                if saved is None or not entry.is_file():
                    continue
                with open(entry.path, "rb") as fh:
                    fd = fh.fileno()
                    if _head(fd, int(saved["head_len"])) != saved["head"]:
                        continue
                    m = self.matchers[0]
                    for s, matcher in zip(self.cfg.sources, self.matchers, strict=True):
                        if fnmatch.fnmatch(saved["path"], s.path):
                            m = matcher
                    split = Splitter(self.cfg.max_line_bytes)
                    split.discarding = bool(saved.get("discarding"))
                    offset = int(saved["offset"])
                    f = Followed(
                        saved["label"], entry.path, fd, st.st_dev, st.st_ino, offset, split, m
                    )
                    read_fd(f, self.store)
                    flush(f, self.store)
                    if not saved.get("gone"):  # else its rotation was counted before the stop
                        self.store.rotations.labels(f.label).inc()
                    log.info("read the rest of rotated %s (was %s)", entry.path, saved["path"])
