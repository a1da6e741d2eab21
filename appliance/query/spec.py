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


class QueryError(DomainError):
    """A query that cannot be answered as asked (answered 422, naming the parameter)."""


class Query(msgspec.Struct, kw_only=True):
    """What every stats function takes: a site, an inclusive local date range, an interval,
    and filters (see :mod:`appliance.filters`; none means the pre-aggregated fast path)."""

    site: Site
    date_from: date
    date_to: date
    interval: str = "day"
    filters: list[Filter] = []

    def __post_init__(self) -> None:
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
            return Query(
                site=self.site,
                date_from=self.date_from - timedelta(days=length),
                date_to=self.date_from - timedelta(days=1),
                interval=self.interval,
                filters=self.filters,
            )
        if mode == "year_over_year":
            return Query(
                site=self.site,
                date_from=_year_earlier(self.date_from),
                date_to=_year_earlier(self.date_to),
                interval=self.interval,
                filters=self.filters,
            )
        raise QueryError("compare", "must be previous_period or year_over_year")

    def hour_range(self) -> tuple[int, int]:
        start = day_start_timestamp(self.date_from, self.site.timezone)
        end = day_start_timestamp(self.date_to + timedelta(days=1), self.site.timezone)
        return int(start // 3600), int(end // 3600) - 1



def _year_earlier(day: date) -> date:
    try:
        return day.replace(year=day.year - 1)
    except ValueError:  # 29 February
        return day.replace(year=day.year - 1, day=28)


