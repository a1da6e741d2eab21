"""What every stats function takes: one :class:`Query` (site, local date range, interval,
filters), and :class:`QueryError` for a query that cannot be answered as asked."""

from __future__ import annotations

from datetime import date, timedelta

import msgspec

from appliance.errors import DomainError
from appliance.filters import Filter
from appliance.models import Site
from appliance.periods import day_number, day_start_timestamp

INTERVALS = ("hour", "day", "week", "month")
# Day numbers, hour buckets and time stamps are counted from 1970-01-01 UTC in unsigned keys,
# and a day's end (the next midnight, in any time zone) must stay a valid date: the days a
# query may cover, its comparison period included.
FIRST_DAY = date(1970, 1, 2)
LAST_DAY = date(9998, 12, 31)


class QueryError(DomainError):
    """A query that cannot be answered as asked (answered 422, naming the parameter)."""


class Query(msgspec.Struct, kw_only=True):
    """What every stats function takes: a site, an inclusive local date range, an interval,
    and filters (see :mod:`appliance.filters`; none means the pre-aggregated fast path).
    ``imported=False`` leaves imported daily aggregates out (:mod:`appliance.query.imported`)."""

    site: Site
    date_from: date
    date_to: date
    interval: str = "day"
    filters: list[Filter] = []
    imported: bool = True

    def __post_init__(self) -> None:
        check_day("start_date", self.date_from)
        check_day("end_date", self.date_to)
        if self.date_to < self.date_from:
            raise QueryError("end_date", "must not be before start_date")
        if (self.date_to - self.date_from).days > 3660:
            raise QueryError("end_date", "range longer than ten years")
        if self.interval not in INTERVALS:
            raise QueryError("interval", f"must be one of {', '.join(INTERVALS)}")

    @property
    def first_day(self) -> int:
        return day_number(self.date_from)

    @property
    def last_day(self) -> int:
        return day_number(self.date_to)

    def compared(self, mode: str) -> Query:
        """The period to compare with: ``previous_period`` (same length, just before) or
        ``year_over_year`` (the same dates one year earlier; 29 February maps to the 28th)."""
        if mode == "previous_period":
            length = (self.date_to - self.date_from).days + 1
            start, end = self.date_from - timedelta(days=length), self.date_from - timedelta(days=1)
        elif mode == "year_over_year":
            start, end = _year_earlier(self.date_from), _year_earlier(self.date_to)
        else:
            raise QueryError("compare", "must be previous_period or year_over_year")
        if start < FIRST_DAY:
            raise QueryError(
                "compare", f"the {mode} period would start on {start.isoformat()}, before {FIRST_DAY.isoformat()}"
            )
        return Query(site=self.site, date_from=start, date_to=end, interval=self.interval, filters=self.filters,
                     imported=self.imported)

    def hour_range(self) -> tuple[int, int]:
        start = day_start_timestamp(self.date_from, self.site.timezone)
        end = day_start_timestamp(self.date_to + timedelta(days=1), self.site.timezone)
        return int(start // 3600), int(end // 3600) - 1


def check_day(field: str, day: date) -> date:
    """A day a query may cover, or :class:`QueryError` naming ``field``; call it before doing
    arithmetic on a day from the outside (``date - timedelta`` overflows near year 1)."""
    if not FIRST_DAY <= day <= LAST_DAY:
        raise QueryError(field, f"must be between {FIRST_DAY.isoformat()} and {LAST_DAY.isoformat()}")
    return day


def _year_earlier(day: date) -> date:
    try:
        return day.replace(year=day.year - 1)
    except ValueError:  # 29 February
        return day.replace(year=day.year - 1, day=28)


