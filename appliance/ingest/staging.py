"""Events in the intake (:mod:`storage.intake`): how a batch is staged and found again.

A staged batch is its events themselves (msgspec MessagePack of a list of
:class:`~appliance.models.Event`, texts and all: interning its texts would take the store's
write lock, which is what the intake keeps a commit away from). Their log keys are known at
once, from the sequences the commit gives them, so a request's answer and the live view have
the same ids as before. A deleted site's staged events stay in the intake until the store
holds what follows them; a fold after a restart leaves them out (:func:`replay`).
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec

from appliance.models import Event
from storage.intake import Intake
from storage.keys import pack_event_key

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(list[Event]).decode


def log_key(event: Event, sequence: int) -> bytes:
    """The event log key ``event`` gets under ``sequence`` (as :meth:`storage.eventlog.EventLog.append` packs it)."""
    return pack_event_key(event.site_id, int(event.timestamp * 1000), sequence & 0xFFFFFFFF)


def stage(intake: Intake, events: list[Event], first: int, trim_through: int) -> list[bytes]:
    """Stage ``events`` under the sequences from ``first`` on; returns their log keys."""
    intake.stage(first, len(events), _encode(events), trim_through)
    return [log_key(event, sequence) for sequence, event in enumerate(events, first)]


def staged_from(intake: Intake, first: int, sites: set[int] | dict[int, str]) -> Iterator[tuple[bytes, Event, int]]:
    """The staged events from sequence ``first`` on, as ``(log key, event, sequence)``; a
    deleted site's (not in ``sites``) left out."""
    for start, encoded in intake.rows_from(first):
        for sequence, event in enumerate(_decode(encoded), start):
            if sequence >= first and event.site_id in sites:
                yield log_key(event, sequence), event, sequence


def replay(intake: Intake, store, folded_through: int, sites: dict[int, str]) -> list[tuple[bytes, Event, int]]:
    """At start: the staged events after ``folded_through`` (the store's event log ends there)
    to fold again; the batches at or below it go, once the store is flushed (it holds them)."""
    store.sync()
    intake.trim(folded_through)
    return list(staged_from(intake, folded_through + 1, sites))
