"""The ``footfall`` import kind: Footfall's own raw event export, NDJSON or CSV, read back.

Lines are the interchange format (:mod:`appliance.events.interchange`), version 1. NDJSON is
recognised by its first non-blank byte ``{``; otherwise the first line must be the CSV header
with exactly the format's columns. The events were enriched and given their pseudonymous
visitor ids where they were first counted, so they are stored as they are (no bot filter,
enrichment or new visitor id: running those again could only change them) and counted by the
same commit and aggregation step as live traffic — visits, counters, sketches, goals — which
is what makes a round trip reproduce every report.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator

from appliance.events.interchange import (
    COLUMNS,
    InterchangeError,
    check_line,
    decode_ndjson,
    event_of,
    line_of_csv,
)
from appliance.imports.hits import Parsed
from appliance.imports.sources import ImportFailure, SourceLine


class FootfallReader:
    kind = "footfall"

    def parse(self, lines: Iterator[SourceLine], site_id: int) -> Iterator[tuple[SourceLine, Parsed]]:
        return self._parse(lines, site_id, build=True)

    def check(self, lines: Iterator[SourceLine], site_id: int) -> Iterator[tuple[SourceLine, Parsed]]:
        """As :meth:`parse`, but an NDJSON line's event is only checked, not built (``None``):
        the importer's validation pass needs the failures and the count only."""
        return self._parse(lines, site_id, build=False)

    def _parse(self, lines: Iterator[SourceLine], site_id: int, build: bool) -> Iterator[tuple[SourceLine, Parsed]]:
        for first in lines:
            if not first.data.strip():
                yield first, None
                continue
            if first.data.lstrip().startswith(b"{"):
                yield from self._ndjson(first, lines, site_id, build)
            else:
                yield from self._csv(first, lines, site_id)
            return

    def _ndjson(self, first: SourceLine, lines: Iterator[SourceLine], site_id: int, build: bool):
        for line in _chain(first, lines):
            if not line.data.strip():
                yield line, None
                continue
            try:
                if build:
                    yield line, event_of(decode_ndjson(line.data), site_id)
                else:
                    check_line(decode_ndjson(line.data))
                    yield line, None
            except InterchangeError as error:
                raise ImportFailure(line.where, f"not a Footfall export line: {error}") from None

    def _csv(self, header: SourceLine, lines: Iterator[SourceLine], site_id: int):
        try:
            names = next(csv.reader([header.data.decode("utf-8-sig")]))
        except (UnicodeDecodeError, csv.Error) as error:
            raise ImportFailure(header.where, f"not a CSV header: {error}") from None
        missing = [name for name in COLUMNS if name not in names]
        unexpected = [name for name in names if name not in COLUMNS]
        if missing or unexpected:
            problems = []
            if missing:
                problems.append(f"missing {', '.join(missing)}")
            if unexpected:
                problems.append(f"unexpected {', '.join(unexpected[:10])}")
            raise ImportFailure(header.where, "wrong column set for a Footfall CSV export: " + "; ".join(problems))
        yield header, None
        current = [header]

        def text() -> Iterator[str]:
            for line in lines:
                current[0] = line
                try:
                    yield line.data.decode("utf-8") + "\n"
                except UnicodeDecodeError:
                    raise ImportFailure(line.where, "not UTF-8") from None

        reader = csv.DictReader(text(), fieldnames=names, strict=True)
        try:
            for row in reader:
                line = current[0]
                if None in row or any(value is None for value in row.values()):
                    raise ImportFailure(line.where, f"expected {len(names)} cells")
                try:
                    yield line, event_of(line_of_csv(row), site_id)
                except InterchangeError as error:
                    raise ImportFailure(line.where, f"not a Footfall export row: {error}") from None
        except csv.Error as error:
            raise ImportFailure(current[0].where, f"malformed CSV: {error}") from None


def _chain(first: SourceLine, rest: Iterator[SourceLine]) -> Iterator[SourceLine]:
    yield first
    yield from rest
