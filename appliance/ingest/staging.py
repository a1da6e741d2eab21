"""Events in the intake (:mod:`storage.intake`): how a batch is staged and found again.

A staged row is the event itself (msgspec MessagePack of :class:`~appliance.models.Event`,
texts and all: interning its texts would take the store's write lock, which is what the
intake keeps a commit away from). Its log key is known at once, from the sequence the
commit gives it, so a request's answer and the live view have the same ids as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import msgspec

from appliance.models import Event
from storage.intake import Intake
from storage.keys import pack_event_key

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Event).decode


def log_key(event: Event, sequence: int) -> bytes:
    """The event log key ``event`` gets under ``sequence`` (as :meth:`storage.eventlog.EventLog.append` packs it)."""
    return pack_event_key(event.site_id, int(event.timestamp * 1000), sequence & 0xFFFFFFFF)


def rows(events: list[Event], sequences: Iterable[int]) -> list[tuple[int, bytes]]:
    """The intake rows of ``events`` under ``sequences``."""
    return [(sequence, _encode(event)) for sequence, event in zip(sequences, events, strict=True)]


def staged_from(intake: Intake, first: int, sites: set[int] | dict[int, str]) -> Iterator[tuple[bytes, Event, int]]:
    """The staged events from sequence ``first`` on, as ``(log key, event, sequence)``; a
    deleted site's (not in ``sites``) left out."""
    for sequence, value in intake.rows_from(first):
        event = _decode(value)
        if event.site_id in sites:
            yield log_key(event, sequence), event, sequence


def replay(intake: Intake, store, folded_through: int, sites: dict[int, str]) -> list[tuple[bytes, Event, int]]:
    """At start: the staged events after ``folded_through`` (the store's event log ends there)
    to fold again; the rows at or below it go, once the store is flushed (it holds them)."""
    store.sync()
    intake.trim(folded_through)
    return list(staged_from(intake, folded_through + 1, sites))


def drop_site(intake: Intake, site_id: int) -> int:
    """Delete a deleted site's staged rows; returns how many."""
    return intake.delete_where(lambda value: _decode(value).site_id == site_id)
