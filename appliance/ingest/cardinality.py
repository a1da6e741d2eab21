"""Bounds on distinct dimension values, so storage and memory cannot grow without end.

Per site, dimension and day, at most ``max_values`` distinct values are kept (by default
20,000: far above what a real site's sources or browsers reach, and enough pages for most
sites). A new value past the bound is recorded as ``"(other)"`` — in the counters, the
sketches, the visits and the event log alike, so every report agrees. The values seen are
rebuilt lazily from the day's counters after a restart, and only recent days stay in memory.
"""

from __future__ import annotations

import itertools
import operator

import msgspec
import numpy as np

from appliance import dimensions as dims
from appliance.ingest.aggregation_columns import day_buckets
from appliance.models import Event, EventKind
from appliance.periods import day_bucket
from storage.keys import DAY

OTHER = "(other)"
_RECENT_DAYS = 3
_FIELDS = tuple(field for field, _, _ in dims.DIMENSIONS.values())
_COUNTERS = tuple(counter for _, counter, _ in dims.DIMENSIONS.values())
_TEXTS = operator.attrgetter(*_FIELDS)  # an event's dimension values, as one tuple
_WIDTH = len(_FIELDS)
#: from this many events on, a batch is first checked column-wise (:meth:`CardinalityGuard._within`)
COLUMNS_FROM = 64


class CardinalityGuard:
    def __init__(self, counters, max_values: int) -> None:
        self._counters = counters
        self.max_values = max_values
        self._seen: dict[tuple[int, int, int], set[int]] = {}
        self.overflowed = 0

    def _values(self, txn, site: int, metric: int, day: int) -> set[int]:
        key = (site, metric, day)
        values = self._seen.get(key)
        if values is None:
            values = {dim for _, dim, _ in self._counters.scan(txn, site, DAY, metric, day, day)}
            self._seen[key] = values
            newest = max(k[2] for k in self._seen)
            for stale in [k for k in self._seen if k[2] < newest - _RECENT_DAYS]:
                del self._seen[stale]
        return values

    def apply(self, txn, events: list[Event], timezones: dict[int, str], intern) -> list[Event]:
        """The events with over-the-bound dimension values replaced by ``"(other)"``."""
        if self.max_values <= 0:
            return events
        if len(events) >= COLUMNS_FROM and self._within(txn, events, timezones, intern):
            return list(events)
        out = []
        seen = self._seen
        ids: dict[str, int] = {}  # per batch: each distinct text interned once
        for event in events:
            if event.kind is not EventKind.PAGEVIEW:
                out.append(event)
                continue
            site = event.site_id
            day = day_bucket(event.timestamp, timezones.get(site, "UTC"))
            replaced: dict[str, str] = {}
            for field, counter_metric, text in zip(_FIELDS, _COUNTERS, _TEXTS(event), strict=True):
                if not text:
                    continue
                value_id = ids.get(text)
                if value_id is None:
                    value_id = ids[text] = intern(text)
                values = seen.get((site, counter_metric, day))  # what _values answers when it knows
                if values is None:
                    values = self._values(txn, site, counter_metric, day)
                if value_id in values:
                    continue
                if len(values) >= self.max_values:
                    replaced[field] = OTHER
                    values.add(intern(OTHER))
                    self.overflowed += 1
                else:
                    values.add(value_id)
            out.append(msgspec.structs.replace(event, **replaced) if replaced else event)
        return out

    def _within(self, txn, events: list[Event], timezones: dict[int, str], intern) -> bool:
        """The column-wise check of a batch: when every (site, dimension, day) set it touches
        has room for all the batch's distinct texts, no value can go past the bound, so the
        per-event loop would replace nothing and only add the new ids. Then this adds them
        (texts interned in the loop's order) and answers ``True``; otherwise it adds nothing
        and answers ``False``, and the loop runs. Sets not in memory are read first, as the
        loop reads them (an import's batch often begins a day), unless that would let one of
        the batch's own days go from memory (a batch reaching back past the recent days kept):
        then the loop decides, since which sets it keeps depends on the events' order."""
        viewed = [event for event in events if event.kind is EventKind.PAGEVIEW]
        if not viewed:
            return True
        sites = np.array([event.site_id for event in viewed], dtype=np.int64)
        stamps = np.array([event.timestamp for event in viewed], dtype=np.float64)
        days = day_buckets(sites, stamps, np.floor_divide(stamps, 3600.0).astype(np.int64), timezones)
        flat = list(itertools.chain.from_iterable(map(_TEXTS, viewed)))
        order = dict.fromkeys(flat)  # first occurrence order: the loop's, event by event, field by field
        order.pop("", None)
        texts = list(order)
        if not texts:
            return True  # only empty values: nothing to bound
        codes = {text: code for code, text in enumerate(texts)}
        codes[""] = -1  # an empty value is not bounded
        matrix = np.fromiter(map(codes.__getitem__, flat), dtype=np.int64, count=len(flat)).reshape(-1, _WIDTH)
        groups, group_of = np.unique(np.stack([sites, days], axis=1), axis=0, return_inverse=True)
        columns = np.broadcast_to(np.arange(_WIDTH), matrix.shape)
        kept = matrix >= 0
        triples = np.unique((group_of.reshape(-1, 1) * _WIDTH + columns)[kept] * len(texts) + matrix[kept])
        cells, text_codes = np.divmod(triples, len(texts))
        cell_list, starts, counts = np.unique(cells, return_index=True, return_counts=True)
        keys = []
        for cell in cell_list.tolist():
            group, column = divmod(cell, _WIDTH)
            site, day = groups[group].tolist()
            keys.append((site, _COUNTERS[column], day))
        missing = [key for key in keys if key not in self._seen]
        if missing:
            # read them only if that lets none of the batch's days go: then the sets kept
            # afterwards are the loop's, whatever the order they are read in
            newest = max(key[2] for key in itertools.chain(self._seen, missing))
            if any(key[2] < newest - _RECENT_DAYS for key in keys):
                return False
            for key in missing:
                self._values(txn, *key)
        sets = []
        for key, count in zip(keys, counts.tolist(), strict=True):
            values = self._seen.get(key)
            if values is None or len(values) + count > self.max_values:
                return False  # near the bound
            sets.append(values)
        ids = np.array([intern(text) for text in texts], dtype=np.int64)
        added = ids[text_codes].tolist()
        bounds = [*starts.tolist(), len(added)]
        for values, (start, end) in zip(sets, itertools.pairwise(bounds), strict=True):
            values.update(added[start:end])
        return True

    def forget(self) -> None:
        """Drop the in-memory sets (after a failed transaction they may hold uncommitted ids)."""
        self._seen.clear()
