"""Builds the week and month rollups (:mod:`storage.rollups`) of a store written without them,
and seals the periods that have ended.

:func:`ensure_rollups` runs once per data dir, at open, in one transaction, and records that it
did. :func:`seal_rollups` runs on the job runner: it moves each site's sealed-through day to
the site's yesterday, once every week and month that ended since is built from its days (from
then on the writes to those days keep them).
"""

from __future__ import annotations

import logging
import time

from appliance.periods import day_bucket
from appliance.sites import SiteRegistry
from storage import Store, rollups
from storage.counters import Counters
from storage.records import Records
from storage.sketches import Sketches

log = logging.getLogger(__name__)

_KIND = "rollups"
_BUILT = "built"


def ensure_rollups(store: Store, records: Records, sites: SiteRegistry, counters: Counters, sketches: Sketches) -> int:
    """Build every site's rollups unless this data dir has them; returns buckets written."""
    if records.get(_KIND, _BUILT) is not None:
        return 0

    def build(txn) -> int:
        written = 0
        for site in sites.all():
            span = counters.day_span(txn, site.id)
            if span is not None:
                written += counters.rebuild_rollups(txn, site.id, *span)
                written += sketches.rebuild_rollups(txn, site.id, *span)
        records.put(txn, _KIND, _BUILT, b"1")
        return written

    written = store.write(build)
    sketches.forget()
    return written


def seal_rollups(
    store: Store, sites: SiteRegistry, counters: Counters, sketches: Sketches, now: float | None = None
) -> int:
    """Seal every site's weeks and months that have ended by its local yesterday; returns
    the periods built. A site without a sealed-through day (its rollups kept for every
    period, as before sealing) gets yesterday, with nothing to build.

    A period's figures are computed in read transactions, one metric at a time, and written in
    short write transactions while it is still open (no read uses it, no write keeps it); the
    transaction that moves the day checks that none of the periods' days was written since
    (their generations, :mod:`storage.range_sums`), else builds them there."""
    sealed = counters.sealed
    if sealed is None:
        return 0
    now = time.time() if now is None else now
    built = 0
    for site in sites.all():
        yesterday = day_bucket(now, site.timezone) - 1
        with store.read() as txn:
            through = sealed.through(txn, site.id)
        if through is not None and through >= yesterday:
            continue  # (a timezone moved west: never unseal)
        periods = rollups.ended_between(through, yesterday) if through is not None else []
        token = _build_open(store, site.id, periods, counters, sketches) if periods else None

        def seal(txn, site=site.id, through=through, yesterday=yesterday, periods=periods, token=token) -> int:
            if sealed.through(txn, site) != through:
                return 0  # sealed meanwhile
            if periods and (token is None or _token(counters, txn, site, periods) != token):
                counters.rebuild_periods(txn, site, periods)  # days written since: built here
                sketches.rebuild_periods(txn, site, periods)
            sealed.set(txn, site, yesterday)
            return len(periods)

        count = store.write(seal, bulk=True)
        if count:
            log.info("sealed %d rollup periods of site %s through day %d", count, site.id, yesterday)
        built += count
    return built


def _token(counters: Counters, txn, site: int, periods: list[tuple[int, int]]) -> bytes:
    spans = [rollups.period_span(granularity, start) for granularity, start in periods]
    return counters.sums.token(txn, site, min(first for first, _ in spans), max(last for _, last in spans))


def _build_open(store: Store, site: int, periods, counters: Counters, sketches: Sketches) -> bytes | None:
    """Write the (still open) periods' rollups metric by metric; returns the token of the days
    they were built from, or None when a day was written meanwhile (or no tokens are kept)."""
    if counters.sums is None:
        return None
    with store.read() as txn:
        token = _token(counters, txn, site, periods)
    steps = [(counters.period_totals, counters.write_periods, metric) for metric in sorted(counters.rolled_up)]
    steps += [(sketches.period_unions, sketches.write_periods, metric) for metric in sorted(sketches.rolled_up)]
    for build, store_built, metric in steps:
        with store.read() as txn:
            if _token(counters, txn, site, periods) != token:
                return None
            figures = build(txn, site, metric, periods)

        def write(txn, store_built=store_built, metric=metric, figures=figures) -> bool:
            if _token(counters, txn, site, periods) != token:
                return False
            store_built(txn, site, metric, figures)
            return True

        if not store.write(write, bulk=True):
            return None
    return token
