"""Counter deltas and sketch members of a batch, column-wise: numpy group-bys, not per-event dicts.

:func:`aggregate_columns` gives exactly what the per-event loop of
:func:`appliance.ingest.aggregation.aggregate` gives (``tests/appliance/test_ingest_fast_paths.py``
compares them on generated batches), for batches large enough that a few dozen numpy calls
cost less than the per-event dict work:

1. One ``attrgetter`` call per event for its breakdown texts (a non-page-view event's row holds
   its name, revenue text or engagement path instead), flattened into one list in the order the
   per-event loop meets them (event by event; within an event, dimension by dimension).
2. The distinct texts of that list (``dict.fromkeys``: first occurrence order) interned once
   each, in that order, so a text new to the string table gets the id the loop would give it;
   every text replaced by its *dense code* (its rank among the batch's distinct texts).
3. Every counter increment of the batch is a row, every sketch addition a row with a visitor,
   each row's key one integer: (granularity and metric, site, bucket, text code) in a space
   the size of the batch's variety. Counters: ``np.bincount`` over the keys (the amounts as
   weights). Sketch members: (key, visitor) pairs marked in a bitmap, so each pair is kept
   once. Only then one Python tuple per *distinct* key.

A batch whose key space is too large for the bincount and the bitmap (a batch spread over
years, thousands of sites) is grouped by sorting instead (``np.unique``). Returns ``False``
(and writes nothing) for the rare batch it does not take: amounts beyond ``int64``'s safe
range or buckets that cannot be packed into a storage key; the caller counts those event by
event.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable

import numpy as np

from appliance import dimensions as dims
from appliance.models import Event, EventKind
from appliance.periods import utc_offset_seconds
from storage.keys import DAY, HOUR

# The dimensions a page view is counted under, in the per-event loop's order.
_DIMENSIONS = tuple(
    (field, counter, sketch, name in dims.COUNT_EMPTY) for name, (field, counter, sketch) in dims.DIMENSIONS.items()
)
_WIDTH = len(_DIMENSIONS)
_TEXTS = operator.attrgetter(*(field for field, _, _, _ in _DIMENSIONS))
_SCALARS = operator.attrgetter("kind", "site_id", "timestamp", "visitor_id")
_COUNT_EMPTY = np.array([count_empty for _, _, _, count_empty in _DIMENSIONS])
_NOTHING = (None,) * _WIDTH
_HEAD = operator.itemgetter(0, 1, 2)  # (site, day, metric) of a visit delta's key
_FOURTH = operator.itemgetter(3)  # its entry values
_LIMIT = 1 << 62  # the sums of a batch's amounts stay far from int64's end
_DENSE = 1 << 24  # key spaces up to this size are grouped by bincount / bitmap, larger ones by sorting
_EMPTY = -2  # code of "" where it is not counted (an empty UTM tag, screen, ...)
_PAGEVIEW, _CUSTOM, _CONVERSION, _ENGAGEMENT = (
    int(EventKind.PAGEVIEW), int(EventKind.CUSTOM), int(EventKind.CONVERSION), int(EventKind.ENGAGEMENT)
)

# Metrics by granularity, numbered: the first part of a row's key.
_METRICS: list[tuple[int, int]] = [
    (HOUR, dims.EVENTS_TOTAL), (DAY, dims.EVENTS_TOTAL), (HOUR, dims.PAGEVIEWS), (DAY, dims.PAGEVIEWS),
    (DAY, dims.ENGAGEMENTS), (DAY, dims.ENGAGED_MS), (DAY, dims.SCROLL_DEPTH),
    (HOUR, dims.CUSTOM_EVENTS), (DAY, dims.CUSTOM_EVENTS), (HOUR, dims.CONVERSIONS), (DAY, dims.CONVERSIONS),
    (DAY, dims.REVENUE), (HOUR, dims.VISITORS), (DAY, dims.VISITORS), (DAY, dims.EVENT_VISITORS),
    (DAY, dims.CONVERSION_VISITORS),
    *((DAY, counter) for _, counter, _, _ in _DIMENSIONS),
    *((DAY, sketch) for _, _, sketch, _ in _DIMENSIONS),
]
_SLOT = {metric: slot for slot, metric in enumerate(_METRICS)}
_GRANULARITIES = np.array([granularity for granularity, _ in _METRICS], dtype=np.int64)
_METRIC_IDS = np.array([metric for _, metric in _METRICS], dtype=np.int64)
_COUNTER_SLOTS = np.array([_SLOT[DAY, counter] for _, counter, _, _ in _DIMENSIONS], dtype=np.int64)
_SKETCH_SLOTS = np.array([_SLOT[DAY, sketch] for _, _, sketch, _ in _DIMENSIONS], dtype=np.int64)


def day_buckets(sites: np.ndarray, stamps: np.ndarray, hours: np.ndarray, site_timezones: dict[int, str]) -> np.ndarray:
    """Day buckets in each site's time zone, as :func:`appliance.periods.day_bucket` gives them."""
    days = np.floor_divide(stamps, 86400.0)
    for site in np.unique(sites).tolist():
        timezone = site_timezones.get(site, "UTC")
        if timezone == "UTC":
            continue
        mask = sites == site
        distinct, inverse = np.unique(hours[mask], return_inverse=True)
        offsets = np.array([utc_offset_seconds(timezone, hour) for hour in distinct.tolist()], dtype=np.int64)
        days[mask] = np.floor_divide(stamps[mask] + offsets[inverse], 86400.0)
    return days.astype(np.int64)


def _other_row(event: Event) -> tuple:
    """What a non-page-view event interns, in the loop's order, in a row of ``_WIDTH``."""
    if event.kind is EventKind.ENGAGEMENT:
        return (event.path, *_NOTHING[1:])
    if event.kind is EventKind.CONVERSION and event.revenue:
        return (event.name, f"{event.name}{dims.REVENUE_SEPARATOR}{event.currency}", *_NOTHING[2:])
    return (event.name, *_NOTHING[1:])


def _distinct(flat: list, interned_empty: int | None) -> list[str]:
    """The texts of ``flat`` the loop interns, in its order; ``interned_empty``: the position
    in ``flat`` where the loop first interns "" (elsewhere "" is a dimension not counted)."""
    order = dict.fromkeys(flat)
    order.pop(None, None)
    order.pop("", None)
    texts = list(order)
    if interned_empty is not None:
        before = dict.fromkeys(flat[:interned_empty])
        before.pop(None, None)
        before.pop("", None)
        texts.insert(len(before), "")
    return texts


class _Groups:
    """Rows ``(slot, site code, bucket, text code)`` with an amount or a visitor code, as
    one integer key each."""

    def __init__(self, sites: np.ndarray, first_bucket: dict[int, int], span: int, codes: int) -> None:
        self.sites, self.first_bucket, self.span, self.codes = sites, first_bucket, span, codes
        self.keys: list[np.ndarray] = []
        self.values: list[np.ndarray] = []

    @property
    def stride(self) -> int:
        """How far apart the keys of two neighbouring slots are."""
        return len(self.sites) * self.span * self.codes

    @property
    def space(self) -> int:
        return len(_METRICS) * len(self.sites) * self.span * self.codes

    def key(self, slot: int, site_codes, buckets, text_codes):
        """The key of rows of one slot (arrays broadcast: a column of events against a matrix
        of texts gives a matrix of keys)."""
        first = self.first_bucket[int(_GRANULARITIES[slot])]
        sites = site_codes[:, None] if isinstance(text_codes, np.ndarray) and text_codes.ndim == 2 else site_codes
        buckets = buckets[:, None] if isinstance(sites, np.ndarray) and sites.ndim == 2 else buckets
        return ((slot * len(self.sites) + sites) * self.span + (buckets - first)) * self.codes + text_codes

    def add(self, slot: int, site_codes, buckets, text_codes, values) -> None:
        self.add_keys(self.key(slot, site_codes, buckets, text_codes), values)

    def add_keys(self, keys: np.ndarray, values: np.ndarray) -> None:
        self.keys.append(keys)
        self.values.append(values)

    def tuples(self, keys: np.ndarray, text_ids: np.ndarray) -> list[tuple[int, int, int, int, int]]:
        """``(site, granularity, metric, bucket, value)`` of each key."""
        rest, text_codes = np.divmod(keys, self.codes)
        rest, buckets = np.divmod(rest, self.span)
        slots, site_codes = np.divmod(rest, len(self.sites))
        granularities = _GRANULARITIES[slots]
        buckets = buckets + np.where(granularities == HOUR, self.first_bucket[HOUR], self.first_bucket[DAY])
        return list(zip(
            self.sites[site_codes].tolist(), granularities.tolist(), _METRIC_IDS[slots].tolist(),
            buckets.tolist(), text_ids[text_codes].tolist(), strict=True,
        ))

    def sums(self) -> tuple[np.ndarray, np.ndarray]:
        """The distinct keys, sorted, and each one's summed amount."""
        keys, amounts = np.concatenate(self.keys), np.concatenate(self.values)
        distinct, inverse = _group(keys, self.space)
        if int(np.abs(amounts).max(initial=0)) * len(amounts) < 1 << 53:  # float64 sums are exact
            return distinct, np.bincount(inverse, weights=amounts, minlength=len(distinct)).astype(np.int64)
        sums = np.zeros(len(distinct), dtype=np.int64)
        np.add.at(sums, inverse, amounts)
        return distinct, sums

    def members(self, visitors: list[int]) -> tuple[np.ndarray, list[list[int]]]:
        """The distinct keys, sorted, and each one's distinct visitors (``visitors[code]``:
        the events' own int objects, not new ones)."""
        keys, codes = np.concatenate(self.keys), np.concatenate(self.values)
        if not len(keys):  # engagement pings only
            return keys, []
        distinct, inverse = _group(keys, self.space)
        count = len(visitors)
        pairs = inverse * count + codes
        space = len(distinct) * count
        if space <= _dense_limit(len(pairs), 8):
            seen = np.zeros(space, dtype=bool)
            seen[pairs] = True
            pairs = np.flatnonzero(seen)
        else:
            pairs = np.unique(pairs)
        groups, codes = np.divmod(pairs, count)
        starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
        listed = list(map(visitors.__getitem__, codes.tolist()))
        bounds = [*starts.tolist(), len(listed)]
        return distinct[groups[starts]], [listed[a:b] for a, b in itertools.pairwise(bounds)]


def _dense_limit(rows: int, per_row: int = 1) -> int:
    """The largest key space grouped by a table as large as the space rather than by sorting:
    ``per_row`` times the rows (a table of int64 counts and indexes: 4, 64 bytes a row; a
    bitmap of bytes: 32), and never more than ``_DENSE``."""
    return min(_DENSE, per_row * rows + 4096)


def _group(keys: np.ndarray, space: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct keys (sorted) and each key's index among them."""
    if space <= _dense_limit(len(keys)):
        present = np.flatnonzero(np.bincount(keys, minlength=space))
        index = np.zeros(space, dtype=np.int64)
        index[present] = np.arange(len(present))
        return present, index[keys]
    return np.unique(keys, return_inverse=True)


def aggregate_columns(
    events: list[Event], site_timezones: dict[int, str], intern: Callable[[str], int], counts, members
) -> bool:
    """Adds a batch's counter deltas to ``counts`` and sketch members to ``members`` (lists of
    distinct hashes: :attr:`~appliance.ingest.aggregation.BatchWrites.sketch_lists`); ``False``
    if it leaves the batch to the per-event loop (see the module docstring)."""
    n = len(events)
    if not n:
        return True
    kinds, sites, stamps, visitors = zip(*map(_SCALARS, events), strict=True)
    kinds = np.array(kinds, dtype=np.int64)
    stamps = np.array(stamps, dtype=np.float64)
    site_list, site_codes = np.unique(np.array(sites, dtype=np.int64), return_inverse=True)
    _, first_seen, visitor_codes = np.unique(np.array(visitors, dtype=np.uint64), return_index=True,
                                             return_inverse=True)
    visitor_list = [visitors[i] for i in first_seen.tolist()]  # each code's int, as the events hold it
    hours = np.floor_divide(stamps, 3600.0).astype(np.int64)
    days = day_buckets(site_list[site_codes], stamps, hours, site_timezones)
    if int(site_list[-1]) >= 1 << 32 or min(int(hours.min()), int(days.min())) < 0 or int(hours.max()) >= 1 << 32:
        return False
    pageview = kinds == _PAGEVIEW
    others = np.flatnonzero(~pageview).tolist()
    revenue_at = [i for i in others if events[i].kind is EventKind.CONVERSION and events[i].revenue]
    engaged_at = [i for i in others if events[i].kind is EventKind.ENGAGEMENT]
    amounts = {
        "revenue": np.array([events[i].revenue for i in revenue_at], dtype=object),
        "engaged_ms": np.array([events[i].engaged_ms for i in engaged_at], dtype=object),
        "scroll_depth": np.array([events[i].scroll_depth for i in engaged_at], dtype=object),
    }
    if any(len(values) and max(abs(v) for v in values.tolist()) >= _LIMIT // n for values in amounts.values()):
        return False
    amounts = {name: values.astype(np.int64) for name, values in amounts.items()}

    # -- texts: one row per event, flattened in the loop's order; interned once each -------------
    rows = list(map(_TEXTS, events))
    first_empty = []  # where the loop first interns "": a counted-empty dimension, or a name or path
    for i in others:
        rows[i] = _other_row(events[i])
    unnamed = [i for i in others if rows[i][0] == ""]
    if unnamed:
        first_empty.append(unnamed[0] * _WIDTH)
    for position in np.flatnonzero(_COUNT_EMPTY).tolist():
        column = list(map(operator.itemgetter(position), rows))
        if "" in column:
            first_empty.append(column.index("") * _WIDTH + position)
    flat = list(itertools.chain.from_iterable(rows))
    texts = _distinct(flat, min(first_empty) if first_empty else None)
    text_ids = np.array([*map(intern, texts), 0], dtype=np.int64)  # the last code: value 0, the totals
    if int(text_ids.max()) >= 1 << 32:
        return False
    lookup = {text: code for code, text in enumerate(texts)}
    empty_code = lookup.get("")
    lookup[""], lookup[None] = _EMPTY, -1
    codes = np.fromiter(map(lookup.__getitem__, flat), dtype=np.int64, count=len(flat)).reshape(n, _WIDTH)
    del rows, flat, lookup  # the texts are codes now: less held while the rows are grouped
    total = len(texts)  # the code of value 0

    first_bucket = {HOUR: int(hours.min()), DAY: int(days.min())}
    span = max(int(hours.max()) - first_bucket[HOUR], int(days.max()) - first_bucket[DAY]) + 1
    counters = _Groups(site_list, first_bucket, span, total + 1)
    sketches = _Groups(site_list, first_bucket, span, total + 1)
    zeros, ones = np.full(n, total, dtype=np.int64), np.ones(n, dtype=np.int64)
    counters.add(_SLOT[HOUR, dims.EVENTS_TOTAL], site_codes, hours, zeros, ones)
    counters.add(_SLOT[DAY, dims.EVENTS_TOTAL], site_codes, days, zeros, ones)
    seen = np.flatnonzero(kinds != _ENGAGEMENT)  # every kind but engagement pings has visitors
    sketches.add(_SLOT[HOUR, dims.VISITORS], site_codes[seen], hours[seen], zeros[seen], visitor_codes[seen])
    sketches.add(_SLOT[DAY, dims.VISITORS], site_codes[seen], days[seen], zeros[seen], visitor_codes[seen])
    if empty_code is not None:  # the "" of a name or path is interned and counted
        first = codes[others, 0]
        codes[others, 0] = np.where(first == _EMPTY, empty_code, first)
    # page views: site totals, then every dimension's value
    viewed = np.flatnonzero(pageview)
    if len(viewed):
        at_sites, at_hours, at_days = site_codes[viewed], hours[viewed], days[viewed]
        counters.add(_SLOT[HOUR, dims.PAGEVIEWS], at_sites, at_hours, zeros[viewed], ones[viewed])
        counters.add(_SLOT[DAY, dims.PAGEVIEWS], at_sites, at_days, zeros[viewed], ones[viewed])
        matrix = codes[viewed]
        if empty_code is not None:
            counted = matrix[:, _COUNT_EMPTY]
            matrix[:, _COUNT_EMPTY] = np.where(counted == _EMPTY, empty_code, counted)
        kept = matrix >= 0
        # a row's key is linear in its slot, site, day and text: one (events x dimensions)
        # matrix of keys per metric family, masked once
        day_slot = _SLOT[DAY, dims.EVENTS_TOTAL]
        base = counters.key(day_slot, at_sites, at_days, matrix)
        stride = counters.stride
        counted = (base + (_COUNTER_SLOTS - day_slot) * stride)[kept]
        counters.add_keys(counted, np.ones(len(counted), dtype=np.int64))
        sketches.add_keys((base + (_SKETCH_SLOTS - day_slot) * stride)[kept],
                          np.broadcast_to(visitor_codes[viewed][:, None], matrix.shape)[kept])
        del base, counted, kept, matrix
    # custom events and conversions by name, engagement pings and revenue by page or name
    for kind, counter, sketch in ((_CUSTOM, dims.CUSTOM_EVENTS, dims.EVENT_VISITORS),
                                  (_CONVERSION, dims.CONVERSIONS, dims.CONVERSION_VISITORS)):
        at = np.flatnonzero(kinds == kind)
        if len(at):
            names = codes[at, 0]
            counters.add(_SLOT[HOUR, counter], site_codes[at], hours[at], names, ones[at])
            counters.add(_SLOT[DAY, counter], site_codes[at], days[at], names, ones[at])
            sketches.add(_SLOT[DAY, sketch], site_codes[at], days[at], names, visitor_codes[at])
    if engaged_at:
        paths = codes[engaged_at, 0]
        at_sites, at_days = site_codes[engaged_at], days[engaged_at]
        counters.add(_SLOT[DAY, dims.ENGAGEMENTS], at_sites, at_days, paths, ones[engaged_at])
        counters.add(_SLOT[DAY, dims.ENGAGED_MS], at_sites, at_days, paths, amounts["engaged_ms"])
        counters.add(_SLOT[DAY, dims.SCROLL_DEPTH], at_sites, at_days, paths, amounts["scroll_depth"])
    if revenue_at:
        counters.add(_SLOT[DAY, dims.REVENUE], site_codes[revenue_at], days[revenue_at], codes[revenue_at, 1],
                     amounts["revenue"])

    keys, sums = counters.sums()
    for key, amount in zip(counters.tuples(keys, text_ids), sums.tolist(), strict=True):
        counts[key] += amount
    keys, visitor_lists = sketches.members(visitor_list)
    for key, added in zip(sketches.tuples(keys, text_ids), visitor_lists, strict=True):
        present = members.get(key)
        members[key] = added if present is None else list(set(present).union(added))
    return True


def spread_visit_deltas(deltas: dict[tuple[int, int, int, tuple[int, ...]], int], counts) -> bool:
    """:meth:`appliance.ingest.visits.VisitTable._count` for a batch's visit metric deltas at
    once: each ``(site, day, metric, entry values) -> delta`` added to the site total
    (dimension value 0) and to ``metric + 1 + i`` under each non-empty entry value ``i``, grouped
    by one sort so each distinct counter key is added to once. ``False`` (nothing added) for
    entries of unequal length or amounts past ``int64``'s safe range."""
    keys = list(deltas)
    entries = list(map(_FOURTH, keys))
    width = len(entries[0])
    if any(len(entry) != width for entry in entries):
        return False
    amounts = list(deltas.values())
    rows = len(keys) * (width + 1)
    if max(map(abs, amounts)) >= _LIMIT // rows:
        return False
    values = np.empty((len(keys), width + 1), dtype=np.int64)
    values[:, 0] = 0
    # (flattened and read by fromiter: several times faster than np.array's nested-tuple walk)
    values[:, 1:] = np.fromiter(itertools.chain.from_iterable(entries), dtype=np.int64, count=len(keys) * width).reshape(
        len(keys), width
    )
    heads = np.fromiter(
        itertools.chain.from_iterable(map(_HEAD, keys)), dtype=np.int64, count=len(keys) * 3
    ).reshape(len(keys), 3)
    sites, days = heads[:, 0], heads[:, 1]
    metrics = heads[:, 2][:, None] + np.arange(width + 1)  # total, then metric + 1 + i
    kept = values != 0
    kept[:, 0] = True  # the site total, under value 0
    site_list, site_codes = np.unique(sites, return_inverse=True)
    kept_values = values[kept]
    first_day = int(days.min())
    span = int(days.max()) - first_day + 1
    top_value = int(kept_values.max())
    if int(kept_values.min()) >= 0 and (int(metrics.max()) + 1) * len(site_list) * span * (top_value + 1) < _LIMIT:
        # the values themselves fit the combined key: no sort to number them densely
        value_list, value_codes = None, kept_values
    else:
        value_list, value_codes = np.unique(kept_values, return_inverse=True)
    row_sites = np.broadcast_to(site_codes[:, None], kept.shape)[kept]
    row_days = np.broadcast_to(days[:, None] - first_day, kept.shape)[kept]
    row_amounts = np.broadcast_to(np.array(amounts, dtype=np.int64)[:, None], kept.shape)[kept]
    value_space = len(value_list) if value_list is not None else top_value + 1
    combined = ((metrics[kept] * len(site_list) + row_sites) * span + row_days) * value_space + value_codes
    distinct, inverse = np.unique(combined, return_inverse=True)
    if int(np.abs(row_amounts).max()) * len(row_amounts) < 1 << 53:  # float64 sums are exact
        sums = np.bincount(inverse, weights=row_amounts, minlength=len(distinct)).astype(np.int64)
    else:
        sums = np.zeros(len(distinct), dtype=np.int64)
        np.add.at(sums, inverse, row_amounts)
    rest, value_codes = np.divmod(distinct, value_space)
    rest, day_offsets = np.divmod(rest, span)
    metric_ids, site_codes = np.divmod(rest, len(site_list))
    for key, amount in zip(
        zip(site_list[site_codes].tolist(), itertools.repeat(DAY), metric_ids.tolist(),
            (day_offsets + first_day).tolist(),
            (value_codes if value_list is None else value_list[value_codes]).tolist(), strict=False),
        sums.tolist(), strict=True,
    ):
        counts[key] += amount
    return True
