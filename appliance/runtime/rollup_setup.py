"""Builds the week and month rollups (:mod:`storage.rollups`) of a store written without them,
and seals the periods that have ended.

:func:`ensure_rollups` runs once per data dir, at open, in one transaction, and records that it
did. :func:`seal_rollups` runs on the job runner: it moves each site's sealed-through day to
the site's yesterday, building every week and month that ended since from its days in the
same transaction (from then on the writes to those days keep them).
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
    period, as before sealing) gets yesterday, with nothing to build."""
    sealed = counters.sealed
    if sealed is None:
        return 0
    now = time.time() if now is None else now
    built = 0
    for site in sites.all():
        yesterday = day_bucket(now, site.timezone) - 1

        def seal(txn, site=site.id, yesterday=yesterday) -> int:
            through = sealed.through(txn, site)
            if through is not None and through >= yesterday:
                return 0  # (a timezone moved west: never unseal)
            periods = rollups.ended_between(through, yesterday) if through is not None else []
            if periods:
                counters.rebuild_periods(txn, site, periods)
                sketches.rebuild_periods(txn, site, periods)
            sealed.set(txn, site, yesterday)
            return len(periods)

        count = store.write(seal, bulk=True)
        if count:
            log.info("sealed %d rollup periods of site %s through day %d", count, site.id, yesterday)
        built += count
    return built
