"""Events in the intake (:mod:`storage.intake`): how a batch is staged, found again and logged.

A staged batch is its events themselves (msgspec MessagePack of a list of
:class:`~appliance.models.Event`, texts and all: interning its texts would take the store's
write lock, which is what the intake keeps a commit away from). Their log keys are known at
once, from the sequences the commit gives them, so a request's answer and the live view have
the same ids as before. A deleted site's staged events stay in the intake until the store
holds what follows them; a fold after a restart leaves them out (:func:`replay`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import msgspec

from appliance.events.codec import encode_events
from appliance.models import Event
from storage.environment import Store
from storage.intake import Intake
from storage.keys import pack_event_key

#: what the store must have room for before a commit may go to the intake: a fold's own
#: transaction (its copied pages) and, per event the backlog may hold, its log row, texts
#: and aggregates with room to spare
ROOM_FOR_A_FOLD = 64 << 20
ROOM_PER_EVENT = 4 << 10
ROOM_CHECK_SECONDS = 1.0  # the disk's free space is looked at no more often
#: the backlog counted when it has no bound (``max_waiting`` 0, a plan built by hand) or a smaller one
ROOM_MIN_BACKLOG = 20_000

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


def log_staged(txn, batch, events: list[Event], timezones: dict[int, str], intern, cardinality, eventlog, journal) -> list[Event]:
    """At a fold: append the batch's staged events (``(log key, event, sequence)``, the staged
    ones at its tail) to the event log (and ``journal`` while one is kept) under their
    sequences, bounded by the cardinality guard as a commit to the main store bounds them;
    returns the batch's ``events`` with those in place of the staged."""
    start = next(index for index, (_, _, sequence) in enumerate(batch) if sequence)
    bounded = cardinality.apply(txn, events[start:], timezones, intern)
    entries = [
        (event.site_id, int(event.timestamp * 1000), row)
        for event, row in zip(bounded, encode_events(bounded, intern), strict=True)
    ]
    sequences = [sequence for _, _, sequence in batch[start:]]
    eventlog.append(txn, entries, sequences)
    if journal is not None:
        rows = [(n, site, ms, row) for n, (site, ms, row) in zip(sequences, entries, strict=True)]
        journal.append(txn, rows, int(time.time()))
    return events[:start] + bounded


def replay(intake: Intake, store, folded_through: int, sites: dict[int, str]) -> list[tuple[bytes, Event, int]]:
    """At start: the staged events after ``folded_through`` (the store's event log ends there)
    to fold again; the batches at or below it go, once the store is flushed (it holds them)."""
    store.sync()
    intake.trim(folded_through)
    return list(staged_from(intake, folded_through + 1, sites))


class Room:
    """Whether the store could still fold everything the intake may hold: an event staged in
    the intake is acknowledged, so the store must never be too full to take it. Commits go
    to the intake only while the store's room (:meth:`storage.environment.Store.room`)
    covers a fold and the whole backlog's bound (``max_waiting`` events, past which a commit
    waits for the folds); below that they go to the store itself, which folds what the
    intake holds first and, once tight, each batch in its own commit (nothing acknowledged is
    left that the store could not take)."""

    def __init__(self, store: Store, intake: Intake, max_waiting: int) -> None:
        self._store = store
        self._intake = intake
        self._needed = ROOM_FOR_A_FOLD + ROOM_PER_EVENT * max(max_waiting, ROOM_MIN_BACKLOG)
        self._checked_at = -ROOM_CHECK_SECONDS
        self._enough = False

    def enough(self) -> bool:
        if self._store.tight or self._intake.tight:
            return False
        now = time.monotonic()
        if now - self._checked_at >= ROOM_CHECK_SECONDS:
            self._enough = self._store.room() >= self._needed
            self._checked_at = now
        return self._enough
