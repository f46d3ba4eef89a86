from __future__ import annotations

import pytest

from receiver.units import format_duration, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("10m", 600),
        ("24h", 86400),
        ("7d", 604800),
        ("1h30m", 5400),
        ("500ms", 0.5),
        (15, 15),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "10", "10 minutes", "m10", "1h 30m", "-5s", True])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


def test_sizes() -> None:
    assert parse_size("16MiB") == 16 * 1024 * 1024
    assert parse_size("512KiB") == 512 * 1024
    assert parse_size(100) == 100
    with pytest.raises(ValueError, match="size"):
        parse_size("lots")


def test_format_duration() -> None:
    assert [format_duration(s) for s in (5, 720, 3900, 93600)] == ["5s", "12m", "1h 5m", "1d 2h"]
