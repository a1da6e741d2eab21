"""A saved report's period: relative ("last 7 days", "month to date", ...) or fixed (two
dates), resolved against *today in the site's time zone* each time the report runs.

The names are the dashboard's (``period=`` in its URL), so "Save as report" keeps the view's
period as it is: a dashboard showing "last 30 days" saves a report that always shows the
last 30 days, and ``custom`` keeps its two dates.
"""

from __future__ import annotations

from datetime import date, timedelta

from appliance.query.spec import QueryError, check_day

PERIODS: dict[str, str] = {
    "day": "Today",
    "yesterday": "Yesterday",
    "7d": "Last 7 days",
    "30d": "Last 30 days",
    "month": "Month to date",
    "last_month": "Last month",
    "year": "Year to date",
    "12mo": "Last 12 months",
    "custom": "Custom range",
}
COMPARISONS = ("off", "previous_period", "year_over_year")


def resolve_period(period: str, today: date, start: date | None = None, end: date | None = None) -> tuple[date, date]:
    """The inclusive dates ``period`` covers on ``today`` (``custom``: ``start``..``end``)."""
    if period == "custom":
        if start is None or end is None:
            raise QueryError("start_date", "a custom period needs start_date and end_date")
        check_day("start_date", start)
        check_day("end_date", end)
        if end < start:
            raise QueryError("end_date", "must not be before start_date")
        return start, end
    if period == "day":
        return today, today
    if period == "yesterday":
        return today - timedelta(days=1), today - timedelta(days=1)
    if period == "7d":
        return today - timedelta(days=6), today
    if period == "30d":
        return today - timedelta(days=29), today
    if period == "month":
        return today.replace(day=1), today
    if period == "last_month":
        last = today.replace(day=1) - timedelta(days=1)
        return last.replace(day=1), last
    if period == "year":
        return today.replace(month=1, day=1), today
    if period == "12mo":
        first = today.replace(day=1)
        month, year = first.month - 11, first.year
        if month < 1:
            month, year = month + 12, year - 1
        return date(year, month, 1), today
    raise QueryError("period", f"one of {', '.join(PERIODS)}")
