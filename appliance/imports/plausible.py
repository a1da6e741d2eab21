"""Plausible's CSV export: a zip of daily aggregate tables, imported as imported aggregates.

Plausible (Settings → Imports & Exports → Export to CSV) writes one CSV per table, named
``imported_<table>[_<first>_<last>].csv`` (dates as ``YYYYMMDD``), with a header row; each row
is one local day and one dimension value with that day's figures. There are no events, so the
rows are not counted again: they are stored as they are
(:class:`storage.imported.ImportedAggregates`) and the stats add them to native figures for
their days (:mod:`appliance.query.imported`).

:func:`read_export` checks the whole archive first — every member a known table, every header
a known column set, every row a date and whole numbers — and raises :class:`ImportFailure`
naming the file and line before anything is written. :class:`PlausibleImport` then writes each
table in one transaction (parsed before it opens), replacing the rows of the days the table
covers, so importing the same zip twice leaves the same data, and an interrupted import run
again completes it (the archive's SHA-256 is recorded last: a second run of a finished import
reports "already imported").
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date

import msgspec

from appliance.imports.sources import ImportFailure
from appliance.periods import day_from_number, day_number
from appliance.plausible_tables import SPECS, TableSpec
from storage.imported import IMPORT_RECORD_KIND, METRICS

_MEMBER = re.compile(r"(?:^|/)imported_([a-z_]+?)(?:_\d{8}_\d{8})?\.csv$")
_RECORD_KIND = IMPORT_RECORD_KIND
_EMPTY = ("", "\\N", "null", "NULL")
_DECIMAL = re.compile(r"[0-9]{1,19}(?:\.[0-9]{1,19})?")


_OPTIONAL_NUMBERS = frozenset({"total_scroll_depth", "total_scroll_depth_visits", "total_time_on_page",
                               "total_time_on_page_visits", "time_on_page", "active_visitors"})


@dataclass
class TableSummary:
    rows: int = 0
    days: set[int] = field(default_factory=set)
    first: str = ""
    last: str = ""


Row = tuple[int, str, list[int]]


def _members(archive: zipfile.ZipFile, name: str, under: str = "") -> list[tuple[str, str]]:
    """``(member, table)`` of every CSV in the archive (``under``: in that folder only), by
    name; anything else is refused."""
    found = []
    for info in sorted(archive.infolist(), key=lambda info: info.filename):
        if info.is_dir() or info.filename.rsplit("/", 1)[-1].startswith(".") or not info.filename.startswith(under):
            continue
        match = _MEMBER.search(info.filename)
        if match is None or match.group(1) not in SPECS:
            raise ImportFailure(f"{name}/{info.filename}", "not a table of a Plausible CSV export (expected "
                                "imported_<table>.csv, table one of " + ", ".join(SPECS) + ")")
        found.append((info.filename, match.group(1)))
    if not found:
        raise ImportFailure(name, "no imported_*.csv table in the archive: not a Plausible CSV export")
    return found


def _open(path: str, name: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise ImportFailure(name, f"not a readable zip archive ({error})") from None


def _rows(archive: zipfile.ZipFile, member: str, table: str, where: str) -> Iterator[Row]:
    spec = SPECS[table]
    try:
        with archive.open(member) as raw:
            reader = csv.reader(io.TextIOWrapper(raw, encoding="utf-8-sig", newline=""))
            header = next(reader, None)
            if header is None:
                raise ImportFailure(f"{where}:1", "empty file: expected a header row")
            header = [column.strip() for column in header]
            unknown = [column for column in header if column not in spec.columns]
            missing = [column for column in ("date", *spec.required) if column not in header]
            if unknown or missing or len(set(header)) != len(header):
                raise ImportFailure(
                    f"{where}:1", f"wrong column set for imported_{table}: "
                    + "; ".join(part for part in (
                        f"missing {', '.join(missing)}" if missing else "",
                        f"unknown {', '.join(unknown)}" if unknown else "",
                        "a column repeated" if len(set(header)) != len(header) else "") if part)
                    + f" (expected date, {', '.join(spec.required)}; optional {', '.join(spec.optional) or 'none'})")
            position = {column: index for index, column in enumerate(header)}
            numbers = [column for column in header if column != "date" and column not in spec.text]
            for values in reader:
                line = reader.line_num
                if not values:
                    continue
                if len(values) != len(header):
                    raise ImportFailure(f"{where}:{line}", f"{len(values)} fields, the header has {len(header)}")
                yield _row(values, position, numbers, spec, f"{where}:{line}")
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise ImportFailure(where, f"truncated or corrupt archive member ({error})") from None
    except UnicodeDecodeError as error:
        raise ImportFailure(where, f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    except csv.Error as error:
        raise ImportFailure(where, f"malformed CSV ({error})") from None


def _row(values: list[str], position: dict[str, int], numbers: list[str], spec: TableSpec, where: str) -> Row:
    text = values[position["date"]].strip()
    try:
        day = day_number(date.fromisoformat(text))
    except ValueError:
        raise ImportFailure(where, f"date: not a date (YYYY-MM-DD): {text!r}") from None
    parsed: dict[str, int] = {}
    for column in numbers:
        raw = values[position[column]].strip()
        if column in _OPTIONAL_NUMBERS:  # not kept: empty, or any number ≥ 0
            if raw not in _EMPTY and not _DECIMAL.fullmatch(raw):
                raise ImportFailure(where, f"{column}: not a number ≥ 0: {raw!r}")
            continue
        if not raw.isdigit() or not raw.isascii() or len(raw) > 19:
            raise ImportFailure(where, f"{column}: not a whole number ≥ 0: {raw!r}")
        parsed[column] = int(raw)
    metrics = [parsed.get(spec.metrics[name], 0) if name in spec.metrics else 0 for name in METRICS]
    value = values[position[spec.dimension]] if spec.dimension else ""
    return day, value, metrics


def read_export(
    path: str, name: str, progress: Callable[[int], None] | None = None, under: str = ""
) -> tuple[dict[str, TableSummary], str]:
    """Check the whole export; returns a summary per table and the archive's SHA-256.
    Raises :class:`ImportFailure` (naming ``name/member:line``) on the first problem."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as error:
        raise ImportFailure(name, f"cannot read the file ({error.strerror})") from None
    summaries: dict[str, TableSummary] = {}
    with _open(path, name) as archive:
        for member, table in _members(archive, name, under):
            summary = summaries.setdefault(table, TableSummary())
            for day, _, _ in _rows(archive, member, table, f"{name}/{member}"):
                summary.rows += 1
                summary.days.add(day)
                if progress is not None:
                    progress(1)
    return summaries, digest.hexdigest()


def table_rows(path: str, name: str, under: str = "") -> Iterator[tuple[str, list[Row]]]:
    """``(table, rows)`` per table of an export already checked by :func:`read_export`."""
    with _open(path, name) as archive:
        members: dict[str, list[str]] = {}
        for member, table in _members(archive, name, under):
            members.setdefault(table, []).append(member)
        for table, names in members.items():  # one table in memory at a time
            yield table, [row for member in names for row in _rows(archive, member, table, f"{name}/{member}")]


class PlausibleImport:
    """Imports a checked export into a site's imported aggregates (see the module docstring)."""

    def __init__(self, *, store, records, imported) -> None:
        self._store = store
        self._records = records
        self._imported = imported

    def run(
        self, path: str, site, report, *, dry_run: bool, progress: Callable[[int, int], None] | None = None,
        under: str = "",
    ):
        """Fill ``report`` (an :class:`~appliance.imports.runner.ImportReport`) and import."""
        began = time.monotonic()
        seen = [0]

        def counted(number: int) -> None:
            seen[0] += number

        summaries, digest = read_export(path, report.file, counted, under)
        report.lines = sum(summary.rows for summary in summaries.values())
        all_days = set().union(*(summary.days for summary in summaries.values()))
        report.tables = {
            table: {"rows": summary.rows, "days": len(summary.days),
                    "first_day": _iso_day(min(summary.days)) if summary.days else "",
                    "last_day": _iso_day(max(summary.days)) if summary.days else ""}
            for table, summary in sorted(summaries.items())
        }
        if all_days:
            report.first_event, report.last_event = _iso_day(min(all_days)), _iso_day(max(all_days))
        key = f"{site.id:010d}/file/{digest}"
        if self._records.get(_RECORD_KIND, key) is not None:
            report.already_imported = True
        elif not dry_run:
            summary = msgspec.json.encode({"file": report.file, "kind": "plausible", "rows": report.lines,
                                           "at": time.time()})
            # A table at a time, parsed outside the write transaction (live commits wait only
            # for the puts). An interrupted run leaves whole tables of a checked export, and
            # running it again replaces them: the hash is recorded only at the end.
            for table, rows in table_rows(path, report.file, under):
                days = summaries[table].days
                self._store.write(lambda txn, table=table, rows=rows, days=days:
                                  self._imported.replace(txn, site.id, table, days, rows))
            self._store.write(lambda txn: self._records.put(txn, _RECORD_KIND, key, summary))
        if progress is not None:
            progress(report.lines, report.lines)
        report.seconds = round(time.monotonic() - began, 3)
        return report


def _iso_day(number: int) -> str:
    return day_from_number(number).isoformat()
