"""Imported daily aggregates in LMDB: a range summed through month rows equals the sum of its
day rows, for any range; replacing days rewrites their months; a site's rows go with it."""

from __future__ import annotations

import random
from datetime import date

from storage.imported import METRICS, ImportedAggregates

FIRST = (date(2024, 1, 1) - date(1970, 1, 1)).days  # 2024-01-01 as a day number
DAYS = 100  # into April


def _fill(aggregates: ImportedAggregates, store, rng: random.Random, site: int = 1) -> None:
    rows = [(day, f"/p{rng.randrange(12)}", [rng.randrange(50) for _ in METRICS])
            for day in range(FIRST, FIRST + DAYS) for _ in range(rng.randrange(1, 6))]
    store.write(lambda txn: aggregates.replace(txn, site, "pages", set(range(FIRST, FIRST + DAYS)), rows))


def _by_days(aggregates, txn, first: int, last: int) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for _, value, metrics in aggregates.rows(txn, 1, "pages", first, last):
        total = out.setdefault(value, [0] * len(METRICS))
        for index, number in enumerate(metrics):
            total[index] += number
    return out


def test_sums_through_month_rows_equal_day_sums_for_any_range(store):
    aggregates = ImportedAggregates(store)
    rng = random.Random(7)
    _fill(aggregates, store, rng)
    with store.read() as txn:
        assert aggregates.day_range(txn, 1) == (FIRST, FIRST + DAYS - 1)
        for _ in range(200):
            first = FIRST - 5 + rng.randrange(DAYS + 10)
            last = first + rng.randrange(DAYS + 10)
            assert aggregates.sums(txn, 1, "pages", first, last) == _by_days(aggregates, txn, first, last), (first, last)
        whole = aggregates.sums(txn, 1, "pages", FIRST, FIRST + 30)  # January: its month rows
        assert whole == _by_days(aggregates, txn, FIRST, FIRST + 30)


def test_replacing_days_rewrites_their_months_and_deleting_the_site_empties_it(store):
    aggregates = ImportedAggregates(store)
    _fill(aggregates, store, random.Random(3))
    february = FIRST + 31
    store.write(lambda txn: aggregates.replace(txn, 1, "pages", {february + 3}, [(february + 3, "/new", [1] * len(METRICS))]))
    with store.read() as txn:
        month = aggregates.sums(txn, 1, "pages", february, february + 28)
        assert month == _by_days(aggregates, txn, february, february + 28)
        assert month["/new"] == [1] * len(METRICS)
        assert len(list(aggregates.items(txn, 1))) == sum(1 for _ in aggregates.rows(txn, 1, "pages", 0, 10**6))
    store.write(lambda txn: aggregates.delete_site(txn, 1))
    with store.read() as txn:
        assert aggregates.day_range(txn, 1) is None and list(aggregates.items(txn, 1)) == []
