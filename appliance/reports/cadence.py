"""When a schedule sends, and what: calendar periods in the site's time zone.

A schedule sends each *closed* period once, at its hour (0–23, the site's local time) on the
day after the period ends:

- ``daily``: one local day, sent the next day at the hour;
- ``weekly``: Monday to Sunday, sent on Monday at the hour — or on the schedule's ``weekday``
  (0 Monday … 6 Sunday) after the week;
- ``monthly``: a calendar month, sent on the 1st at the hour — or on the schedule's ``day``
  (1–28) of the following month.

Either way the period is the closed week or month before the send day: a weekly schedule
sending on Thursdays sends the Monday-to-Sunday week that ended on the Sunday before. That is
the ``offset`` below: days from the day after the period to the send day (:func:`send_offset`).

A period's key (``day:2026-03-04``, ``week:2026-03-02``, ``month:2026-03-01``) is the
idempotency key of its send (:mod:`appliance.reports.deliveries`). After downtime the
scheduler sends every period that fell due while it was down (:func:`due_periods`), oldest
first, at most :data:`MAX_CATCH_UP` of them; a schedule never sends a period that fell due
before it was created.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from appliance.periods import local_today, zone

FREQUENCIES = ("daily", "weekly", "monthly")
MAX_CATCH_UP = 12
_KEY_PREFIX = {"daily": "day", "weekly": "week", "monthly": "month"}


def send_offset(frequency: str, weekday: int = 0, day: int = 1) -> int:
    """Days from the day after a period to its send day: ``weekday`` for weekly schedules,
    ``day - 1`` for monthly ones, 0 for daily ones."""
    if frequency == "weekly":
        return weekday
    if frequency == "monthly":
        return day - 1
    return 0


def period_containing(frequency: str, day: date) -> tuple[date, date]:
    if frequency == "daily":
        return day, day
    if frequency == "weekly":
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=6)
    start = day.replace(day=1)
    following = (start + timedelta(days=32)).replace(day=1)
    return start, following - timedelta(days=1)


def period_before(frequency: str, start: date) -> tuple[date, date]:
    return period_containing(frequency, start - timedelta(days=1))


def period_key(frequency: str, start: date) -> str:
    return f"{_KEY_PREFIX[frequency]}:{start.isoformat()}"


def due_at(hour: int, timezone: str, end: date, offset: int = 0) -> float:
    """The UTC time stamp a period ending on ``end`` is due: ``hour`` local time on the next day
    (``offset`` days later: the send day)."""
    following = end + timedelta(days=1 + offset)
    return datetime(following.year, following.month, following.day, hour, tzinfo=zone(timezone)).timestamp()


def latest_due(frequency: str, hour: int, timezone: str, now: float, offset: int = 0) -> tuple[date, date]:
    """The newest period whose send time is not after ``now`` (an offset is shorter than any
    period, so that is the period before the current one, or the one before that)."""
    start, end = period_before(frequency, period_containing(frequency, local_today(timezone, now))[0])
    if due_at(hour, timezone, end, offset) > now:
        start, end = period_before(frequency, start)
    return start, end


def due_periods(frequency: str, hour: int, timezone: str, now: float, since: float,
                offset: int = 0) -> list[tuple[date, date]]:
    """Periods due in ``(since, now]``, oldest first, at most :data:`MAX_CATCH_UP`."""
    found = []
    start, end = latest_due(frequency, hour, timezone, now, offset)
    while due_at(hour, timezone, end, offset) > since and len(found) < MAX_CATCH_UP:
        found.append((start, end))
        start, end = period_before(frequency, start)
    return found[::-1]


def next_due(frequency: str, hour: int, timezone: str, now: float, offset: int = 0) -> float:
    """When the next period after ``now`` falls due."""
    start, end = latest_due(frequency, hour, timezone, now, offset)
    after = end + timedelta(days=1)
    return due_at(hour, timezone, period_containing(frequency, after)[1], offset)
