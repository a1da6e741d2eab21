"""The delivery ledger: one record per (schedule, period) — the idempotency key of a send —
kept in LMDB (``delivery/<schedule>/<period>``), written with fsync before and after every
destination is sent to.

States: ``queued`` (a "Send now" waiting for the scheduler thread), ``sending`` (a destination
is being sent to: ``in_flight``), ``sent`` (every destination took it), ``retrying`` (a
destination failed; ``next_attempt_at`` says when the others are tried again), ``failed``
(gave up after the last attempt) and ``interrupted``.

**The promise: at most once per destination, so exactly once when nothing crashes.** A
destination is recorded ``in_flight`` (durably) before it is sent to and ``delivered`` after.
A crash between the two (the process killed during the send) leaves it ``in_flight``; on the
next start the scheduler cannot know whether the message got out, and it does *not* send it
again: the destination moves to ``uncertain``, the record shows ``interrupted`` with a note
on the schedule's page, and a person can press "Send now". Destinations not yet tried when
the crash came are still sent. A crash before ``in_flight`` is recorded simply leaves the
period due, and it is sent after the restart. Why at most once: a scheduled report that
arrives twice erodes trust in every later one, and a missing one is visible on the page.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import msgspec

from storage import Store
from storage.records import Records

STATES = ("queued", "sending", "sent", "retrying", "failed", "interrupted")
# Pruning (the hourly jobs): ``sent`` records older than this many days go, except each
# schedule's newest KEEP_SENT (its page's history). A period's record is its idempotency key,
# so it must outlive the scheduler's catch-up window: 12 periods of at most 31 days, plus a
# send day up to 27 days after a month, is well under 400 days.
PRUNE_AFTER_DAYS = 400
KEEP_SENT = 20


class Delivery(msgspec.Struct, kw_only=True):
    schedule_id: int
    key: str  # "day:2026-03-04", ... or "manual:<ms>" for a "Send now"
    start_date: str
    end_date: str
    state: str = "queued"
    manual: bool = False
    attempts: int = 0
    next_attempt_at: float = 0.0
    last_error: str = ""
    delivered: list[str] = []  # digests of the destinations that took it
    uncertain: list[str] = []  # in flight when the process died: not sent again
    in_flight: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0
    sent_at: float = 0.0


def destination_digest(url: str) -> str:
    """A destination's name in the ledger (its URL may hold a password: never stored twice)."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def _kind(schedule_id: int) -> str:
    return f"delivery/{schedule_id:010d}"


class Ledger:
    def __init__(self, store: Store, records: Records) -> None:
        self._store = store
        self._records = records

    def get(self, schedule_id: int, key: str) -> Delivery | None:
        raw = self._records.get(_kind(schedule_id), key)
        return msgspec.msgpack.decode(raw, type=Delivery) if raw is not None else None

    def put(self, delivery: Delivery) -> Delivery:
        """Write the record durably (an fsync'd LMDB transaction) before returning."""
        raw = msgspec.msgpack.encode(delivery)
        self._store.write(lambda txn: self._records.put(txn, _kind(delivery.schedule_id), delivery.key, raw))
        return delivery

    def of(self, schedule_id: int) -> list[Delivery]:
        """A schedule's deliveries, newest first."""
        found = [msgspec.msgpack.decode(raw, type=Delivery) for _, raw in self._records.scan(_kind(schedule_id))]
        return sorted(found, key=lambda d: d.created_at, reverse=True)

    def in_states(self, schedule_ids: list[int], states: tuple[str, ...]) -> Iterator[Delivery]:
        for schedule_id in schedule_ids:
            for delivery in self.of(schedule_id):
                if delivery.state in states:
                    yield delivery

    def prune(self, schedule_id: int, before: float, keep: int = KEEP_SENT) -> int:
        """Delete the schedule's ``sent`` records sent before ``before`` (a time stamp),
        keeping its newest ``keep`` records of any state; returns how many went."""
        doomed = [d.key for d in self.of(schedule_id)[keep:] if d.state == "sent" and (d.sent_at or d.updated_at) < before]
        if not doomed:
            return 0
        kind = _kind(schedule_id)

        def delete(txn) -> int:
            return sum(self._records.delete(txn, kind, key) for key in doomed)

        return self._store.write(delete)

    def forget(self, schedule_id: int) -> int:
        kind = _kind(schedule_id)
        return self._store.write(lambda txn: self._records.delete_prefixed(txn, kind, ""))
