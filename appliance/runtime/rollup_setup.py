"""Builds the week and month rollups (:mod:`storage.rollups`) of a store written without them.

From then on every write keeps them; this runs once per data dir, at open, in one transaction,
and records that it did.
"""

from __future__ import annotations

from appliance.sites import SiteRegistry
from storage import Store
from storage.counters import Counters
from storage.records import Records
from storage.sketches import Sketches

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
