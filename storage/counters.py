"""Time-bucketed integer counters.

Writers gather deltas in a dict keyed by packed bucket keys and apply them in one transaction
in sorted key order (sequential page access). Readers scan a bucket range per metric, or a
day range through the week and month rollups (:mod:`storage.rollups`), which every write of a
rolled-up metric's day keeps equal to the sum of its days.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import numpy as np

from storage import rollups
from storage.keys import DAY, HOUR, MONTH, WEEK, bucket_prefix, pack_bucket_key, unpack_bucket_key
from storage.range_sums import RangeSums
from storage.retention import delete_prefix

_VALUE = struct.Struct(">q")
_ROLLUPS = (WEEK, MONTH)
_KEY_DTYPE = np.dtype(
    [("site", ">u4"), ("granularity", "u1"), ("metric", ">u2"), ("bucket", ">u4"), ("dimension", ">u4")]
)


def stored_metrics(txn, db, site: int, granularity: int) -> list[int]:
    """The metrics with any key under ``site`` and ``granularity`` in ``db`` (counters or
    sketches share the bucket-key layout): one cursor seek per metric found."""
    cursor = txn.cursor(db=db)
    found = []
    metric = 0
    while metric <= 0xFFFF and cursor.set_range(pack_bucket_key(site, granularity, metric, 0, 0)):
        key_site, key_granularity, metric, _, _ = unpack_bucket_key(cursor.key())
        if (key_site, key_granularity) != (site, granularity):
            break
        found.append(metric)
        metric += 1
    return found


class Counters:
    def __init__(
        self, store, rolled_up: frozenset[int] = frozenset(), sums: RangeSums | None = None,
        sealed: rollups.Sealed | None = None,
    ) -> None:
        """``rolled_up``: the metrics whose day counters are also kept per week and month;
        ``sums``: kept sums of closed day ranges (:mod:`storage.range_sums`), or None;
        ``sealed``: which periods have their rollups kept (:class:`storage.rollups.Sealed`;
        None: every period)."""
        self._db = store.db(b"counters")
        self.rolled_up = rolled_up
        self.sums = sums
        self.sealed = sealed

    def sealed_through(self, txn, site: int) -> int | None:
        """The site's sealed-through day as ``txn`` sees it (None: every period kept)."""
        return self.sealed.through(txn, site) if self.sealed is not None else None

    def _plan(self, txn, site: int, first_day: int, last_day: int, rolled: bool):
        if not rolled:
            return rollups.day_plan(first_day, last_day)
        return rollups.plan(first_day, last_day, self.sealed_through(txn, site))

    def apply(self, txn, deltas: dict[bytes, int]) -> None:
        """Add each delta to its counter (keys from :func:`storage.keys.pack_bucket_key`),
        and a rolled-up metric's day deltas to its week and month."""
        if self.rolled_up:
            days: set[tuple[int, int]] = set()
            deltas = self._with_rollups(txn, deltas, days)
            if self.sums is not None:
                for site in {site for site, _ in days}:
                    self.sums.bump(txn, site, [day for day_site, day in days if day_site == site])
        self._apply(txn, deltas)

    def _with_rollups(self, txn, deltas: dict[bytes, int], days: set[tuple[int, int]]) -> dict[bytes, int]:
        """The deltas with their sealed weeks' and months'; ``days`` gets each (site, day)
        changed."""
        rolled_up = self.rolled_up
        out = dict(deltas)
        sealed: dict[int, int | None] = {}
        for key, delta in deltas.items():
            site, granularity, metric, bucket, dimension = unpack_bucket_key(key)
            if granularity != DAY or metric not in rolled_up or not delta:
                continue
            days.add((site, bucket))
            if site not in sealed:
                sealed[site] = self.sealed_through(txn, site)
            for period, start, _, _ in rollups.periods_of(bucket, sealed[site]):
                rollup = pack_bucket_key(site, period, metric, start, dimension)
                out[rollup] = out.get(rollup, 0) + delta
        return out

    def _apply(self, txn, deltas: dict[bytes, int]) -> None:
        db = self._db
        cursor = txn.cursor(db=db)
        for key in sorted(deltas):
            delta = deltas[key]
            if not delta:
                continue
            current = cursor.get(key)
            value = _VALUE.unpack(current)[0] + delta if current is not None else delta
            if not value and key[4] in _ROLLUPS and current is not None:
                cursor.delete()  # a rollup holds no zeros: it stays what rebuilding it gives
                continue
            cursor.put(key, _VALUE.pack(value))

    def scan(
        self, txn, site: int, granularity: int, metric: int, first_bucket: int, last_bucket: int
    ) -> Iterator[tuple[int, int, int]]:
        """Yield ``(bucket, dimension, value)`` for buckets in ``[first_bucket, last_bucket]``."""
        prefix = bucket_prefix(site, granularity, metric)
        start = pack_bucket_key(site, granularity, metric, first_bucket, 0)
        cursor = txn.cursor(db=self._db)
        if not cursor.set_range(start):
            return
        unpack_value = _VALUE.unpack
        for key, value in cursor:
            if key[:7] != prefix:
                return
            _, _, _, bucket, dimension = unpack_bucket_key(key)
            if bucket > last_bucket:
                return
            yield bucket, dimension, unpack_value(value)[0]

    def scan_days(
        self, txn, site: int, metric: int, first_day: int, last_day: int, use_rollups: bool = True
    ) -> Iterator[tuple[int, int]]:
        """Yield ``(dimension, value)`` over the day range — a dimension once per piece of
        the plan, so callers sum — through the rollups when the metric has them."""
        pieces = self._plan(txn, site, first_day, last_day, use_rollups and metric in self.rolled_up)
        for granularity, first, last in pieces:
            for _, dimension, value in self.scan(txn, site, granularity, metric, first, last):
                yield dimension, value

    def sum_days(
        self, txn, site: int, metric: int, first_day: int, last_day: int, use_rollups: bool = True
    ) -> dict[int, int]:
        """``{dimension: total}`` over the day range (as summing :meth:`scan_days`), with the
        keys gathered by the cursor and decoded and summed by numpy in one go."""
        rolled = use_rollups and metric in self.rolled_up
        sums = self.sums
        if sums is None or not rolled or last_day <= first_day:
            return _as_dict(*self._sum_arrays(txn, site, metric, first_day, last_day, rolled))
        kept = self._kept(txn, site, metric, first_day, last_day - 1)
        last = self._sum_arrays(txn, site, metric, last_day, last_day, rolled)
        if not len(last[0]):
            return _as_dict(*kept)
        if not len(kept[0]):
            return _as_dict(*last)
        return _as_dict(*_reduce(np.concatenate((kept[0], last[0])), np.concatenate((kept[1], last[1]))))

    def _kept(self, txn, site: int, metric: int, first_day: int, last_day: int) -> tuple[np.ndarray, np.ndarray]:
        """The (dimensions, totals) of a closed day range (a range's days before its last never
        change but by a write that bumps their generation): kept under the generations this
        transaction sees, summed through the rollups when not kept."""
        sums = self.sums
        closed = (site, metric, first_day, last_day)
        token = sums.token(txn, site, first_day, last_day)
        kept = sums.get(closed, token)
        if kept is None:
            kept = self._sum_arrays(txn, site, metric, first_day, last_day, True)
            for array in kept:
                array.flags.writeable = False
            sums.put(closed, token, kept, kept[0].nbytes + kept[1].nbytes)
        return kept

    def _sum_arrays(
        self, txn, site: int, metric: int, first_day: int, last_day: int, rolled: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """(dimensions, totals) over the day range, read through the rollups if ``rolled``."""
        pieces = self._plan(txn, site, first_day, last_day, rolled)
        keys: list[bytes] = []
        values: list[bytes] = []
        add_key, add_value = keys.append, values.append  # today's pages: ~2,000 keys a read
        cursor = txn.cursor(db=self._db)
        for granularity, first, last in pieces:
            end = pack_bucket_key(site, granularity, metric, last, 0xFFFFFFFF)
            if not cursor.set_range(pack_bucket_key(site, granularity, metric, first, 0)):
                continue
            for key, value in cursor.iternext():
                if key > end:
                    break
                add_key(key)
                add_value(value)
        if not keys:
            return _NO_DIMENSIONS, _NO_TOTALS
        dimensions = np.frombuffer(b"".join(keys), dtype=_KEY_DTYPE)["dimension"]
        amounts = np.frombuffer(b"".join(values), dtype=">i8").astype(np.int64)
        if len(pieces) == 1 and pieces[0][1] == pieces[0][2]:
            # One bucket (a single day: today's widgets): its keys hold each dimension once,
            # in order, so they are already what summing gives (np.unique's sort, skipped).
            return dimensions.copy(), amounts
        return _reduce(dimensions, amounts)

    def sum_days_of(
        self, txn, site: int, metric: int, first_day: int, last_day: int, dimensions, use_rollups: bool = True
    ) -> dict[int, int]:
        """``{dimension: total}`` over the day range for the given dimensions only (those with
        a total), as :meth:`sum_days` answers them: one point read per bucket of the plan and
        dimension, so a breakdown's few shown values do not cost a scan of every value; with
        kept sums, the closed days' totals are looked up in the kept arrays, the last day read."""
        rolled = use_rollups and metric in self.rolled_up
        if self.sums is not None and rolled and last_day > first_day:
            found, kept = self._kept(txn, site, metric, first_day, last_day - 1)
            out = self.sum_days_of(txn, site, metric, last_day, last_day, dimensions, False)
            if len(found):
                wanted = np.array(sorted(dimensions), dtype=np.int64)
                at = np.searchsorted(found, wanted).clip(0, len(found) - 1)
                hit = found[at] == wanted
                for dimension, total in zip(wanted[hit].tolist(), kept[at[hit]].tolist(), strict=True):
                    out[dimension] = out.get(dimension, 0) + total
            return {dimension: total for dimension, total in out.items() if total}
        pieces = self._plan(txn, site, first_day, last_day, rolled)
        wanted = sorted(dimensions)
        totals = dict.fromkeys(wanted, 0)
        get = txn.get
        db = self._db
        unpack_value = _VALUE.unpack
        for granularity, first, last in pieces:
            for bucket in rollups.buckets_of_run(granularity, first, last):
                for dimension in wanted:
                    value = get(pack_bucket_key(site, granularity, metric, bucket, dimension), db=db)
                    if value is not None:
                        totals[dimension] += unpack_value(value)[0]
        return {dimension: total for dimension, total in totals.items() if total}

    def replace_bucket(self, txn, site: int, granularity: int, metric: int, bucket: int, values: dict[int, int]) -> bool:
        """Set one bucket's counters to ``{dimension: value}`` exactly: counters absent from
        ``values`` (or zero) are deleted; a rolled-up day passes the difference on to its
        week and month. Returns whether anything changed."""
        old = self._replace(txn, site, granularity, metric, bucket, values)
        if old is None:
            return False
        if self.sums is not None and metric in self.rolled_up:
            if granularity == DAY:
                self.sums.bump(txn, site, (bucket,))
            elif granularity != HOUR:
                self.sums.bump_epoch(txn, site)
        if granularity == DAY and metric in self.rolled_up:
            difference = {dimension: -value for dimension, value in old.items()}
            for dimension, value in values.items():
                difference[dimension] = difference.get(dimension, 0) + value
            deltas = {}
            for period, start, _, _ in rollups.periods_of(bucket, self.sealed_through(txn, site)):
                for dimension, delta in difference.items():
                    if delta:
                        deltas[pack_bucket_key(site, period, metric, start, dimension)] = delta
            self._apply(txn, deltas)
        return True

    def rebuild_rollups(self, txn, site: int, first_day: int, last_day: int) -> int:
        """Set every week and month overlapping the day range to the sum of its days (after
        days were deleted, or for a store written before rollups); returns buckets changed."""
        if self.sums is not None:  # days were deleted, or rollups written: every kept sum goes
            self.sums.bump_epoch(txn, site)
        return self.rebuild_periods(txn, site, rollups.periods_between(first_day, last_day))

    def rebuild_periods(self, txn, site: int, periods: list[tuple[int, int]]) -> int:
        """Set each ``(granularity, bucket)`` week or month to the sum of its days (a period
        being sealed: its figures are the days' already, so no kept sum changes); returns
        buckets changed."""
        return sum(
            self.write_periods(txn, site, metric, self.period_totals(txn, site, metric, periods))
            for metric in sorted(self.rolled_up)
        )

    def period_totals(self, txn, site: int, metric: int, periods: list[tuple[int, int]]) -> list:
        """``[((granularity, bucket), {dimension: total of its days})]`` of one metric."""
        out = []
        for granularity, start in periods:
            first, last = rollups.period_span(granularity, start)
            totals: dict[int, int] = {}
            for _, dimension, value in self.scan(txn, site, DAY, metric, first, last):
                totals[dimension] = totals.get(dimension, 0) + value
            out.append(((granularity, start), totals))
        return out

    def write_periods(self, txn, site: int, metric: int, built: list) -> int:
        """Store :meth:`period_totals`' figures; returns buckets changed."""
        return sum(
            self._replace(txn, site, granularity, metric, start, totals) is not None
            for (granularity, start), totals in built
        )

    def day_span(self, txn, site: int) -> tuple[int, int] | None:
        """The first and last day bucket any rolled-up metric of ``site`` has, or None."""
        span = None
        cursor = txn.cursor(db=self._db)
        for metric in sorted(self.rolled_up):
            if not cursor.set_range(pack_bucket_key(site, DAY, metric, 0, 0)) or cursor.key()[:7] != bucket_prefix(
                site, DAY, metric
            ):
                continue
            first = unpack_bucket_key(cursor.key())[3]
            if cursor.set_range(pack_bucket_key(site, DAY, metric + 1, 0, 0)):
                cursor.prev()
            else:
                cursor.last()
            last = unpack_bucket_key(cursor.key())[3]
            span = (first, last) if span is None else (min(span[0], first), max(span[1], last))
        return span

    def _replace(self, txn, site: int, granularity: int, metric: int, bucket: int, values: dict[int, int]):
        """Set one bucket exactly; returns its old ``{dimension: value}``, or None if no figure
        changed (stored zeros, which deltas that cancel leave behind, are deleted either way)."""
        cursor = txn.cursor(db=self._db)
        old: dict[int, int] = {}
        start = pack_bucket_key(site, granularity, metric, bucket, 0)
        prefix = start[:11]
        if cursor.set_range(start):
            for key, value in cursor:
                if key[:11] != prefix:
                    break
                old[unpack_bucket_key(key)[4]] = _VALUE.unpack(value)[0]
        new = {dimension: value for dimension, value in values.items() if value}
        if new == old:
            return None
        for dimension in old.keys() - new.keys():
            txn.delete(pack_bucket_key(site, granularity, metric, bucket, dimension), db=self._db)
        for dimension in sorted(new):
            if old.get(dimension) != new[dimension]:
                cursor.put(pack_bucket_key(site, granularity, metric, bucket, dimension), _VALUE.pack(new[dimension]))
        return None if new == {dimension: value for dimension, value in old.items() if value} else old

    def metrics(self, txn, site: int, granularity: int) -> list[int]:
        """The metrics the site has counters of, at one granularity."""
        return stored_metrics(txn, self._db, site, granularity)

    def get(self, txn, key: bytes) -> int:
        value = txn.get(key, db=self._db)
        return _VALUE.unpack(value)[0] if value is not None else 0

    def delete_site(self, txn, site: int) -> int:
        if self.sums is not None:
            self.sums.delete_site(txn, site)
        if self.sealed is not None:  # (the site's rollups go with its keys)
            self.sealed.forget(txn, site)
        return delete_prefix(txn, self._db, struct.pack(">I", site))


_NO_DIMENSIONS = np.zeros(0, np.uint32)
_NO_TOTALS = np.zeros(0, np.int64)


def _reduce(dimensions: np.ndarray, amounts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(each dimension once, its summed amount)."""
    found, where = np.unique(dimensions, return_inverse=True)
    totals = np.zeros(len(found), np.int64)
    np.add.at(totals, where, amounts)
    return found, totals


def _as_dict(dimensions: np.ndarray, totals: np.ndarray) -> dict[int, int]:
    return dict(zip(dimensions.tolist(), totals.tolist(), strict=True))

