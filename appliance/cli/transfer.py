"""``footfall export events``, ``footfall import`` and ``footfall site export|import``: raw events
out of a site, history in, and whole sites moved between installations.

Both open the full appliance, so they own the data dir for their run and are refused while a
server runs on it (use ``GET /api/v1/sites/{domain}/events/export`` then). ``export events``
streams the interchange format (:mod:`appliance.events.interchange`) to a file or ``-``
(stdout); ``import`` runs :class:`~appliance.imports.runner.Importer` and prints its report
(``--json`` for the whole report).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from datetime import date, timedelta

import msgspec

from appliance.exports.raw_events import RawEvents
from appliance.exports.site_archive import export_site
from appliance.filters import parse_filters
from appliance.imports.runner import KINDS, Importer
from appliance.imports.site_archive import import_site
from appliance.periods import local_today
from appliance.sites import SiteError


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def cmd_export_events(args: argparse.Namespace, open_appliance) -> int:
    with open_appliance(args, "export events") as appliance:
        site = appliance.sites.get(args.site)
        if site is None:
            raise SiteError("site", f"unknown site {args.site!r}")
        end = args.end_date or local_today(site.timezone)
        start = args.start_date or end - timedelta(days=site.retention_days)
        filters = parse_filters(args.filters)
        chunks = RawEvents(appliance.stats.scans, appliance.strings).stream(
            site, start, end, filters=filters, fmt=args.format, cursor=args.cursor
        )
        lines = 0
        with contextlib.ExitStack() as stack:
            out = sys.stdout.buffer if args.path == "-" else stack.enter_context(open(args.path, "wb"))
            for chunk in chunks:
                out.write(chunk)
                lines += chunk.count(b"\n")
    if args.path != "-":
        rows = lines - 1 if args.format == "csv" else lines
        print(f"{site.domain}: {rows} events from {start} to {end} written to {args.path}", file=sys.stderr)
    return 0


def cmd_import(args: argparse.Namespace, open_appliance) -> int:
    with open_appliance(args, "import") as appliance:
        site = appliance.sites.get(args.site)
        if site is None:
            raise SiteError("site", f"unknown site {args.site!r}; add it first with `footfall site add`")
        patterns = tuple(args.exclude) if args.exclude is not None else None
        if args.include_static:
            patterns = ()
        report = Importer.of(appliance).run(args.kind, args.path, site, dry_run=args.dry_run, static_patterns=patterns)
        appliance.jobs.compactions.wait()  # the job runner compacts the closed days imported before the process ends
    if args.json:
        print(json.dumps(msgspec.to_builtins(report), indent=2))
        return 0
    if report.already_imported:
        print(f"{report.file}: already imported into {report.site}; nothing to do")
        return 0
    verb = "would import" if report.dry_run else "imported"
    if report.kind == "plausible":  # daily aggregates: rows and days per table
        print(f"{report.file}: {verb} {report.lines} rows of daily aggregates into {report.site}"
              f" ({report.first_event} to {report.last_event}) in {report.seconds} s")
        for table, figures in report.tables.items():
            print(f"  imported_{table}: {figures['rows']} rows, {figures['days']} days"
                  f" ({figures['first_day']} to {figures['last_day']})")
        return 0
    span = f" ({report.first_event} to {report.last_event})" if report.events else ""
    print(f"{report.file}: {verb} {report.events} events into {report.site}{span} from {report.lines} lines"
          f" in {report.seconds} s ({report.events_per_second} events/s)")
    for reason, count in sorted(report.skipped.items(), key=lambda item: -item[1]):
        print(f"  skipped {count}: {reason}")
    if report.chunks_already_imported:
        print(f"  {report.chunks_already_imported} chunks were imported before and skipped")
    return 0


def cmd_site_export(args: argparse.Namespace, open_appliance) -> int:
    with open_appliance(args, "site export") as appliance:
        counts = export_site(appliance, args.domain, args.path)
    left_out = counts.pop("private_segments_left_out")
    print(f"{args.domain}: {', '.join(f'{n} {what}' for what, n in counts.items())} written to {args.path}"
          + (f" ({left_out} private segments left out)" if left_out else ""))
    return 0


def cmd_site_import(args: argparse.Namespace, open_appliance) -> int:
    with open_appliance(args, "site import") as appliance:
        result = import_site(appliance, args.path, domain=args.domain)
        appliance.jobs.compactions.wait()  # the closed days imported, compacted before the process ends
    skipped = "".join(f"; skipped {n} ({why})" for why, n in result["skipped"].items())
    imported = f", {result['imported_rows']} rows of imported daily aggregates" if result["imported_rows"] else ""
    print(f"{result['site']}: {result['events']} events, {result['goals']} goals, {result['funnels']} funnels, "
          f"{result['segments']} segments{imported} imported{skipped}")
    return 0


def add_transfer_commands(commands, site, common: argparse.ArgumentParser, open_appliance) -> None:
    """Add ``export events``, ``import`` and ``site export|import`` to the ``footfall`` parser
    (``site``: the ``site`` command's subparsers); ``open_appliance(args, command)`` opens the
    owned appliance."""
    export = commands.add_parser("export", help="export data").add_subparsers(dest="action", required=True)
    events = export.add_parser("events", parents=[common], help="a site's raw events as NDJSON or CSV")
    events.add_argument("--site", required=True, help="the site's domain")
    events.add_argument("path", help="output file, or - for standard output")
    events.add_argument("--start-date", type=_day, help="first local day (default: the retention period)")
    events.add_argument("--end-date", type=_day, help="last local day (default: today)")
    events.add_argument("--format", choices=["ndjson", "csv"], default="ndjson")
    events.add_argument("--filters", help="the stats API's filters, e.g. 'page==/pricing;country!=DE'")
    events.add_argument("--cursor", help="resume after the event with this id")
    events.set_defaults(func=lambda args: cmd_export_events(args, open_appliance))

    imports = commands.add_parser("import", parents=[common], help="import events from a file into a site")
    imports.add_argument("kind", choices=KINDS, help="what the file is")
    imports.add_argument("path", help="the file: plain, gzip or zip (plausible: its CSV export's zip)")
    imports.add_argument("--site", required=True, help="the site's domain (must exist)")
    imports.add_argument("--dry-run", action="store_true", help="report what would be imported and skipped; write nothing")
    imports.add_argument("--exclude", action="append", metavar="PATTERN",
                         help="access logs: a static-asset path pattern to skip, * as wildcard (repeatable; "
                              "replaces the built-in list)")
    imports.add_argument("--include-static", action="store_true", help="access logs: skip no path as a static asset")
    imports.add_argument("--json", action="store_true", help="print the whole report as JSON")
    imports.set_defaults(func=lambda args: cmd_import(args, open_appliance))

    archive = site.add_parser("export", parents=[common], help="a whole site (settings, definitions, events) as one archive")
    archive.add_argument("domain")
    archive.add_argument("path", help="the archive to write (a zip)")
    archive.set_defaults(func=lambda args: cmd_site_export(args, open_appliance))
    restore = site.add_parser("import", parents=[common], help="create a site from an archive of `site export`")
    restore.add_argument("path")
    restore.add_argument("--domain", help="create it under this domain instead of the archived one")
    restore.set_defaults(func=lambda args: cmd_site_import(args, open_appliance))


__all__ = ["add_transfer_commands"]
