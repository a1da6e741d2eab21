"""``footfall site import``: a site archive (:mod:`appliance.exports.site_archive`) read back.

The manifest is checked first (format, version, a domain not yet in use), then the site is
created with the archive's settings, its goals, funnels and segments are created anew with
their references rewritten (:func:`appliance.definitions.archive.restore`) — before the
events, so goals are counted as the events arrive, as on the old installation — and the
events are imported as the ``footfall`` kind (:class:`~appliance.imports.runner.Importer`):
validated whole first, then through the commit and aggregation step. Every report of the
site then reads as it did where it came from. If the events are refused (a truncated
archive), the new site is deleted again: nothing half-imported.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path

import msgspec

from appliance.definitions.archive import Manifest, check, restore
from appliance.imports.plausible import PlausibleImport
from appliance.imports.runner import Importer, ImportReport
from appliance.imports.sources import ImportFailure

EVENTS_MEMBER = "events.ndjson"
MANIFEST_MEMBER = "manifest.json"
IMPORTED_FOLDER = "imported/"


def read_manifest(path: str | Path) -> Manifest:
    name = Path(path).name
    try:
        with zipfile.ZipFile(path) as archive:
            raw = archive.read(MANIFEST_MEMBER)
            if EVENTS_MEMBER not in archive.namelist():
                raise ImportFailure(name, f"not a site archive: no {EVENTS_MEMBER}")
    except (zipfile.BadZipFile, OSError, KeyError) as error:
        raise ImportFailure(name, f"not a readable site archive ({error})") from None
    try:
        manifest = msgspec.json.decode(raw, type=Manifest)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise ImportFailure(f"{name}/{MANIFEST_MEMBER}", f"not a site manifest: {error}") from None
    check(manifest)
    return manifest


def _import_aggregates(appliance, path: str | Path, site) -> int:
    """The archive's imported daily aggregates (``imported/``), if it has any; rows imported."""
    with zipfile.ZipFile(path) as archive:
        if not any(name.startswith(IMPORTED_FOLDER) for name in archive.namelist()):
            return 0
    report = ImportReport(kind="plausible", file=Path(path).name, site=site.domain, dry_run=False)
    PlausibleImport(store=appliance.store, records=appliance.records, imported=appliance.imported).run(
        str(path), site, report, dry_run=False, under=IMPORTED_FOLDER)
    return report.lines


def import_site(appliance, path: str | Path, *, domain: str | None = None, author: str = "cli") -> dict[str, object]:
    """Create the archived site (as ``domain`` when given) on an open appliance; returns counts."""
    manifest = read_manifest(path)
    settings = manifest.site
    target = domain or settings.domain
    with tempfile.TemporaryDirectory() as scratch:
        events_path = Path(scratch) / EVENTS_MEMBER
        try:
            with zipfile.ZipFile(path) as archive, archive.open(EVENTS_MEMBER) as source, open(events_path, "wb") as out:
                shutil.copyfileobj(source, out)
        except (zipfile.BadZipFile, OSError, EOFError) as error:
            raise ImportFailure(Path(path).name, f"truncated or corrupt archive ({error})") from None
        site = appliance.sites.add(target, name=settings.name, timezone=settings.timezone,
                                   retention_days=settings.retention_days, allowed_hostnames=settings.allowed_hostnames)
        try:
            if settings.public:
                site = appliance.sites.change(site.domain, public=True)
            counts = restore(site, manifest, appliance.goals, appliance.funnels, appliance.segments, author)
            appliance.goals.wait()
            report = Importer.of(appliance).run("footfall", str(events_path), site)
            imported = _import_aggregates(appliance, path, site)
        except BaseException:
            appliance.delete_site(site.domain)
            raise
    appliance.stats.materialiser.wait()
    return {"site": site.domain, **counts, "events": report.events, "imported_rows": imported, "skipped": report.skipped,
            "private_segments_left_out": manifest.private_segments_left_out}
