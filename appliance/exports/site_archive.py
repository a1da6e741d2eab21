"""``footfall site export``: a whole site in one versioned zip archive.

The archive holds ``manifest.json`` — format, version, the site's settings, goals, funnels and
site-wide segments (:mod:`appliance.definitions.archive`) and how many events follow — and
``events.ndjson``, every stored event of the site in the interchange format
(:mod:`appliance.events.interchange`), streamed into the zip with flat memory.
:mod:`appliance.imports.site_archive` reads it back.
"""

from __future__ import annotations

import time
import zipfile
from datetime import timedelta
from pathlib import Path

import msgspec

from appliance.definitions.archive import manifest_of
from appliance.exports.raw_events import RawEvents
from appliance.periods import local_today
from appliance.query.spec import FIRST_DAY
from appliance.sites import SiteError

EVENTS_MEMBER = "events.ndjson"
MANIFEST_MEMBER = "manifest.json"


def export_site(appliance, domain: str, path: str | Path) -> dict[str, int]:
    """Write the archive of site ``domain`` of an open appliance to ``path``; returns counts."""
    site = appliance.sites.get(domain)
    if site is None:
        raise SiteError("domain", f"unknown site {domain!r}")
    manifest = manifest_of(site, appliance.goals, appliance.funnels, appliance.segments)
    today = local_today(site.timezone)
    first = max(FIRST_DAY, today - timedelta(days=site.retention_days + 2))
    raw = RawEvents(appliance.stats.scans, appliance.strings)
    events = 0
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        with archive.open(EVENTS_MEMBER, "w", force_zip64=True) as out:
            for chunk in raw.stream(site, first, today + timedelta(days=1)):
                out.write(chunk)
                events += chunk.count(b"\n")
        manifest.events = events
        manifest.exported_at = time.time()
        archive.writestr(MANIFEST_MEMBER, msgspec.json.format(msgspec.json.encode(manifest), indent=2))
    return {"events": events, "goals": len(manifest.goals), "funnels": len(manifest.funnels),
            "segments": len(manifest.segments), "private_segments_left_out": manifest.private_segments_left_out}


__all__ = ["EVENTS_MEMBER", "MANIFEST_MEMBER", "export_site"]
