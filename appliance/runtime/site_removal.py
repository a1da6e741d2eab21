"""Everything a site owns, deleted in one write transaction.

:meth:`Appliance.delete_site` unlists the site first (ingest stops resolving it) and flushes
the writer, then :func:`delete_site_data` runs inside the registry's transaction: the event
log and column blocks, counters and sketches, visits and re-derivation marks, materialised
segments, imported aggregates, alert rules and history, and the site's definitions
(goals, funnels, segments, reports, schedules with their delivery ledgers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from appliance.models import Site


def delete_site_data(appliance, txn, site: Site) -> None:
    """Delete every row of ``site`` in ``txn`` (an open write transaction), for an open
    :class:`~appliance.runtime.appliance.Appliance`."""
    appliance.recorder.delete_site(txn, site.id)
    appliance.counters.delete_site(txn, site.id)
    appliance.sketches.delete_site(txn, site.id)
    appliance.eventlog.delete_range(txn, site.id, 0, 2**63 - 1)
    appliance.columns.delete_site(txn, site.id)
    appliance.stats.materialiser.delete_site(txn, site.id)
    appliance.visits.delete_site(txn, site.id)
    appliance.rederiver.delete_site(txn, site.id)
    appliance.alert_rules.delete_site(txn, site.id)
    appliance.alert_history.delete_site(txn, site.id)
    appliance.imported.delete_site(txn, site.id)
    records = appliance.records
    prefix = f"{site.id:010d}/"
    for key, _ in list(records.scan("schedule", txn)):  # the delivery ledgers of its schedules
        if key.startswith(prefix):
            records.delete_prefixed(txn, f"delivery/{key[len(prefix):]}", "")
    for kind in ("goal", "funnel", "segment", "report", "schedule"):  # the site's definitions go with it
        records.delete_prefixed(txn, kind, prefix)
