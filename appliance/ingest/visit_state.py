"""An open visit and the rules an event joins one by: the state the visit table
(:mod:`appliance.ingest.visits`) keeps per visitor."""

from __future__ import annotations

import operator

import msgspec

from appliance import dimensions as dims
from appliance.events.codec import session_hash
from appliance.models import Event


class Visit(msgspec.Struct, array_like=True, gc=False):
    """An open visit. ``entry`` holds the interned ids of the entry dimension values.

    Not tracked by the garbage collector (``gc=False``: a visit refers to nothing that could
    refer back to it): the table holds one per open visit, tens of thousands, which every
    collection of their generation walked (measured in ``scripts/bench_batch.py`` at batches
    of 5,000: the collector's CPU while ingesting 3.0 -> 1.9 µs per event)."""

    start: float
    last: float
    day: int
    pageviews: int
    interactive: bool
    hint: str
    entry: list[int]
    exit_path: int
    carried: list[str] = []  # the visit properties (dims.VISIT_FIELDS) of its first event


_PAGE = list(dims.DIMENSIONS).index("page")
_VISIT_VALUES = operator.attrgetter(*dims.VISIT_FIELDS)  # an event's visit properties, as one tuple
_ENTRY_TEXTS = operator.attrgetter(*(field for field, _, _ in dims.DIMENSIONS.values()))  # its entry values


def seconds(timestamp: float) -> int:
    """A timestamp in whole seconds for visit durations, from the millisecond the log keeps
    (so a visit's duration is the same counted live or re-derived from stored events)."""
    return round(int(timestamp * 1000) / 1000)


def other_session(event_hint: str, visit_hint: str) -> bool:
    """Whether a client session id starts a new visit. A re-derived visit knows only the
    stored hash of its first event's id, kept as ``"#"`` + hex."""
    if not event_hint or not visit_hint or event_hint == visit_hint:
        return False
    if visit_hint[0] == "#":
        return visit_hint[1:] != f"{session_hash(event_hint):016x}"
    return True


def changes_nothing_inside(event: Event, visit: Visit, is_pageview: bool) -> bool:
    """Whether an event earlier than ``visit``'s last joins it exactly as in time order: not a
    page view, strictly after its start, of its session, in a visit with a page view already.
    Then its entry values and pages (a page view's), exit page (the last page view's), span
    (so its duration) and first event (its visit properties) stay; the event only makes it
    interactive (no bounce), as it would in time order. So arrives a conversion that a
    server-side queue sends later with the moment of the checkout inside the visit."""
    return (
        not is_pageview
        and visit.pageviews > 0
        and visit.start < event.timestamp
        and not other_session(event.session_hint, visit.hint)
        and len(visit.carried) == len(dims.VISIT_FIELDS)
    )


def _inherit(event: Event, visit: Visit) -> Event:
    """``event`` with its visit's properties (those of the visit's first event)."""
    carried = visit.carried
    if len(carried) != len(dims.VISIT_FIELDS):  # a visit opened before visits carried them
        return event
    if list(_VISIT_VALUES(event)) == carried:  # the event was sent with its visit's values
        return event
    # every visit field set (those already equal too): the same event, one comparison less each
    return _with_visit_values(event, *carried)


def _with_visit_values(
    event: Event, referrer: str, referrer_host: str, source: str, medium: str, channel: str,
    utm_source: str, utm_medium: str, utm_campaign: str, utm_term: str, utm_content: str,
) -> Event:
    """``event`` with the visit properties given (:data:`appliance.dimensions.VISIT_FIELDS`, in
    order), passed by keyword: building a ``dict(zip(...))`` of them per event cost twice the
    copy itself."""
    return msgspec.structs.replace(
        event, referrer=referrer, referrer_host=referrer_host, source=source, medium=medium, channel=channel,
        utm_source=utm_source, utm_medium=utm_medium, utm_campaign=utm_campaign, utm_term=utm_term,
        utm_content=utm_content,
    )


# _with_visit_values names each visit field: it must follow the list
assert _with_visit_values.__code__.co_varnames[1:1 + len(dims.VISIT_FIELDS)] == dims.VISIT_FIELDS
