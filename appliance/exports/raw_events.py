"""The raw event export: a site's events of a period, filtered, streamed as NDJSON or CSV.

:meth:`RawEvents.stream` is a plain generator of byte chunks (a few hundred lines each) in
the interchange format (:mod:`appliance.events.interchange`), in event-log order. It holds
one local day of the site at a time — the day's column blocks, which the block cache holds
anyway — so memory stays flat however long the period; run it off the event loop (the API
hands it to a worker thread chunk by chunk).

Resuming: every line carries ``id``, its position in the event log; ``cursor=<id>`` starts
after that event, so an interrupted download resumes from the last complete line it got
(and ``limit`` pages through a period). Filters are the stats vocabulary's
(:mod:`appliance.filters`), applied one local day at a time: an event-level filter keeps
exactly the events a filtered report counts; a visit-level one sees the visits of each day.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date, timedelta

import numpy as np

from appliance.budget import unbounded
from appliance.errors import DomainError
from appliance.events.block_cache import ScanBlocks
from appliance.exports.event_lines import CSV_HEADER, Fragments, render
from appliance.filters import Filter
from appliance.models import Site
from appliance.periods import day_start_timestamp
from appliance.query.scans import Scans
from appliance.query.selection import Selection
from appliance.query.spec import Query
from storage.keys import unpack_event_key
from storage.strings import StringTable

FORMATS = {"ndjson": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}
CHUNK_LINES = 1000


def parse_cursor(site: Site, cursor: str | None) -> tuple[int, int] | None:
    """``(timestamp_ms, sequence)`` of a cursor (an event ``id`` of this site), or None."""
    if not cursor:
        return None
    try:
        raw = bytes.fromhex(cursor)
        site_id, timestamp_ms, sequence = unpack_event_key(raw)
    except Exception:  # noqa: BLE001 - any malformed token is the same answer
        raise DomainError("cursor", "not a cursor: pass the id of the last line you received") from None
    if len(raw) != 16 or site_id != site.id:
        raise DomainError("cursor", "not a cursor of this site's export")
    return timestamp_ms, sequence


def _unbounded(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Advance ``chunks`` outside any request's query time budget: an export is as long as its
    period, and each step is one bounded piece of work (a day's block, a few hundred lines)."""
    while True:
        with unbounded():
            chunk = next(chunks, None)
        if chunk is None:
            return
        yield chunk


class RawEvents:
    """Streams raw events; built from the query side's scans and the string table."""

    def __init__(self, scans: Scans, strings: StringTable) -> None:
        self._scans = scans
        self._columns = scans.columns
        self._strings = strings

    def stream(
        self,
        site: Site,
        date_from: date,
        date_to: date,
        *,
        filters: list[Filter] | None = None,
        fmt: str = "ndjson",
        cursor: str | None = None,
        limit: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> Iterator[bytes]:
        """Byte chunks of the export (see the module docstring). ``progress(days_done,
        days_total)`` is called after each local day. Checks its arguments before the first
        chunk (raises :class:`DomainError` naming the parameter)."""
        if fmt not in FORMATS:
            raise DomainError("format", f"must be one of {', '.join(FORMATS)}")
        if limit is not None and limit < 1:
            raise DomainError("limit", "must be at least 1")
        Query(site=site, date_from=date_from, date_to=date_to)  # checks the period
        after = parse_cursor(site, cursor)
        return _unbounded(self._chunks(site, date_from, date_to, filters or [], fmt, after, limit, progress))

    def _chunks(self, site, date_from, date_to, filters, fmt, after, limit, progress) -> Iterator[bytes]:
        csv = fmt == "csv"
        if csv:
            yield CSV_HEADER
        remaining = limit if limit is not None else -1
        total = (date_to - date_from).days + 1
        text = self._strings.text
        scan = ScanBlocks()  # a local day spans two UTC days' blocks, none kept in the shared cache
        for index in range(total):
            day = date_from + timedelta(days=index)
            end_ms = int(day_start_timestamp(day + timedelta(days=1), site.timezone) * 1000)
            if after is not None and end_ms <= after[0]:
                continue
            for block, rows, fragments in self._day(site, day, filters, after, csv, scan):
                if remaining >= 0:
                    rows = rows[:remaining]
                    remaining -= len(rows)
                yield render(block, rows, site.id, fragments, text, csv)
                if remaining == 0:
                    return
            if progress is not None:
                progress(index + 1, total)

    def _day(self, site: Site, day: date, filters: list[Filter], after, csv: bool, scan: ScanBlocks):
        """``(block, row numbers, fragments)`` chunks of the day's (matching) events."""
        start_ms = int(day_start_timestamp(day, site.timezone) * 1000)
        end_ms = int(day_start_timestamp(day + timedelta(days=1), site.timezone) * 1000)
        if filters:
            selection = Selection(self._scans, Query(site=site, date_from=day, date_to=day, filters=filters), filters)
            frame, mask = selection.frame, selection.rows
        else:
            frame = self._columns.frame(site.id, start_ms, end_ms, scan)
            mask = None
        offset = 0
        for block, lo, hi in frame.parts:
            rows = np.arange(lo, hi, dtype=np.int64)
            if mask is not None:
                rows = rows[mask[offset : offset + hi - lo]]
            offset += hi - lo
            if after is not None and len(rows):
                ts, seq = block.scalar("ts")[rows], block.scalar("seq")[rows].astype(np.int64)
                rows = rows[(ts > after[0]) | ((ts == after[0]) & (seq > after[1]))]
            fragments = Fragments(block, self._strings.text, csv)
            for first in range(0, len(rows), CHUNK_LINES):
                yield block, rows[first : first + CHUNK_LINES], fragments


__all__ = ["FORMATS", "RawEvents", "parse_cursor"]
