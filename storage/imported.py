"""Imported daily aggregates: figures another tool counted, kept apart from native counters.

An import from a tool that exports only daily tables (Plausible's CSV export) cannot go through
the event pipeline: there are no events. Its rows are kept here, in the ``imported`` database,
one per site, local day, table and dimension value:

``site u32 | table u8 | day u32 | value (UTF-8)`` → eight ``u64`` metrics (:data:`METRICS`).

Table 0 is not a table: ``site u32 | 0`` holds the site's imported day range (first and last
day number), written with every change. A reader checks that one key first, so a site without
imported data costs one lookup and nothing else. Each table also has month rows (its id +
128, the bucket the day number of the month's 1st): the sums of its day rows, rewritten for
the months a write touches, so a long range is read a month at a time.

:meth:`ImportedAggregates.replace` swaps a table's rows for a set of days in one transaction:
importing the same rows twice leaves the same rows.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from storage.rollups import month_last, month_of

#: the record kind of an import's summary (``site/file/sha256``): a standby that sees a new one
#: copies the site's rows (:mod:`appliance.operations.following`)
IMPORT_RECORD_KIND = "imported"

# The tables, by their stored id (part of the on-disk format: only append).
TABLES: dict[str, int] = {
    "visitors": 1,
    "sources": 2,
    "pages": 3,
    "entry_pages": 4,
    "exit_pages": 5,
    "locations": 6,
    "devices": 7,
    "browsers": 8,
    "operating_systems": 9,
    "custom_events": 10,
}
METRICS = ("visitors", "visits", "pageviews", "bounces", "visit_duration", "events", "entrances", "exits")
_VALUES = struct.Struct(f">{len(METRICS)}Q")
_PREFIX = struct.Struct(">IBI")
_SITE = struct.Struct(">I")
_RANGE = struct.Struct(">II")
_RANGE_TABLE = 0
_MONTHS = 128  # added to a table id: its month rows


def _range_key(site: int) -> bytes:
    return _SITE.pack(site) + bytes([_RANGE_TABLE])


class ImportedAggregates:
    def __init__(self, store) -> None:
        self._store = store
        self._db = store.db(b"imported")

    # -- reads ------------------------------------------------------------------------------
    def read(self):
        """A read transaction of the store."""
        return self._store.read()

    def day_range(self, txn, site: int) -> tuple[int, int] | None:
        """The first and last imported day of ``site`` (day numbers), or ``None``."""
        raw = txn.get(_range_key(site), db=self._db)
        return _RANGE.unpack(raw) if raw is not None else None

    def rows(self, txn, site: int, table: str, first: int, last: int) -> Iterable[tuple[int, str, tuple[int, ...]]]:
        """``(day, value, metrics)`` of one table over ``first..last`` (day numbers), in order."""
        return self._scan(txn, site, TABLES[table], first, last)

    def _scan(self, txn, site: int, table_id: int, first: int, last: int) -> Iterable[tuple[int, str, tuple[int, ...]]]:
        start = _PREFIX.pack(site, table_id, first)
        end = _PREFIX.pack(site, table_id, last + 1)
        cursor = txn.cursor(db=self._db)
        if not cursor.set_range(start):
            return
        for key, value in cursor:
            if key >= end:
                break
            _, _, day = _PREFIX.unpack(key[: _PREFIX.size])
            yield day, bytes(key[_PREFIX.size :]).decode(), _VALUES.unpack(value)

    def sums(self, txn, site: int, table: str, first: int, last: int) -> dict[str, list[int]]:
        """Metrics of one table summed per value over the days (whole months from month rows)."""
        out: dict[str, list[int]] = {}
        for _, value, metrics in self._planned(txn, site, TABLES[table], first, last):
            total = out.get(value)
            if total is None:
                out[value] = list(metrics)
            else:
                for index, number in enumerate(metrics):
                    total[index] += number
        return out

    def _planned(self, txn, site: int, table_id: int, first: int, last: int) -> Iterable[tuple[int, str, tuple[int, ...]]]:
        """The rows covering ``first..last``: month rows for whole months, day rows between."""
        run_start = first  # the first day of a pending run of day rows
        day = first
        while day <= last:
            month = month_of(day)
            month_end = month_last(month)
            if month == day and month_end <= last:
                if run_start < day:
                    yield from self._scan(txn, site, table_id, run_start, day - 1)
                yield from self._scan(txn, site, table_id + _MONTHS, day, day)
                run_start = month_end + 1
            day = month_end + 1  # the next month's 1st (the days up to it stay in the run)
        if run_start <= last:
            yield from self._scan(txn, site, table_id, run_start, last)

    def days(self, txn, site: int, table: str, first: int, last: int) -> dict[int, list[int]]:
        """Metrics of one table summed per day (over its values)."""
        out: dict[int, list[int]] = {}
        for day, _, metrics in self.rows(txn, site, table, first, last):
            total = out.setdefault(day, [0] * len(METRICS))
            for index, number in enumerate(metrics):
                total[index] += number
        return out

    def items(self, txn, site: int) -> Iterable[tuple[str, int, str, tuple[int, ...]]]:
        """Every row of ``site`` as ``(table, day, value, metrics)`` (for site archives)."""
        names = {number: name for name, number in TABLES.items()}  # month rows are left out
        prefix = _SITE.pack(site)
        cursor = txn.cursor(db=self._db)
        if not cursor.set_range(prefix + bytes([1])):
            return
        for key, value in cursor:
            if not key.startswith(prefix):
                break
            _, table_id, day = _PREFIX.unpack(key[: _PREFIX.size])
            if table_id not in names:
                continue
            yield names[table_id], day, bytes(key[_PREFIX.size :]).decode(), _VALUES.unpack(value)

    def site_rows(self, site: int) -> list[tuple[str, int, str, tuple[int, ...]]]:
        """Every row of ``site`` (:meth:`items`) read in one transaction: a standby's copy."""
        with self._store.read() as txn:
            return list(self.items(txn, site))

    # -- writes -----------------------------------------------------------------------------
    def replace(
        self, txn, site: int, table: str, days: set[int], rows: Iterable[tuple[int, str, Iterable[int]]]
    ) -> int:
        """Drop ``table``'s rows on ``days``, then store ``rows`` (``(day, value, metrics)``;
        metrics in :data:`METRICS` order, equal values summed); returns rows written."""
        table_id = TABLES[table]
        for day in days:
            start = _PREFIX.pack(site, table_id, day)
            cursor = txn.cursor(db=self._db)
            while cursor.set_range(start) and bytes(cursor.key()).startswith(start):
                cursor.delete()
        merged: dict[bytes, list[int]] = {}
        for day, value, metrics in rows:
            key = _PREFIX.pack(site, table_id, day) + value.encode()
            numbers = list(metrics)
            if key in merged:
                merged[key] = [a + b for a, b in zip(merged[key], numbers, strict=True)]
            else:
                merged[key] = numbers
        for key, numbers in merged.items():
            txn.put(key, _VALUES.pack(*numbers), db=self._db)
        for month in {month_of(day) for day in days}:
            self._month(txn, site, table_id, month)
        if days:
            known = self.day_range(txn, site)
            first, last = min(days), max(days)
            if known is not None:
                first, last = min(first, known[0]), max(last, known[1])
            txn.put(_range_key(site), _RANGE.pack(first, last), db=self._db)
        return len(merged)

    def _month(self, txn, site: int, table_id: int, month: int) -> None:
        """Rewrite a month's rows of a table: the sums of its day rows."""
        start = _PREFIX.pack(site, table_id + _MONTHS, month)
        cursor = txn.cursor(db=self._db)
        while cursor.set_range(start) and bytes(cursor.key()).startswith(start):
            cursor.delete()
        sums: dict[str, list[int]] = {}
        for _, value, metrics in self._scan(txn, site, table_id, month, month_last(month)):
            total = sums.get(value)
            if total is None:
                sums[value] = list(metrics)
            else:
                for index, number in enumerate(metrics):
                    total[index] += number
        for value, numbers in sums.items():
            txn.put(start + value.encode(), _VALUES.pack(*numbers), db=self._db)

    def delete_before(self, txn, site: int, first_day: int) -> int:
        """Delete ``site``'s day rows before ``first_day`` (a retention cut), rewrite the month
        rows of the month holding it, drop month rows of months that end before it, and move the
        day range up; returns how many day rows went."""
        known = self.day_range(txn, site)
        if known is None or known[0] >= first_day:
            return 0
        removed = 0
        for table_id in TABLES.values():
            for kind, stop in ((table_id, first_day), (table_id + _MONTHS, month_of(first_day))):
                start = _PREFIX.pack(site, kind, 0)
                end = _PREFIX.pack(site, kind, stop)
                cursor = txn.cursor(db=self._db)
                while cursor.set_range(start) and bytes(cursor.key()) < end:
                    cursor.delete()
                    removed += kind == table_id
            self._month(txn, site, table_id, month_of(first_day))
        if known[1] < first_day:
            txn.delete(_range_key(site), db=self._db)
        else:
            txn.put(_range_key(site), _RANGE.pack(first_day, known[1]), db=self._db)
        return removed

    def replace_site(self, txn, site: int, rows: Iterable[tuple[str, int, str, Iterable[int]]]) -> int:
        """Make ``site``'s rows exactly ``rows`` (``(table, day, value, metrics)``, as
        :meth:`items` yields them); returns rows written."""
        self.delete_site(txn, site)
        by_table: dict[str, list[tuple[int, str, Iterable[int]]]] = {}
        for table, day, value, metrics in rows:
            by_table.setdefault(table, []).append((day, value, metrics))
        return sum(
            self.replace(txn, site, table, {day for day, _, _ in table_rows}, table_rows)
            for table, table_rows in by_table.items()
        )

    def delete_site(self, txn, site: int) -> None:
        prefix = _SITE.pack(site)
        cursor = txn.cursor(db=self._db)
        while cursor.set_range(prefix) and bytes(cursor.key()).startswith(prefix):
            cursor.delete()
