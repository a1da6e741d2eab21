"""Bounds on distinct dimension values, so storage and memory cannot grow without end.

Per site, dimension and day, at most ``max_values`` distinct values are kept (by default
20,000: far above what a real site's sources or browsers reach, and enough pages for most
sites). A new value past the bound is recorded as ``"(other)"`` — in the counters, the
sketches, the visits and the event log alike, so every report agrees. The values seen are
rebuilt lazily from the day's counters after a restart, and only recent days stay in memory.
"""

from __future__ import annotations

import operator

import msgspec

from appliance import dimensions as dims
from appliance.models import Event, EventKind
from appliance.periods import day_bucket
from storage.keys import DAY

OTHER = "(other)"
_RECENT_DAYS = 3
_FIELDS = tuple(field for field, _, _ in dims.DIMENSIONS.values())
_COUNTERS = tuple(counter for _, counter, _ in dims.DIMENSIONS.values())
_TEXTS = operator.attrgetter(*_FIELDS)  # an event's dimension values, as one tuple


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

    def forget(self) -> None:
        """Drop the in-memory sets (after a failed transaction they may hold uncommitted ids)."""
        self._seen.clear()
