"""Whole lines out of a byte stream: the splitter that carries a partial last line from
one read to the next, and the check that drops lines over the length limit or not UTF-8.

Both work on large binary chunks with ``find``/``rfind``/``decode`` in C and look at each
line in Python only where one has to be dropped.
"""

from __future__ import annotations

from dataclasses import dataclass


class Splitter:
    """Carries the partial last line between reads; drops lines over ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.carry = b""
        self.discarding = False

    def feed(self, data: bytes) -> tuple[bytes, int]:
        """Whole lines (ending in newline) available now, and lines dropped as too long."""
        dropped = 0
        if self.discarding:
            i = data.find(b"\n")
            if i < 0:
                return b"", 0
            data = data[i + 1 :]
            self.discarding = False
        buf = self.carry + data if self.carry else data
        j = buf.rfind(b"\n")
        rest = buf[j + 1 :]
        if len(rest) > self.limit:
            self.carry, self.discarding, dropped = b"", True, 1
        else:
            self.carry = rest
        return (buf[: j + 1] if j >= 0 else b""), dropped

    def take(self, data: bytes) -> tuple[bytes, int, int, int]:
        """Like :meth:`feed` without copying ``data``: ``(head, start, end, dropped)``.

        The whole lines available now are ``head + data[start:end]``: ``head`` is the carried
        partial line completed by the first line of ``data`` (``b""`` without a carry).
        """
        start = 0
        if self.discarding:
            i = data.find(b"\n")
            if i < 0:
                return b"", 0, 0, 0
            start = i + 1
            self.discarding = False
        j = data.rfind(b"\n", start)
        head = b""
        if j < 0:
            rest = self.carry + data[start:]
            end = start
        else:
            if self.carry:
                i = data.find(b"\n", start)
                head, start = self.carry + data[start : i + 1], i + 1
            end = j + 1
            rest = data[end:]
        if len(rest) > self.limit:
            self.carry, self.discarding = b"", True
            return head, start, end, 1
        self.carry = rest
        return head, start, end, 0

    def flush(self) -> bytes:
        """At the end of a one-shot read: the unterminated last line, terminated."""
        out = self.carry + b"\n" if self.carry else b""
        self.carry, self.discarding = b"", False
        return out


@dataclass
class Cleaned:
    data: bytes  # the kept lines are data[start:end]
    too_long: int = 0
    invalid_utf8: int = 0
    start: int = 0
    end: int = -1

    def __post_init__(self) -> None:
        if self.end < 0:
            self.end = len(self.data)

    @property
    def lines(self) -> bytes:
        """The kept lines as one buffer (a copy only when they are a part of ``data``)."""
        if self.start == 0 and self.end == len(self.data):
            return self.data
        return self.data[self.start : self.end]


def clean(buf: bytes, limit: int, begin: int = 0, stop: int | None = None) -> Cleaned:
    """Drop lines longer than ``limit`` bytes or not valid UTF-8 from whole-line ``buf``.

    Only ``buf[begin:stop]`` (whole lines) is looked at; when nothing is dropped the result
    is that range of ``buf`` itself, not a copy. Cheap when there is nothing to drop: one
    ``find`` per ``limit/2`` bytes proves that no line is longer than ``limit``, and
    ``isascii``/``decode`` run in C.
    """
    n = len(buf) if stop is None else stop
    if (begin or n != len(buf)) and not buf.isascii():
        buf, begin, n = buf[begin:n], 0, n - begin  # the UTF-8 check below needs a copy
    half = max(limit // 2, 1)
    bad: list[tuple[int, int]] = []  # (start, end incl. newline)
    too_long = 0
    pos = begin
    while pos < n:
        if buf.find(b"\n", pos, pos + half) >= 0 or pos + half >= n:
            pos += half
            continue
        start = buf.rfind(b"\n", begin, pos) + 1  # a window without newline: measure its line
        start = max(start, begin)
        end = buf.find(b"\n", pos, n)
        end = n - 1 if end < 0 else end
        if end - start > limit:
            bad.append((start, end + 1))
            too_long += 1
        pos = end + 1
    if bad:
        buf, begin, n = _cut(buf, bad, begin, n), 0, 0
        n = len(buf)
    if begin or n != len(buf):  # only a range of an all-ASCII buffer: nothing to decode
        return Cleaned(buf, too_long, 0, begin, n)
    data = buf
    invalid = 0
    if not data.isascii():
        bad = _invalid_lines(data)
        if bad:
            invalid = len(bad)
            data = _cut(data, bad)
    return Cleaned(data, too_long, invalid)


def _invalid_lines(data: bytes) -> list[tuple[int, int]]:
    """(start, end incl. newline) of each line of ``data`` that is not valid UTF-8.

    One ``decode`` finds the first; past it, the rest is checked a window at a time, each
    window ending at a line end: a log of mostly invalid lines (Latin-1) costs one decode
    of each window, not one of the whole rest per bad line.
    """
    bad: list[tuple[int, int]] = []
    view = memoryview(data)
    pos, n = 0, len(data)
    window = 1 << 16
    while pos < n:
        stop = data.find(b"\n", min(pos + window, n - 1))
        stop = n if stop < 0 else stop + 1
        try:
            str(view[pos:stop], "utf-8")
        except UnicodeDecodeError as e:
            at = pos + e.start
            start = data.rfind(b"\n", 0, at) + 1
            end = data.find(b"\n", at)
            end = n - 1 if end < 0 else end
            bad.append((start, end + 1))
            pos = end + 1
            window = 256  # lines near a bad one are likely bad too: look closer
            continue
        pos = stop
        window = min(window * 4, 1 << 16)
    return bad


def _cut(
    buf: bytes, spans: list[tuple[int, int]], begin: int = 0, stop: int | None = None
) -> bytes:
    parts: list[bytes] = []
    pos = begin
    for start, end in spans:
        parts.append(buf[pos:start])
        pos = end
    parts.append(buf[pos:stop])
    return b"".join(parts)
