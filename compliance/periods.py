"""The period an evidence pack covers: a half-open range [start, end) of aware datetimes,
given as a calendar quarter or as inclusive days, in the current time zone."""

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.utils import timezone

_QUARTER = re.compile(r"^(\d{4})-?Q([1-4])$", re.IGNORECASE)


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime
    label: str

    @property
    def is_quarter(self) -> bool:
        return bool(_QUARTER.match(self.label))

    @property
    def last_day(self) -> date:
        return timezone.localtime(self.end).date() - timedelta(days=1)

    @property
    def slug(self) -> str:
        return re.sub(r"[^0-9A-Za-z_-]+", "_", self.label)


def _midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def days(first: date, last: date) -> Period:
    """From ``first`` to ``last``, both whole days."""
    if last < first:
        raise ValueError("the period ends before it starts")
    return Period(_midnight(first), _midnight(last + timedelta(days=1)), f"{first}_{last}")


def quarter(text: str) -> Period:
    """``2026-Q3`` (or ``2026Q3``): that calendar quarter."""
    match = _QUARTER.match(text.strip())
    if not match:
        raise ValueError(f"not a quarter: {text!r} (use e.g. 2026-Q3)")
    year, number = int(match[1]), int(match[2])
    first = date(year, 3 * number - 2, 1)
    after = date(year + 1, 1, 1) if number == 4 else date(year, 3 * number + 1, 1)
    return Period(_midnight(first), _midnight(after), f"{year}-Q{number}")


def _this_quarter() -> tuple[int, int]:
    today = timezone.localdate()
    return today.year, (today.month - 1) // 3 + 1


def current_quarter() -> Period:
    year, number = _this_quarter()
    return quarter(f"{year}-Q{number}")


def recent_quarters(count: int = 8) -> list[Period]:
    """This quarter and the ones before it, newest first: the page's quarter picker."""
    (year, number), periods = _this_quarter(), []
    for _ in range(count):
        periods.append(quarter(f"{year}-Q{number}"))
        year, number = (year - 1, 4) if number == 1 else (year, number - 1)
    return periods
