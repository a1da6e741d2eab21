"""What ``GET /health`` answers for an open appliance."""

from __future__ import annotations

import time

# the replication fields /health shows: the role and lag only (/api/v1/replication/status,
# admin only, has the rest)
PUBLIC_REPLICATION = (
    "role", "lag_events", "lag_seconds", "apply_error", "standby_lag_events", "standby_connected",
    "sync_timeouts", "sync_degraded",
)


def health_report(appliance) -> dict[str, object]:
    """For an open :class:`~appliance.runtime.appliance.Appliance`: status ("ok", or "degraded" after a writer error or while a standby cannot apply),
    uptime, counts, storage use and the replication role."""
    used, map_size = appliance.store.map_usage()
    stalled = appliance.follower.apply_error if appliance.following else None  # a standby's disk is full
    writer = appliance.writer
    return {
        "status": "ok" if writer.last_error is None and stalled is None else "degraded",
        "uptime_seconds": round(time.time() - appliance.started_at, 1),
        "events_accepted": writer.events_committed,
        "batches_committed": writer.batches_committed,
        "drops": appliance.pipeline.drop_counts(),
        "storage": {"used_bytes": used, "map_bytes": map_size, "file_bytes": appliance.store.disk_bytes()},
        "last_error": writer.last_error or stalled,
        "sites": len(appliance.sites.all()),
        "open_visits": len(appliance.visits),
        "replication": {
            key: value for key, value in appliance.replication_status().items() if key in PUBLIC_REPLICATION
        },
    }
