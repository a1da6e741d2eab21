"""Segments: named, saved sets of filters and behavioural conditions, applied to visits.

Segment membership is decided per *visit* (as Matomo's segments): a visit is a member when

- for each of the segment's event-level filters, at least one event of the visit matches it
  (for a negated filter: no event of the visit matches its positive form); ``entry_page`` /
  ``exit_page`` filters test the visit's own entry and exit page;
- and every condition holds: ``visited_page`` (a page view whose path matches the pattern),
  ``did_event`` (a custom event or conversion with that name, optionally with a property
  value), ``completed_goal`` (a goal, by id), ``min_pageviews`` (at least N page views in the
  visit), ``min_duration`` (the visit lasted longer than T seconds), ``channel`` (the visit's
  entry channel is C), ``visitor_type`` (``new``: the visitor's first visit in the period and
  no visit in the 30 days before it; ``returning``: otherwise).

Viewing a report through a segment (the ``segment`` filter) keeps every event of the member
visits, then applies the query's other filters. A segment is ``site`` (everyone who can read
the site sees it) or ``private`` (its author only). A segment marked ``materialised`` also
keeps its dashboard metrics as per-day counters and sketches (:mod:`appliance.query.materialised`),
so viewing the dashboard through it costs what the unfiltered dashboard costs; a segment
with a ``visitor_type`` condition (whose membership depends on the queried period) cannot be
materialised.
"""

from __future__ import annotations

import time
from typing import Protocol

import msgspec

from appliance.definitions.common import (
    DefinitionError,
    check_definition_pattern,
    checked_filters,
    checked_name,
)
from appliance.definitions.goals import Goals
from appliance.filters import Filter
from storage import Store
from storage.records import Records

CONDITIONS = ("visited_page", "did_event", "completed_goal", "min_pageviews", "min_duration", "channel", "visitor_type")
VISIBILITIES = ("site", "private")
_RECORD = "segment"
MAX_SEGMENTS_PER_SITE = 200


class Condition(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    kind: str
    value: str
    prop_key: str = ""
    prop_value: str = ""


class SegmentInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    filters: list[list] = []  # [operator, dimension, values], as the filters parameter
    conditions: list[Condition] = []
    visibility: str = "site"
    materialised: bool = False


class Segment(msgspec.Struct, kw_only=True):
    id: int
    site_id: int
    name: str
    filters: list[Filter] = []
    conditions: list[Condition] = []
    visibility: str = "site"
    owner_id: int = 0
    owner: str = ""
    materialised: bool = False
    created_at: float = 0.0
    counter_id: int = 0  # materialised figures are keyed by it; new for every definition


def _checked(data: SegmentInput) -> tuple[str, list[Filter], list[Condition]]:
    name = checked_name(data.name)
    if data.visibility not in VISIBILITIES:
        raise DefinitionError("visibility", "site or private")
    filters = checked_filters(data.filters, "a segment cannot contain a segment")
    for index, condition in enumerate(data.conditions):
        where = f"conditions[{index}]"
        if condition.kind not in CONDITIONS:
            raise DefinitionError(f"{where}.kind", f"one of {', '.join(CONDITIONS)}")
        if condition.kind in ("min_pageviews", "min_duration", "completed_goal") and not condition.value.isdigit():
            raise DefinitionError(f"{where}.value", "a whole number")
        if condition.kind == "visitor_type" and condition.value not in ("new", "returning"):
            raise DefinitionError(f"{where}.value", "new or returning")
        if not condition.value:
            raise DefinitionError(f"{where}.value", "required")
        if condition.kind == "visited_page":
            check_definition_pattern(condition.value, f"{where}.value")
    if not filters and not data.conditions:
        raise DefinitionError("filters", "a segment needs at least one filter or condition")
    if data.materialised and any(c.kind == "visitor_type" for c in data.conditions):
        raise DefinitionError(
            "materialised", "a segment with a visitor_type condition depends on the period asked; it cannot be materialised"
        )
    return name, filters, list(data.conditions)


class SegmentObserver(Protocol):
    """Who keeps materialised segments current (:class:`appliance.query.materialised.Materialiser`)."""

    def status(self, segment: Segment) -> dict[str, object] | None: ...

    def start(self, segment: Segment) -> None: ...

    def drop(self, site_id: int, counter_id: int) -> None: ...


class _NoObserver:
    def status(self, segment: Segment) -> dict[str, object] | None:
        return None

    def start(self, segment: Segment) -> None:
        pass

    def drop(self, site_id: int, counter_id: int) -> None:
        pass


class Segments:
    """The saved segments of every site: definitions and their records. Membership is a
    query (:mod:`appliance.query.membership`); materialisation is the observer's."""

    def __init__(self, store: Store, records: Records, goals: Goals) -> None:
        self._store = store
        self._records = records
        self._goals = goals
        self.materialiser: SegmentObserver = _NoObserver()

    def observe(self, observer: SegmentObserver) -> None:
        """Tell ``observer`` when a materialised segment is made, redefined or deleted."""
        self.materialiser = observer

    def _decode(self, raw: bytes) -> Segment:
        return msgspec.msgpack.decode(raw, type=Segment)

    def list(self, site_id: int, user_id: int | None = None) -> list[Segment]:
        """The site's segments visible to ``user_id`` (all of them when None)."""
        prefix = f"{site_id:010d}/"
        found = [self._decode(raw) for key, raw in self._records.scan(_RECORD) if key.startswith(prefix)]
        return [s for s in found if user_id is None or s.visibility == "site" or s.owner_id == user_id]

    def get(self, site_id: int, segment_id: int, user_id: int | None = None) -> Segment:
        raw = self._records.get(_RECORD, f"{site_id:010d}/{segment_id:010d}")
        segment = self._decode(raw) if raw is not None else None
        if segment is None or (user_id is not None and segment.visibility == "private" and segment.owner_id != user_id):
            raise DefinitionError("segment_id", f"no segment {segment_id} on this site", 404)
        return segment

    def find(self, site_id: int, segment_id: int) -> Segment | None:
        raw = self._records.get(_RECORD, f"{site_id:010d}/{segment_id:010d}")
        return self._decode(raw) if raw is not None else None

    def view(self, segment: Segment) -> dict[str, object]:
        """A segment as the API shows it: its definition and, if materialised, the progress
        of its back-fill."""
        out = msgspec.to_builtins(segment)
        out.pop("counter_id", None)
        status = self.materialiser.status(segment)
        if status is not None:
            out["materialisation"] = status
        return out

    def create(self, site_id: int, data: SegmentInput, owner_id: int = 0, owner: str = "") -> Segment:
        name, filters, conditions = _checked(data)
        self._check_goals(site_id, conditions)
        if len(self.list(site_id)) >= MAX_SEGMENTS_PER_SITE:
            raise DefinitionError("segments", f"at most {MAX_SEGMENTS_PER_SITE} segments per site")
        made: list[Segment] = []

        def write(txn):
            made.clear()
            segment = Segment(
                id=self._records.next_id(txn, "segment"), site_id=site_id, name=name, filters=filters,
                conditions=conditions, visibility=data.visibility, owner_id=owner_id, owner=owner,
                created_at=time.time(), materialised=data.materialised,
                counter_id=self._records.next_id(txn, "segment_counter") if data.materialised else 0,
            )
            self._records.put(txn, _RECORD, f"{site_id:010d}/{segment.id:010d}", msgspec.msgpack.encode(segment))
            made.append(segment)

        self._store.write(write)
        if made[0].materialised:
            self.materialiser.start(made[0])
        return made[0]

    def change(self, site_id: int, segment_id: int, data: SegmentInput, user_id: int | None = None) -> Segment:
        old = self.get(site_id, segment_id, user_id)
        name, filters, conditions = _checked(data)
        self._check_goals(site_id, conditions)
        segment = msgspec.structs.replace(
            old, name=name, filters=filters, conditions=conditions, visibility=data.visibility, materialised=data.materialised
        )
        key = f"{site_id:010d}/{segment_id:010d}"
        redefined = (old.filters, old.conditions, old.materialised) != (filters, conditions, data.materialised)
        made: list[Segment] = []

        def write(txn):
            made.clear()
            counter = self._records.next_id(txn, "segment_counter") if data.materialised else 0
            changed = msgspec.structs.replace(segment, counter_id=counter) if redefined else segment
            self._records.put(txn, _RECORD, key, msgspec.msgpack.encode(changed))
            made.append(changed)

        self._store.write(write)
        segment = made[0]
        if redefined:
            if old.counter_id:
                self.materialiser.drop(site_id, old.counter_id)
            if segment.materialised:
                self.materialiser.start(segment)
        return segment

    def delete(self, site_id: int, segment_id: int, user_id: int | None = None) -> Segment:
        segment = self.get(site_id, segment_id, user_id)
        key = f"{site_id:010d}/{segment_id:010d}"
        self._store.write(lambda txn: self._records.delete(txn, _RECORD, key))
        if segment.counter_id:
            self.materialiser.drop(site_id, segment.counter_id)
        return segment

    def _check_goals(self, site_id: int, conditions: list[Condition]) -> None:
        for condition in conditions:
            if condition.kind == "completed_goal":
                self._goals.get(site_id, int(condition.value))
