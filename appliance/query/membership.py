"""Segment membership: which visits of a selection belong to a saved segment.

A visit is a member when each of the segment's event-level filters matches at least one of
its events (none, for a negated filter), its visit-level filters hold, and every behavioural
condition holds (see :mod:`appliance.definitions.segments` for the vocabulary). The scan
path's ``segment`` filter, materialised segments and segment comparison all use this one
function, so a segment means the same everywhere.
"""

from __future__ import annotations

import numpy as np

from appliance.definitions.segments import Segment
from appliance.events.blocks import DAY_MS
from appliance.filters import FilterError, IdPredicate, text_predicate
from appliance.models import EventKind
from storage.arrays import distinct_values

RETURNING_LOOKBACK_DAYS = 30


def members(scans, selection, segment: Segment) -> np.ndarray:
    """Per visit of ``selection.sessions``: is it a member of ``segment``?"""
    sessions = selection.sessions
    frame = selection.frame
    kind = selection.kind
    keep = np.ones(sessions.count, bool)
    for condition in segment.filters:
        if condition.is_visit_level:
            mask = scans.visit_mask(selection, condition)
        else:
            mask = sessions.visits_with(scans.event_mask(frame, condition, selection.query.site))
        keep &= ~mask if condition.negated else mask
    text = scans.text
    for condition in segment.conditions:
        if condition.kind == "visited_page":
            rows = (kind == EventKind.PAGEVIEW) & frame.mask("path", IdPredicate(text_predicate("matches", (condition.value,)), text))
            keep &= sessions.visits_with(rows)
        elif condition.kind == "did_event":
            rows = np.isin(kind, (EventKind.CUSTOM, EventKind.CONVERSION)) & frame.mask(
                "name", IdPredicate(text_predicate("is", (condition.value,)), text)
            )
            if condition.prop_key:
                key_id = scans.lookup(condition.prop_key)
                rows &= (
                    frame.prop_mask([key_id], IdPredicate(text_predicate("is", (condition.prop_value,)), text))
                    if key_id is not None
                    else False
                )
            keep &= sessions.visits_with(rows)
        elif condition.kind == "completed_goal":
            goal = scans.goals.get(segment.site_id, int(condition.value))
            keep &= sessions.visits_with(scans.goals.mask(frame, goal))
        elif condition.kind == "min_pageviews":
            keep &= sessions.pageviews >= int(condition.value)
        elif condition.kind == "min_duration":
            keep &= sessions.duration_ms > int(condition.value) * 1000
        elif condition.kind == "channel":
            channel = frame.column("channel")[sessions.first_row]
            accepted = IdPredicate(text_predicate("is", (condition.value,)), text)
            distinct, inverse = np.unique(channel, return_inverse=True)
            keep &= accepted(distinct)[inverse] if len(distinct) else np.zeros(0, bool)
        elif condition.kind == "visitor_type":
            returning = _returning(scans, selection)
            keep &= returning if condition.value == "returning" else ~returning
    return keep


def _returning(scans, selection) -> np.ndarray:
    """Per visit: did the same visitor have an earlier visit (in the period or the 30 days
    before it)? Visits are ordered by visitor then time, so "earlier in the period" means
    the previous visit has the same visitor."""
    sessions = selection.sessions
    earlier = np.zeros(sessions.count, bool)
    if sessions.count > 1:
        order = np.lexsort((sessions.start, sessions.visitor))
        repeated = np.zeros(sessions.count, bool)
        repeated[1:] = sessions.visitor[order][1:] == sessions.visitor[order][:-1]
        earlier[order] = repeated
    columns = scans.columns
    before = columns.frame(
        selection.query.site.id, selection.start_ms - RETURNING_LOOKBACK_DAYS * DAY_MS, selection.start_ms
    )
    if before.size:
        seen = before.column("kind") != EventKind.ENGAGEMENT
        earlier |= np.isin(sessions.visitor_hash, distinct_values(before.column("visitor")[seen]))
    return earlier


def segment_visits(scans, selection, value: str) -> np.ndarray:
    """The ``segment`` filter: member visits of segment ``value`` (an id) on the query's site.
    Visibility is checked by the caller (the API) before the query runs."""
    if not value.isdigit():
        raise FilterError(f"segment takes a segment id, not {value!r}")
    return members(scans, selection, scans.segments.get(selection.query.site.id, int(value)))
