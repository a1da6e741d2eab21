"""The primary's side of replication: journal rows after a cursor, long polls, sync acks.

A standby pulls ``GET /api/v1/replication/events?after=CURSOR`` (see
:mod:`appliance.operations.following`). :meth:`ReplicationSource.pull` answers with the
journal's rows (:mod:`storage.journal`) after the cursor, decoded to events with this data
dir's string table, in commit order; with nothing new it waits for the next commit (a long
poll, woken by :meth:`committed`). Asking for rows after ``N`` also *confirms* ``N``: the
standby only asks after its transaction holding rows up to ``N`` (and the cursor ``N``) has
committed, so :attr:`confirmed` is what the standby durably holds.

*Synchronous mode* (``replication.sync``): an ingest request, once its batch is committed,
awaits :meth:`acknowledged` — until :attr:`confirmed` reaches the last committed sequence, at
most ``sync_timeout_ms``. Then the acknowledged event is on both machines (recovery point
zero). On the timeout the event is acknowledged anyway and counted (``sync_timeouts``), and
while no standby is connected (none polling now nor within the timeout) nothing waits: the
primary stays available, with the asynchronous recovery point, rather than refuse writes.

A standby that is connected but *stuck* (its apply fails, e.g. its disk is full, so it keeps
asking after the same cursor) would make every acknowledgement wait the whole timeout. So
when commits have waited longer than the timeout and :attr:`confirmed` has not moved for as
long (:meth:`degraded`), acknowledgements stop waiting: they return at once and are counted
(``sync_degraded_acks``; ``sync_degraded`` in the status). The first confirmation that moves
:attr:`confirmed` ends it, and acknowledgements wait again. The timing uses :attr:`clock`
(monotonic seconds; tests drive it).

The records (sites, users, API keys, salts, definitions: everything but per-data-dir derived
records) travel whole (:meth:`records_snapshot`), when their version moved.

*The journal only while it is needed.* Writing every committed row a second time costs CPU
on every commit and ~100 bytes per event kept ``journal_hours``, for nobody while no standby
follows. So the journal is kept only while a standby has attached (pulled, or asked for a
seed) within ``journal_hours``, or always with ``journal_always`` or ``sync`` (a standby is
configured). A pull starts it (:meth:`attach`): holding the coordinator's mutex, so no
commit is in flight, it records the last sequence committed without it
(:meth:`Journal.cover_from <storage.journal.Journal.cover_from>`) and switches the recorder's
journal on. A cursor below that is answered 410 like one below the trimmed front, and the
standby is *seeded*: :meth:`seed` starts the journal first and then copies the store
(:func:`appliance.operations.backups.make_backup`), so the copy's last sequence is covered
and the standby follows from there (:mod:`appliance.operations.seeding`). When no standby has
attached for ``journal_hours``, :meth:`trim` switches the journal off and empties it. A
``journal_meta`` flag says the journal was being kept, so a restart goes on without a gap.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

import msgspec

from appliance.errors import DomainError
from appliance.events.codec import decode_event
from appliance.ingest.recording import Recorder
from appliance.models import Event
from appliance.operations.backups import make_backup
from appliance.turns import TURNS
from storage import Store
from storage.journal import Journal
from storage.records import Records
from storage.strings import StringTable

#: records a data dir derives for itself (materialised segment days, whether its week and
#: month rollups are built): never copied
DERIVED_KINDS = ("segment-day", "rollups")
_TRIM_BATCH = 50_000  # journal rows deleted per transaction when the journal stops


class JournalGap(DomainError):
    """The standby's cursor is older than the journal keeps (410)."""


class Pulled(msgspec.Struct, kw_only=True):
    """One answer to a standby's pull."""

    events: list[tuple[int, Event]]  # (primary sequence, event), in commit order
    last_sequence: int  # the primary's last committed sequence when answering
    records_version: int


class ReplicationSource:
    def __init__(
        self,
        *,
        store: Store,
        journal: Journal,
        strings: StringTable,
        records: Records,
        recorder: Recorder,
        sync: bool,
        sync_timeout_seconds: float,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
        journal_hours: float = 72,
        journal_always: bool = False,
        mutex: AbstractContextManager | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._journal = journal
        self._strings = strings
        self._records = records
        self._recorder = recorder
        self.sync = sync
        self.enabled = enabled  # replication.journal_hours = 0: no journal, no standby
        self._timeout = sync_timeout_seconds
        self._condition = threading.Condition()
        self._waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future]] = []
        self.confirmed = 0
        self.sync_timeouts = 0
        self._parked = 0  # pulls waiting for a commit now
        self._last_pull = 0.0  # monotonic time of the last pull
        self._behind_since: float | None = None  # first commit the standby did not hold yet
        self.clock = clock
        self.sync_degraded_acks = 0  # acknowledged at once because the standby was stuck
        self._waiting_since: float | None = None  # clock: first commit the standby did not hold yet
        self._progress_at = float("-inf")  # clock: when :attr:`confirmed` last moved
        self._retention = journal_hours * 3600
        self._always = "journal_always" if journal_always else "sync" if sync else ""
        self._mutex = mutex or threading.RLock()  # the coordinator's: commits hold it
        self.wall_clock = wall_clock
        self._attached = 0  # Unix seconds: when a standby last attached (as written down)
        if enabled:
            self._resume_journal()

    # -- keeping the journal only while it is needed ---------------------------------------------
    def _resume_journal(self) -> None:
        """At open: keep the journal if configured to or a standby attached recently."""
        journal = self._journal
        with self._store.read() as txn:
            self._attached = journal.attached_at(txn)
            kept = journal.is_kept(txn)
            if not kept and not self._attached and journal.bounds(txn) != (0, 0):
                kept = True  # a data dir of a version that kept it always: go on without a gap
                self._attached = int(self.wall_clock())
        if self._always or (self._attached and self.wall_clock() - self._attached < self._retention):
            self._start_journal(self._attached, continued=kept)
        elif kept:
            self._stop_journal()

    @property
    def journaling(self) -> bool:
        return self._recorder.journal is not None

    def attach(self) -> None:
        """A standby attached (a pull, a seed): keep the journal from now on, if it was not
        kept, and write the time down (at most once a minute)."""
        now = int(self.wall_clock())
        if not self.journaling:
            self._start_journal(now, continued=False)
        elif now - self._attached >= 60:
            self._store.write(lambda txn: self._journal.mark_attached(txn, now))
            self._attached = now

    def _start_journal(self, attached: int, *, continued: bool) -> None:
        journal = self._journal
        with self._mutex:  # no commit in flight: every sequence after `last` is journaled
            if self.journaling:
                return
            last = self._recorder.last_sequence

            def write(txn):
                if not continued:
                    journal.cover_from(txn, last)
                journal.set_kept(txn, True)
                if attached:
                    journal.mark_attached(txn, attached)

            self._store.write(write)
            self._attached = attached
            self._recorder.journal = journal

    def _stop_journal(self) -> int:
        """Stop journaling and drop every row (no standby can use them any more)."""
        journal = self._journal
        with self._mutex:
            self._recorder.journal = None
            last = self._recorder.last_sequence
            self._store.write(lambda txn: journal.set_kept(txn, False))
        removed = 0
        # In short transactions: commits go on between them. Only rows up to `last`: a standby
        # attaching meanwhile starts the journal again after it.
        while last and (batch := self._store.write(
            lambda txn: journal.trim_before(txn, 2**32 - 1, keep_after=last, limit=_TRIM_BATCH)
        )):
            removed += batch
        return removed

    def trim(self, now: float | None = None) -> int:
        """The hourly job: drop rows older than ``journal_hours``; stop the journal when no
        standby attached within that time (and it is not kept always). Returns rows removed."""
        now = self.wall_clock() if now is None else now
        cutoff = int(now - self._retention)
        if self.journaling and not self._always and self._attached < cutoff:
            return self._stop_journal()
        return self._store.write(lambda txn: self._journal.trim_before(txn, cutoff))

    def seed(self, data_dir: str, destination: str) -> dict:
        """Copy this data dir for a new standby (a backup, see :mod:`appliance.operations.
        backups`) once the journal is kept: it holds every row after the copy's last event."""
        if not self.enabled:
            raise DomainError(None, "this server keeps no replication journal (replication.journal_hours = 0)", 409)
        self.attach()
        return make_backup(self._store, data_dir, destination)

    # -- serving pulls ---------------------------------------------------------------------
    def committed(self) -> None:
        """A batch was committed: wake the waiting pulls."""
        with self._condition:
            if self._behind_since is None:
                self._behind_since = time.time()
            if self._waiting_since is None:
                self._waiting_since = self.clock()
            self._condition.notify_all()

    def pull(self, after: int, limit: int, wait: float) -> Pulled:
        """Rows after ``after`` (confirming ``after``); with none, wait up to ``wait`` s."""
        if not self.enabled:
            raise DomainError(None, "this server keeps no replication journal (replication.journal_hours = 0)", 409)
        self.attach()
        self.confirm(after)
        deadline = time.monotonic() + wait
        with TURNS.waiting(), self._condition:  # a long poll: the requests behind it go first
            self._parked += 1
            try:
                while self._recorder.last_sequence <= after and (left := deadline - time.monotonic()) > 0:
                    self._condition.wait(left)
            finally:
                self._parked -= 1
                self._last_pull = self.clock()
        text = self._strings.text
        with self._store.read() as txn:
            if after < self._journal.trimmed_through(txn):
                raise JournalGap(
                    "after", f"rows after {after} are not in the journal (it is kept only while a standby "
                    "attached within replication.journal_hours): seed the standby (start it with an empty "
                    "data dir, or restore a backup of this server into it)", 410,
                )
            rows = self._journal.read(txn, after, limit)
            events = [
                (sequence, decode_event(site, ms, row, lambda i, txn=txn: text(i, txn)))
                for sequence, site, ms, row in rows
            ]
            version = self._records.version(txn)
        return Pulled(events=events, last_sequence=self._recorder.last_sequence, records_version=version)

    def confirm(self, sequence: int) -> None:
        """The standby durably holds everything up to ``sequence``."""
        with self._condition:
            if sequence <= self.confirmed:
                return
            self.confirmed = sequence
            self._progress_at = self.clock()
            if sequence >= self._recorder.last_sequence:
                self._behind_since = None
                self._waiting_since = None
            self._condition.notify_all()
            done = [waiter for waiter in self._waiters if waiter[0] <= sequence]
            self._waiters = [waiter for waiter in self._waiters if waiter[0] > sequence]
        for _, loop, future in done:
            loop.call_soon_threadsafe(_resolve, future)

    # -- synchronous acknowledgements ------------------------------------------------------
    def standby_connected(self) -> bool:
        return self._parked > 0 or self.clock() - self._last_pull < max(self._timeout, 1.0)

    def degraded(self) -> bool:
        """Sync mode, and the standby holds back commits that waited longer than the timeout
        without confirming anything in that time (stuck): acknowledgements do not wait."""
        since = self._waiting_since
        if not self.sync or since is None or self.confirmed >= self._recorder.last_sequence:
            return False
        return self.clock() - max(since, self._progress_at) >= self._timeout and self.standby_connected()

    def _must_wait(self, target: int) -> bool:
        """Whether an acknowledgement of everything up to ``target`` waits for the standby:
        not in asynchronous mode, not when the standby already holds it, not while no
        standby is connected, and not while the standby is stuck (:meth:`degraded`; counted
        in ``sync_degraded_acks``). Both waits, :meth:`acknowledged` and
        :meth:`wait_acknowledged`, decide here, so neither can forget a case."""
        if not self.sync or target <= self.confirmed or not self.standby_connected():
            return False
        if self.degraded():
            self.sync_degraded_acks += 1
            return False
        return True

    async def acknowledged(self) -> None:
        """In sync mode, wait until the standby holds every committed event (see the module
        docstring for the timeout and the fallback)."""
        target = self._recorder.last_sequence
        if not self._must_wait(target):
            return
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._condition:
            if target <= self.confirmed:
                return
            self._waiters.append((target, loop, future))
        try:
            await asyncio.wait_for(future, self._timeout)
        except TimeoutError:
            self.sync_timeouts += 1

    def wait_acknowledged(self, timeout: float | None = None) -> bool:
        """The same wait from a worker thread (CLI and tests): True once the standby holds
        every committed event. It does not wait when :meth:`acknowledged` would not
        (asynchronous mode, no standby connected, a stuck standby) and then answers whether
        the standby holds them already; after the timeout False (counted in
        ``sync_timeouts``)."""
        target = self._recorder.last_sequence
        if not self._must_wait(target):
            return self.confirmed >= target
        deadline = time.monotonic() + (self._timeout if timeout is None else timeout)
        with TURNS.waiting(), self._condition:
            while self.confirmed < target and (left := deadline - time.monotonic()) > 0:
                self._condition.wait(left)
            if self.confirmed >= target:
                return True
        self.sync_timeouts += 1
        return False

    # -- records -----------------------------------------------------------------------------
    def records_snapshot(self) -> dict[str, object]:
        """Every record but derived ones, the id sequences and the records version."""
        with self._store.read() as txn:
            items = [
                (key, value) for key, value in self._records.items(txn)
                if key.split("/", 1)[0] not in DERIVED_KINDS
            ]
            return {"version": self._records.version(txn), "records": items, "ids": self._records.ids(txn)}

    def status(self) -> dict[str, object]:
        last = self._recorder.next_sequence - 1  # acknowledged, if still in the intake too
        return {
            "role": "primary",
            "last_sequence": last,
            "standby_confirmed": self.confirmed,
            "standby_lag_events": max(0, last - self.confirmed) if self.confirmed else None,
            "standby_lag_seconds": (
                round(time.time() - self._behind_since, 3) if self._behind_since and self.confirmed < last else 0.0
            ),
            "standby_connected": self.standby_connected(),
            "sync": self.sync,
            "sync_timeouts": self.sync_timeouts,
            "sync_degraded": self.degraded(),
            "sync_degraded_acks": self.sync_degraded_acks,
            **self._journal_status(),
        }

    def _journal_status(self) -> dict[str, object]:
        with self._store.read() as txn:
            covers_after = self._journal.trimmed_through(txn)
            entries = self._journal.entries(txn)
        if not self.enabled:
            reason = "off: replication.journal_hours = 0"
        elif self._always:
            reason = f"kept always: replication.{self._always} = true"
        elif self.journaling:
            reason = f"kept: a standby attached within replication.journal_hours ({self._retention / 3600:g} h)"
        else:
            reason = "not kept: no standby attached within replication.journal_hours"
        return {
            "journaling": self.journaling,
            "journal": reason,
            "journal_entries": entries,
            "journal_covers_after": covers_after,
            "standby_attached_at": self._attached or None,
        }


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)
