"""``footfall site export``: a whole site in one versioned zip archive.

The archive holds ``manifest.json`` — format, version, the site's settings, goals, funnels and
site-wide segments (:mod:`appliance.definitions.archive`) and how many events follow — and
``events.ndjson``, every stored event of the site in the interchange format
(:mod:`appliance.events.interchange`), streamed into the zip with flat memory.
:mod:`appliance.imports.site_archive` reads it back.
"""

from __future__ import annotations

import csv
import io
import time
import zipfile
from datetime import timedelta
from pathlib import Path

import msgspec

from appliance.definitions.archive import manifest_of
from appliance.exports.raw_events import RawEvents
from appliance.periods import day_from_number, local_today
from appliance.plausible_tables import SPECS, archive_columns
from appliance.query.spec import FIRST_DAY
from appliance.sites import SiteError
from storage.imported import METRICS

EVENTS_MEMBER = "events.ndjson"
MANIFEST_MEMBER = "manifest.json"
IMPORTED_FOLDER = "imported/"  # imported daily aggregates, as Plausible CSV export tables


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
        imported = _write_imported(archive, appliance.imported, site.id)
    counts = {"events": events, "goals": len(manifest.goals), "funnels": len(manifest.funnels),
              "segments": len(manifest.segments), "private_segments_left_out": manifest.private_segments_left_out}
    if imported:
        counts["imported rows"] = imported
    return counts


def _write_imported(archive: zipfile.ZipFile, aggregates, site_id: int) -> int:
    """The site's imported daily aggregates as ``imported/imported_<table>.csv`` in the
    columns of Plausible's CSV export (what :mod:`appliance.imports.plausible` reads back)."""
    tables: dict[str, list[tuple[int, str, tuple[int, ...]]]] = {}
    with aggregates.read() as txn:
        for table, day, value, metrics in aggregates.items(txn, site_id):
            tables.setdefault(table, []).append((day, value, metrics))
    for table, rows in tables.items():
        spec = SPECS[table]
        columns = archive_columns(spec)
        by_column = {column: METRICS.index(metric) for metric, column in spec.metrics.items()}
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for day, value, metrics in rows:
            writer.writerow([
                day_from_number(day).isoformat() if column == "date" else value if column == spec.dimension
                else metrics[by_column[column]] if column in by_column else "" if column in spec.text else 0
                for column in columns
            ])
        archive.writestr(f"{IMPORTED_FOLDER}imported_{table}.csv", out.getvalue())
    return sum(len(rows) for rows in tables.values())


__all__ = ["EVENTS_MEMBER", "IMPORTED_FOLDER", "MANIFEST_MEMBER", "export_site"]
