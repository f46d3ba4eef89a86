"""Whole lines: the splitter that carries partial lines, and dropping long or non-UTF-8 ones."""

from __future__ import annotations

import random

import pytest

from exporters.lines import Splitter, clean


@pytest.mark.parametrize("seed", range(40))
def test_take_equals_feed(seed: int) -> None:
    """The copy-free splitter gives the same lines, carries and drops as ``feed``."""
    rng = random.Random(seed)
    pieces = [b"a", b"bb", b"\n", b"\n", b"c" * 7, b"d" * 20]
    data = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 200)))
    a, b = Splitter(16), Splitter(16)
    pos = 0
    while pos < len(data):
        step = rng.randint(1, 30)
        chunk = data[pos : pos + step]
        pos += step
        whole, dropped = a.feed(chunk)
        head, start, end, dropped2 = b.take(chunk)
        assert (head + chunk[start:end], dropped2) == (whole, dropped)
        assert (b.carry, b.discarding) == (a.carry, a.discarding)
    assert a.flush() == b.flush()


@pytest.mark.parametrize("seed", range(40))
def test_clean_of_a_range_equals_clean_of_its_copy(seed: int) -> None:
    rng = random.Random(seed)
    pieces = [b"ok", b"\xc3\xa9", b"\xff", b"q" * 40, b" "]
    lines = [b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 4))) for _ in range(30)]
    if seed % 2:
        lines = [line.replace(b"\xff", b"").replace(b"\xc3\xa9", b"") for line in lines]
    data = b"".join(line + b"\n" for line in lines)
    i, j = sorted(rng.sample(range(len(lines) + 1), 2))
    begin = len(b"".join(line + b"\n" for line in lines[:i]))
    stop = len(b"".join(line + b"\n" for line in lines[:j]))
    got, want = clean(data, 64, begin, stop), clean(data[begin:stop], 64)
    assert (got.lines, got.too_long, got.invalid_utf8) == (
        want.data,
        want.too_long,
        want.invalid_utf8,
    )


def test_clean_drops_long_and_invalid_lines_only() -> None:
    long_line = b"y" * 5000
    data = b"ok1\n" + long_line + b"\n\xff\xfe bad\nok2 \xc3\xa9\n" + b"x" * 100 + b"\n"
    cleaned = clean(data, 1000)
    assert cleaned.data == b"ok1\nok2 \xc3\xa9\n" + b"x" * 100 + b"\n"
    assert (cleaned.too_long, cleaned.invalid_utf8) == (1, 1)


@pytest.mark.parametrize("seed", range(30))
def test_clean_drops_exactly_the_lines_that_are_not_utf8(seed: int) -> None:
    rng = random.Random(seed)
    pieces = [b"ok", b"caf\xc3\xa9", b"caf\xe9", b"\xff", b"\xe2\x82", b"\xe2\x82\xac", b"x" * 60]
    lines = [
        b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 6)))
        for _ in range(rng.randint(1, 3000))  # past the first 64 KiB window, sometimes
    ]
    data = b"".join(line + b"\n" for line in lines)
    good = [line for line in lines if _utf8(line)]
    cleaned = clean(data, 65536)
    assert cleaned.data == b"".join(line + b"\n" for line in good)
    assert cleaned.invalid_utf8 == len(lines) - len(good)


def _utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@pytest.mark.parametrize("seed", range(30))
def test_clean_agrees_with_per_line_lengths(seed: int) -> None:
    rng = random.Random(seed)
    lines = [b"q" * rng.choice([0, 3, 31, 32, 33, 64, 65, 200]) for _ in range(rng.randint(1, 40))]
    data = b"\n".join(lines) + b"\n"
    cleaned = clean(data, 32)
    assert cleaned.data == b"".join(line + b"\n" for line in lines if len(line) <= 32)
    assert cleaned.too_long == sum(len(line) > 32 for line in lines)
