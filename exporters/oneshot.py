"""``--one-shot``: read every source once from its beginning, print the metrics, exit.

With ``one_shot_workers`` other than 1, large regex-format files are split at newlines
into ranges scanned by forked worker processes, whose raw counts are merged here. That
shortens the wall-clock time but costs more CPU in total (fork, a second pass over the
range edges, merging), so the default is one process.
"""

from __future__ import annotations

import glob
import logging
import os
import sys

from exporters.config import ExporterConfig
from exporters.lines import Splitter
from exporters.match import ChunkResult, Matcher
from exporters.metrics import Store
from exporters.tail import READ_SIZE, Followed, flush, read_fd, read_stream

log = logging.getLogger(__name__)
PARALLEL_MIN = 32 << 20  # below this, forking costs more than it saves
_MATCHERS: list[Matcher] = []  # inherited by forked workers


def run_once(cfg: ExporterConfig, store: Store) -> None:
    _MATCHERS[:] = [Matcher(s.format, cfg.metrics_for(s)) for s in cfg.sources]
    seen: set[tuple[int, int]] = set()
    for i, source in enumerate(cfg.sources):
        if source.path == "-":
            read_stream(sys.stdin.fileno(), cfg.max_line_bytes, store, _MATCHERS[i])
            continue
        paths = sorted(glob.glob(source.path)) if glob.has_magic(source.path) else [source.path]
        for path in paths:
            if not os.path.isfile(path):
                log.warning("source %s: no such file", path)
                continue
            st = os.stat(path)
            if (st.st_dev, st.st_ino) in seen:
                # As when tailing: the first source that names a file reads it.
                log.warning("%s matches more than one source; only the first reads it", path)
                continue
            seen.add((st.st_dev, st.st_ino))
            store.add_file(path)
            size = st.st_size
            want = cfg.one_shot_workers or os.cpu_count() or 1
            workers = min(want, size // (PARALLEL_MIN // 2))
            if source.format == "regex" and size >= PARALLEL_MIN and workers > 1:
                store.apply(path, _parallel(i, path, size, workers, cfg.max_line_bytes))
            else:
                _sequential(path, _MATCHERS[i], store, cfg.max_line_bytes)


def _sequential(path: str, matcher: Matcher, store: Store, limit: int) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        f = Followed(path, path, fd, 0, 0, 0, Splitter(limit), matcher)
        read_fd(f, store)
        flush(f, store)
    finally:
        os.close(fd)


def _parallel(index: int, path: str, size: int, workers: int, limit: int) -> ChunkResult:
    bounds = [size * k // workers for k in range(workers + 1)]
    jobs = [(index, path, bounds[k], bounds[k + 1], limit) for k in range(workers)]
    import multiprocessing  # only here: its import costs start-up time

    with multiprocessing.get_context("fork").Pool(workers) as pool:
        parts = pool.starmap(scan_range, jobs)
    total = ChunkResult()
    for part in parts:
        total.merge(part)
    return total


def scan_range(index: int, path: str, start: int, end: int, limit: int) -> ChunkResult:
    """Lines whose first byte lies in [start, end), read from ``path`` (in a worker)."""
    matcher = _MATCHERS[index]
    total = ChunkResult()
    fd = os.open(path, os.O_RDONLY)
    try:
        pos = start
        if start > 0 and os.pread(fd, 1, start - 1) != b"\n":
            while True:  # skip the line that began in the previous range
                data = os.pread(fd, 65536, pos)
                i = data.find(b"\n")
                if not data or i >= 0:
                    pos += i + 1 if i >= 0 else len(data)
                    break
                pos += len(data)
        splitter = Splitter(limit)
        nbytes = 0
        # The last line may end past ``end``: read on until its newline (or EOF).
        while pos < end or (nbytes and (splitter.carry or splitter.discarding)):
            data = os.pread(fd, READ_SIZE, pos)
            if not data:
                break
            last = False
            if pos + len(data) >= end:
                k = data.find(b"\n", max(end - pos - 1, 0))
                if k >= 0:
                    data, last = data[: k + 1], True
            pos += len(data)
            nbytes += len(data)
            whole, dropped = splitter.feed(data)
            total.lines += dropped
            total.too_long += dropped
            if whole:
                matcher.run(whole, limit, total)
            if last:
                break
        rest = b"" if splitter.discarding else splitter.flush()
        if rest:
            matcher.run(rest, limit, total)
    finally:
        os.close(fd)
    matcher.finish(total)
    total.bytes = nbytes
    return total
