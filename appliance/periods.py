"""Calendar arithmetic: bucket numbers in a site's time zone, and date ranges.

Hour buckets are UTC hours since the epoch; day buckets are days since 1970-01-01 *in the
site's time zone*, so a site in Tokyo sees its own midnight. Offsets are cached per hour.
"""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

EPOCH_DATE = date(1970, 1, 1)


@functools.lru_cache(maxsize=128)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@functools.lru_cache(maxsize=65536)
def _offset_seconds(timezone: str, hour: int) -> int:
    moment = datetime.fromtimestamp(hour * 3600, UTC).astimezone(zone(timezone))
    return int(moment.utcoffset().total_seconds())


def utc_offset_seconds(timezone: str, hour: int) -> int:
    """``timezone``'s UTC offset during UTC hour bucket ``hour`` (what :func:`day_bucket` adds)."""
    return _offset_seconds(timezone, hour)


def hour_bucket(timestamp: float) -> int:
    return int(timestamp // 3600)


def day_bucket(timestamp: float, timezone: str = "UTC") -> int:
    if timezone == "UTC":
        return int(timestamp // 86400)
    offset = _offset_seconds(timezone, int(timestamp // 3600))
    return int((timestamp + offset) // 86400)


def day_number(day: date) -> int:
    return (day - EPOCH_DATE).days


def day_from_number(number: int) -> date:
    return EPOCH_DATE + timedelta(days=number)


def day_start_timestamp(day: date, timezone: str = "UTC") -> float:
    """The UTC timestamp of local midnight starting ``day`` in ``timezone``."""
    return datetime(day.year, day.month, day.day, tzinfo=zone(timezone)).timestamp()


def local_today(timezone: str = "UTC", now: float | None = None) -> date:
    moment = datetime.now(UTC) if now is None else datetime.fromtimestamp(now, UTC)
    return moment.astimezone(zone(timezone)).date()


def week_start(day: date) -> date:
    return day - timedelta(days=day.weekday())


def month_start(day: date) -> date:
    return day.replace(day=1)
