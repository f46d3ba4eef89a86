"""Cron: fields, names, steps, lists, the day-of-month/day-of-week rule, DST, errors."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from receiver.cron import CronError, parse_cron

BERLIN = ZoneInfo("Europe/Berlin")


def local(y: int, mo: int, d: int, h: int, mi: int, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=BERLIN)


def test_fields_and_names() -> None:
    c = parse_cron("*/15 9-17 1,15 JAN-MAR mon-fri")
    assert c.minutes == {0, 15, 30, 45}
    assert c.hours == set(range(9, 18))
    assert c.days == {1, 15}
    assert c.months == {1, 2, 3}
    assert c.weekdays == {1, 2, 3, 4, 5}
    assert parse_cron("0 0 * * 7").weekdays == {0}  # 7 is Sunday too
    assert parse_cron("5/20 * * * *").minutes == {5, 25, 45}
    assert parse_cron("10-50/20 * * * *").minutes == {10, 30, 50}
    assert parse_cron("@weekly").weekdays == {0}
    assert parse_cron("  0   8 *  * MON ").hours == {8}


def test_next_after_weekly_in_zone() -> None:
    c = parse_cron("0 8 * * MON")
    # Wednesday 2026-03-25 -> Monday 2026-03-30 08:00 local, which is CEST (+2) by then.
    nxt = c.next_after(local(2026, 3, 25, 12, 0))
    assert nxt == local(2026, 3, 30, 8, 0)
    assert nxt.utcoffset() is not None and nxt.utcoffset().total_seconds() == 7200  # type: ignore[union-attr]
    assert c.next_after(nxt) == local(2026, 4, 6, 8, 0)  # strictly after
    assert c.next_after(local(2026, 3, 30, 7, 59, 59)) == local(2026, 3, 30, 8, 0)


def test_last_at_or_before() -> None:
    c = parse_cron("0 8 * * MON")
    assert c.last_at_or_before(local(2026, 3, 25, 12, 0)) == local(2026, 3, 23, 8, 0)
    assert c.last_at_or_before(local(2026, 3, 23, 8, 0)) == local(2026, 3, 23, 8, 0)
    assert c.last_at_or_before(local(2026, 3, 23, 7, 59)) == local(2026, 3, 16, 8, 0)
    hourly = parse_cron("30 * * * *")
    assert hourly.last_at_or_before(local(2026, 5, 1, 10, 29)) == local(2026, 5, 1, 9, 30)


def test_day_of_month_or_day_of_week() -> None:
    # Both restricted: either matches (Vixie cron). 2026-06-01 is a Monday.
    c = parse_cron("0 0 13 * FRI")
    t = datetime(2026, 2, 1, tzinfo=UTC)
    hits = []
    for _ in range(4):
        t = c.next_after(t)
        hits.append(t.date().isoformat())
    assert hits == ["2026-02-06", "2026-02-13", "2026-02-20", "2026-02-27"]
    # Only one restricted: that one alone decides.
    assert parse_cron("0 0 13 * *").next_after(t).day == 13


def test_dst_gap_and_repeat() -> None:
    daily = parse_cron("30 2 * * *")
    # 2026-03-29 02:30 does not exist in Berlin: it runs at the same offset, 03:30 CEST.
    spring = daily.next_after(local(2026, 3, 28, 12, 0))
    assert spring.timestamp() == datetime(2026, 3, 29, 1, 30, tzinfo=UTC).timestamp()
    # 2026-10-25 02:30 happens twice: once, the first time (CEST).
    autumn = daily.next_after(local(2026, 10, 24, 12, 0))
    assert autumn.timestamp() == datetime(2026, 10, 25, 0, 30, tzinfo=UTC).timestamp()
    assert daily.next_after(autumn).date().isoformat() == "2026-10-26"


def test_leap_day_and_never() -> None:
    leap = parse_cron("0 0 29 FEB *")
    assert leap.next_after(datetime(2026, 3, 1, tzinfo=UTC)).year == 2028
    with pytest.raises(CronError, match="never matches"):
        parse_cron("0 0 30 FEB *").next_after(datetime(2026, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("0 8 * *", "expected 5 fields"),
        ("60 * * * *", "minute: 60 is out of range 0-59"),
        ("* 24 * * *", "hour: 24 is out of range"),
        ("* * 0 * *", "day of month: 0 is out of range 1-31"),
        ("* * * 13 *", "month: 13 is out of range"),
        ("* * * * FUNDAY", "day of week: 'FUNDAY' is not a number or a name like SUN"),
        ("*/0 * * * *", "minute: step '0' must be a positive number"),
        ("5-1 * * * *", "minute: range '5-1' goes backwards"),
        ("1,,2 * * * *", "minute: empty list item"),
    ],
)
def test_errors_name_the_field(expr: str, message: str) -> None:
    with pytest.raises(CronError) as info:
        parse_cron(expr)
    assert message in str(info.value)


def test_naive_datetime_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        parse_cron("* * * * *").next_after(datetime(2026, 1, 1))
