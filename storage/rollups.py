"""Week and month rollups of day buckets, so that a long range is a handful of reads.

A rolled-up metric's day counters and day sketches are also kept per *week* (granularity
:data:`storage.keys.WEEK`, bucket: the day number of the Monday) and per *month*
(:data:`storage.keys.MONTH`, bucket: the day number of the 1st), in the same databases and
key layout. They are maintained by the same calls that write the days
(:meth:`storage.counters.Counters.apply`, :meth:`storage.sketches.Sketches.add` and both
``replace_bucket``), in the same transaction, so a rollup always equals the sum (or union) of
its days: a late event for a closed day bumps its week and month with it, and a re-derived day
passes its difference on. Deleting old days (retention) rebuilds the periods they cut.

*Sealed periods.* Only the weeks and months that have ended are kept that way: each site has
a *sealed-through* day (:class:`Sealed`), and a period is sealed when its last day is on or
before it. Writes to a day keep only its sealed periods, and :func:`plan` reads only sealed
ones, so today's traffic (whose week and month are still open) writes one counter per day key
instead of three and one sketch instead of three, and a read of the open week or month reads
its days. The job runner (:func:`appliance.runtime.rollup_setup.seal_rollups`) moves the day
forward to yesterday once each period that has ended since is built from its days (the
transaction that moves it checks that none of those days was written since the build). A site
without the record (a store from before sealing, before the
first job run) keeps and reads every period, as rollups did before.

A read over ``[first_day, last_day]`` is planned by :func:`plan`: whole months where they fit,
whole weeks where they fit without covering the start of a whole month, days at the edges. A
12-month range is about 12 month buckets, a few weeks and a few days instead of 365 days.
Days are local days of the site (as in every day bucket), numbered from 1970-01-01.
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache

from storage.keys import DAY, MONTH, WEEK

_EPOCH = date(1970, 1, 1)


def week_of(day: int) -> int:
    """The day number of the Monday of ``day``'s week (1970-01-01 was a Thursday)."""
    return day - (day + 3) % 7


@lru_cache(maxsize=4096)
def month_of(day: int) -> int:
    """The day number of the 1st of ``day``'s month."""
    return day - (_EPOCH + timedelta(days=day)).day + 1


@lru_cache(maxsize=4096)
def month_last(month: int) -> int:
    """The last day number of the month that starts on day ``month``."""
    start = _EPOCH + timedelta(days=month)
    following = date(start.year + start.month // 12, start.month % 12 + 1, 1)
    return (following - _EPOCH).days - 1


def periods_of(day: int, sealed_through: int | None = None) -> tuple[tuple[int, int, int, int], ...]:
    """``(granularity, bucket, first_day, last_day)`` of each rollup period holding ``day``;
    with ``sealed_through``, only the periods sealed by then (see the module)."""
    week = week_of(day)
    month = month_of(day)
    found = ((WEEK, week, week, week + 6), (MONTH, month, month, month_last(month)))
    if sealed_through is None:
        return found
    return tuple(period for period in found if period[3] <= sealed_through)


def ended_between(after: int, through: int) -> list[tuple[int, int]]:
    """``(granularity, bucket)`` of every week and month whose last day is in ``(after, through]``."""
    return [
        (granularity, start)
        for granularity, start in periods_between(after + 1, through)
        if after < period_span(granularity, start)[1] <= through
    ]


def periods_between(first_day: int, last_day: int) -> list[tuple[int, int]]:
    """``(granularity, bucket)`` of every week and month overlapping the day range."""
    found: list[tuple[int, int]] = []
    week = week_of(first_day)
    while week <= last_day:
        found.append((WEEK, week))
        week += 7
    month = month_of(first_day)
    while month <= last_day:
        found.append((MONTH, month))
        month = month_last(month) + 1
    return found


def buckets_of_run(granularity: int, first_bucket: int, last_bucket: int) -> list[int]:
    """The buckets of a run of :func:`plan` (or of a day range)."""
    if granularity == WEEK:
        return list(range(first_bucket, last_bucket + 1, 7))
    if granularity == MONTH:
        found = []
        month = first_bucket
        while month <= last_bucket:
            found.append(month)
            month = month_last(month) + 1
        return found
    return list(range(first_bucket, last_bucket + 1))


def period_span(granularity: int, bucket: int) -> tuple[int, int]:
    """The first and last day of a rollup (or day) bucket."""
    if granularity == WEEK:
        return bucket, bucket + 6
    if granularity == MONTH:
        return bucket, month_last(bucket)
    return bucket, bucket


@lru_cache(maxsize=1024)
def plan(first_day: int, last_day: int, sealed_through: int | None = None) -> tuple[tuple[int, int, int], ...]:
    """Read ``[first_day, last_day]`` as runs ``(granularity, first_bucket, last_bucket)``.

    Consecutive buckets of one granularity form one run (one cursor scan). The runs cover
    every day of the range exactly once. With ``sealed_through``, weeks and months ending
    after it are read as their days (their rollups are not kept: see the module).
    """
    # the last day a period read whole may end on
    last_whole = min(last_day, sealed_through) if sealed_through is not None else last_day
    pieces: list[tuple[int, int]] = []
    day = first_day
    while day <= last_day:
        if month_of(day) == day and month_last(day) <= last_whole:
            pieces.append((MONTH, day))
            day = month_last(day) + 1
            continue
        if week_of(day) == day and day + 6 <= last_whole:
            # A week that covers the start of a month which fits whole is read as days up to
            # that month instead: the month then saves more reads than the week would.
            inner = month_of(day + 6)
            if not (inner > day and month_last(inner) <= last_whole):
                pieces.append((WEEK, day))
                day += 7
                continue
        pieces.append((DAY, day))
        day += 1
    runs: list[tuple[int, int, int]] = []
    for granularity, bucket in pieces:
        if runs and runs[-1][0] == granularity:
            runs[-1] = (granularity, runs[-1][1], bucket)
        else:
            runs.append((granularity, bucket, bucket))
    return tuple(runs)


def day_plan(first_day: int, last_day: int) -> tuple[tuple[int, int, int], ...]:
    """The plan without rollups: every day (what :func:`plan` is checked against)."""
    return ((DAY, first_day, last_day),) if first_day <= last_day else ()


#: the :class:`~storage.records.Records` kind of the sealed-through days (never copied to a
#: standby: it aggregates, and seals, on its own)
SEALED_KIND = "rollups"


class Sealed:
    """Each site's sealed-through day (see the module), kept as a record."""

    def __init__(self, records) -> None:
        self._records = records

    def through(self, txn, site: int) -> int | None:
        """The site's sealed-through day in ``txn``'s snapshot, or None: every period kept."""
        raw = self._records.get(SEALED_KIND, f"sealed-{site}", txn)
        return None if raw is None else int.from_bytes(raw, "big", signed=True)

    def set(self, txn, site: int, day: int) -> None:
        self._records.put(txn, SEALED_KIND, f"sealed-{site}", day.to_bytes(4, "big", signed=True))

    def forget(self, txn, site: int) -> None:
        self._records.delete(txn, SEALED_KIND, f"sealed-{site}")
