"""Standard 5-field cron expressions, evaluated in a time zone. Pure; no clock of its own.

``minute hour day-of-month month day-of-week`` with ``*``, ranges ``1-5``, steps ``*/15`` and
``10-50/20``, lists ``1,15``, names ``JAN``-``DEC`` and ``SUN``-``SAT`` (day-of-week 0 and 7
are both Sunday), and the usual shorthands (``@daily``, ``@weekly``...). As in Vixie cron and
systemd, when both day fields are restricted a day matches if *either* matches.

Times are wall-clock times in the zone of the datetime passed in, so ``0 8 * * MON`` means
08:00 local time across DST changes. A wall time that does not exist (spring forward) is
taken at the same offset as before the gap, i.e. it runs shortly after the gap; a wall time
that occurs twice (fall back) runs once, at its first occurrence.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

__all__ = ["CronError", "CronSchedule", "parse_cron"]

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# (name, lowest, highest, names mapped to numbers)
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {n: i + 1 for i, n in enumerate(_MONTHS)}),
    ("day of week", 0, 7, {n: i for i, n in enumerate(_DAYS)}),
)
# A schedule like "0 0 30 2 *" (February 30th) never matches; searching more than this many
# years ahead means it never will (leap days repeat within 8 years, Feb 29 + a weekday in 28).
_SEARCH_YEARS = 29


class CronError(ValueError):
    """A cron expression is not valid; the message says which field and why."""


@dataclass(frozen=True)
class CronSchedule:
    expr: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday ... 6 = Saturday (7 folded into 0)
    days_restricted: bool
    weekdays_restricted: bool

    def _day_matches(self, d: datetime) -> bool:
        dom = d.day in self.days
        dow = (d.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return dom or dow
        return dom and dow

    def next_after(self, dt: datetime) -> datetime:
        """The first scheduled time strictly after ``dt`` (aware), in ``dt``'s zone."""
        tz = _zone(dt)
        local = dt.astimezone(tz).replace(tzinfo=None, second=0, microsecond=0)
        cand = local + timedelta(minutes=1)
        limit = local + timedelta(days=366 * _SEARCH_YEARS)
        while cand < limit:
            if cand.month not in self.months:
                year, month = divmod(cand.month, 12)  # first day of the next month
                cand = cand.replace(year=cand.year + year, month=month + 1, day=1, hour=0, minute=0)
                continue
            if not self._day_matches(cand):
                cand = (cand + timedelta(days=1)).replace(hour=0, minute=0)
                continue
            if cand.hour not in self.hours:
                cand = (cand + timedelta(hours=1)).replace(minute=0)
                continue
            if cand.minute not in self.minutes:
                cand += timedelta(minutes=1)
                continue
            aware = cand.replace(tzinfo=tz)  # fold=0: see the module docstring on DST
            if aware.timestamp() > dt.timestamp():
                return aware
            cand += timedelta(minutes=1)
        raise CronError(f"{self.expr!r} never matches a date")

    def last_at_or_before(self, dt: datetime) -> datetime:
        """The latest scheduled time at or before ``dt`` (aware), in ``dt``'s zone.

        Searched backwards day by day, then through that day's times with next_after: days
        are few (a schedule matches at least once in 29 years) and a day has <= 1440 minutes.
        """
        tz = _zone(dt)
        local = dt.astimezone(tz)
        day = local.replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)
        for _ in range(366 * _SEARCH_YEARS):
            if day.month in self.months and self._day_matches(day):
                # The day before at 23:59 local: next_after lists this day's times from 00:00.
                probe = (day - timedelta(minutes=1)).replace(tzinfo=tz)
                best: datetime | None = None
                t = self.next_after(probe)
                while t.astimezone(tz).date() == day.date() and t.timestamp() <= dt.timestamp():
                    best = t
                    t = self.next_after(t)
                if best is not None:
                    return best
            day -= timedelta(days=1)
        raise CronError(f"{self.expr!r} never matches a date")


def _zone(dt: datetime) -> tzinfo:
    if dt.tzinfo is None:
        raise ValueError("naive datetime: give a timezone-aware time")
    return dt.tzinfo


def _number(text: str, field: str, lo: int, hi: int, names: dict[str, int]) -> int:
    upper = text.upper()
    if upper in names:
        return names[upper]
    if not text.isdigit():
        allowed = f" or a name like {next(iter(names))}" if names else ""
        raise CronError(f"{field}: {text!r} is not a number{allowed}")
    value = int(text)
    if not lo <= value <= hi:
        raise CronError(f"{field}: {value} is out of range {lo}-{hi}")
    return value


def _parse_field(text: str, field: str, lo: int, hi: int, names: dict[str, int]) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise CronError(f"{field}: empty list item in {text!r}")
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{field}: step {step_text!r} must be a positive number")
            step = int(step_text)
        if base == "*":
            first, last = lo, hi
        elif "-" in base:
            a, _, b = base.partition("-")
            first = _number(a, field, lo, hi, names)
            last = _number(b, field, lo, hi, names)
            if last < first:
                raise CronError(f"{field}: range {base!r} goes backwards")
        else:
            first = _number(base, field, lo, hi, names)
            # "5/15" is "5-max/15" (Vixie cron); a bare "5" is just 5.
            last = hi if slash else first
        values.update(range(first, last + 1, step))
    return values


def parse_cron(expr: str) -> CronSchedule:
    """Parse a 5-field expression; raises CronError naming the bad field."""
    text = " ".join(expr.split())
    text = _MACROS.get(text.lower(), text)
    parts = text.split(" ")
    if len(parts) != 5:
        raise CronError(
            f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(parts)} "
            f"in {expr!r}"
        )
    sets = [
        _parse_field(p, name, lo, hi, names)
        for p, (name, lo, hi, names) in zip(parts, _FIELDS, strict=True)
    ]
    weekdays = frozenset(d % 7 for d in sets[4])
    return CronSchedule(
        expr=expr,
        minutes=frozenset(sets[0]),
        hours=frozenset(sets[1]),
        days=frozenset(sets[2]),
        months=frozenset(sets[3]),
        weekdays=weekdays,
        days_restricted=not parts[2].startswith("*"),
        weekdays_restricted=not parts[4].startswith("*"),
    )
