"""The standby's side of replication: follow a primary, apply its batches, take over on promote.

``footfall serve --follow URL --token KEY`` opens the appliance with a :class:`Follower`. Its
thread pulls ``GET URL/api/v1/replication/events?after=CURSOR`` (an admin API key of the
primary; a long poll with ``Prefer: wait=S``) and hands each batch to the same :meth:`Recorder.commit
<appliance.ingest.recording.Recorder.commit>` the ingest writer uses, with the primary's
sequences (so event ids are the same on both machines) and the new cursor written *in the same
transaction*: after a crash the standby resumes exactly after the last batch it stored, never
applying one twice or skipping one. Aggregation, goals, visits, the live view and the
``events_committed`` hooks then run as on the primary.

When the primary's records version moved (a site, user, API key, goal, salt... written), the
standby first copies every record (:meth:`ReplicationSource.records_snapshot
<appliance.operations.replication.ReplicationSource.records_snapshot>`) — before applying the
batch, so a site or goal always arrives before its events — keeping its own login sessions and
tokens and its derived records, and reloads what it caches (sites, goals with their
back-fills, the visitor-hash secret and salts).

While following, the server is read-only (``web/replication.py`` refuses every write with 503
naming the primary). :meth:`promote` stops following for good: the state is written down, so a
restart with ``--follow`` still left in its settings refuses to follow again instead of
silently becoming a standby of the old primary.

*Disk full*: when the store refuses a batch (:class:`storage.StorageFullError`: the standby's
disk filled during a catch-up) nothing of it is kept and the cursor stays where it was; the
standby stops applying, says why in ``apply_error`` (its replication status, and its health
turns ``degraded``), and retries the same batch every second, so once space is freed it resumes
from its cursor with nothing lost or doubled. The primary is not involved: it keeps serving and
acknowledging (in the synchronous mode the first acknowledgement waits ``sync_timeout_ms``,
then the primary stops waiting for a standby that confirms nothing: ``sync_degraded`` in
:mod:`appliance.operations.replication`).

*Lag*: ``lag_events`` is the primary's last committed sequence (as of its last answer) minus
the cursor; ``lag_seconds`` is how long the standby has been behind (since a pull first showed
it a commit it did not hold; 0 while caught up).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import msgspec

from appliance.definitions.goals import Goals
from appliance.ingest.recording import Recorder
from appliance.ingest.visitors import VisitorHasher
from appliance.models import Event
from appliance.operations.erasure import ERASURE_KIND, PersonalEvents
from appliance.operations.replication import DERIVED_KINDS, Pulled
from appliance.sites import SiteRegistry
from storage import StorageFullError, Store
from storage.eventlog import EventLog
from storage.imported import IMPORT_RECORD_KIND, ImportedAggregates
from storage.keys import pack_u64, unpack_u64
from storage.records import Records

log = logging.getLogger(__name__)

#: this data dir's own records, kept when the primary's are copied in (sign-ins on the standby)
LOCAL_KINDS = ("session", "token")
_CURSOR, _RECORDS, _PROMOTED = b"cursor", b"records_version", b"promoted_at"
_RETRY_SECONDS = 1.0


class FollowRefused(RuntimeError):
    """This data dir cannot follow (it was promoted)."""


def promoted_at(store: Store) -> int | None:
    """When this data dir was promoted from a standby to a primary (Unix seconds), if ever."""
    with store.read() as txn:
        raw = txn.get(_PROMOTED, db=store.db(b"replication"))
    return unpack_u64(raw) if raw else None


def refusal_to_follow(when: int) -> str:
    return (
        f"this data dir was promoted to a primary (at {when}): remove replication.follow / --follow "
        "to serve it, or seed a new standby from a backup"
    )


class _Answer(msgspec.Struct):
    data: Pulled


class RecordsSnapshot(msgspec.Struct):
    version: int
    records: list[tuple[str, bytes]]
    ids: dict[str, int]


class _RecordsAnswer(msgspec.Struct):
    data: RecordsSnapshot


class _ImportedRows(msgspec.Struct):
    site: int
    rows: list[tuple[str, int, str, tuple[int, ...]]]


class _ImportedAnswer(msgspec.Struct):
    data: _ImportedRows


class Follower:
    def __init__(
        self,
        *,
        primary: str,
        token: str,
        store: Store,
        records: Records,
        eventlog: EventLog,
        recorder: Recorder,
        sites: SiteRegistry,
        goals: Goals,
        visitors: VisitorHasher,
        after_commit: Callable[[list[Event], list[bytes]], None],
        batch_events: int,
        poll_wait_seconds: float,
        personal: PersonalEvents,
        imported: ImportedAggregates,
    ) -> None:
        self.primary = primary.rstrip("/")
        self._token = token
        self._store = store
        self._records = records
        self._recorder = recorder
        self._sites = sites
        self._goals = goals
        self._visitors = visitors
        self._after_commit = after_commit
        self._batch = batch_events
        self._wait = poll_wait_seconds
        self._personal = personal
        self._imported = imported
        self._db = store.db(b"replication")
        promoted = promoted_at(store)
        if promoted is not None:
            raise FollowRefused(refusal_to_follow(promoted))
        with store.read() as txn:
            cursor = txn.get(_CURSOR, db=self._db)
            version = txn.get(_RECORDS, db=self._db)
        # No cursor yet: a data dir seeded from the primary's backup holds its sequences.
        self.cursor = unpack_u64(cursor) if cursor else eventlog.next_sequence - 1
        self.records_version = unpack_u64(version) if version else -1
        self.following = True
        self.primary_last_sequence = self.cursor
        self.behind_since: float | None = None  # when the standby last fell behind
        self.last_contact = 0.0
        self.last_error = ""
        self.apply_error: str | None = None  # the store refused what was pulled (disk full)
        self.batches_applied = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        import httpx  # only a standby needs an HTTP client: not every start of the server pays for it

        self._client = httpx.Client(
            base_url=self.primary, headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(10.0, read=poll_wait_seconds + 30.0),
        )

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="footfall-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._client.close()  # ends a long poll in flight
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

    def promote(self) -> None:
        """Stop following and become a primary, for good (written down)."""
        self.stop()
        self._store.write(lambda txn: txn.put(_PROMOTED, pack_u64(int(time.time())), db=self._db))
        self.following = False

    # -- the loop --------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception as error:  # the primary is down or refuses, or the disk is full: keep trying
                if self._stop.is_set():
                    return
                message = f"{type(error).__name__}: {error}"
                if isinstance(error, StorageFullError):
                    self.apply_error = message
                if message != self.last_error:  # once per error, not once a second
                    log.warning("following %s: %s", self.primary, message)
                self.last_error = message
                self._stop.wait(_RETRY_SECONDS)

    def step(self) -> int:
        """One pull and its application; returns how many events were applied."""
        answer = self._client.get(
            "/api/v1/replication/events",
            params={"after": self.cursor, "limit": self._batch},
            headers={"Prefer": f"wait={self._wait:g}"},
        )
        if answer.status_code != 200:
            raise RuntimeError(f"the primary answered {answer.status_code}: {answer.text[:300]}")
        pulled = msgspec.json.decode(answer.content, type=_Answer).data
        self.last_contact = time.time()
        if pulled.last_sequence > self.cursor and self.behind_since is None:
            self.behind_since = self.last_contact
        self.primary_last_sequence = max(pulled.last_sequence, self.cursor)
        if pulled.records_version != self.records_version:
            self._copy_records()
        if pulled.events:
            self._apply(pulled.events)
        self.primary_last_sequence = max(pulled.last_sequence, self.cursor)
        if self.cursor >= self.primary_last_sequence:
            self.behind_since = None
        self.last_error = ""  # only once what was pulled is stored: a failed apply stays shown
        self.apply_error = None
        return len(pulled.events)

    def _apply(self, items: list[tuple[int, Event]]) -> None:
        sequences = [sequence for sequence, _ in items]
        events = [event for _, event in items]
        last = sequences[-1]
        keys = self._recorder.commit(
            events, sequences=sequences, also=lambda txn: txn.put(_CURSOR, pack_u64(last), db=self._db)
        )
        self.cursor = last
        self.batches_applied += 1
        self._after_commit(events, keys)
        while self._recorder.aggregate_slice():  # the standby has no tracker requests waiting
            pass

    def _copy_records(self) -> None:
        answer = self._client.get("/api/v1/replication/records")
        if answer.status_code != 200:
            raise RuntimeError(f"the primary answered {answer.status_code} for its records")
        snapshot = msgspec.json.decode(answer.content, type=_RecordsAnswer).data
        records = self._records
        incoming = dict(snapshot.records)

        def write(txn):
            for key, _ in list(records.items(txn)):
                kind = key.split("/", 1)[0]
                if key not in incoming and kind not in LOCAL_KINDS and kind not in DERIVED_KINDS:
                    records.delete_item(txn, key)
            for key, value in snapshot.records:
                records.put_item(txn, key, value)
            for name, value in snapshot.ids.items():
                records.set_id(txn, name, value)
            records.bump_generation(txn, "sites")
            txn.put(_RECORDS, pack_u64(snapshot.version), db=self._db)

        self._store.write(write)
        self.records_version = snapshot.version
        self._sites.reload_if_changed()
        self._visitors.reload()
        self._goals.reload()
        self._carry_out_erasures()
        self._copy_imported()

    def _carry_out_erasures(self) -> None:
        """Erase here every person the primary erased (its ``erasure`` records) not yet
        erased here; a row pulled before the primary's erasure goes now, later ones never
        come (the primary dropped them from its journal)."""
        with self._store.read() as txn:
            done = {bytes(key) for key, _ in txn.cursor(db=self._db) if bytes(key).startswith(b"erased/")}
        for identifier, _ in self._records.scan(ERASURE_KIND):
            mark = b"erased/" + identifier.encode()
            if mark in done:
                continue
            site_id, visitor = identifier.split("/")
            site = self._sites.by_id(int(site_id))
            if site is not None:
                self._personal.erase_visitor(site, int(visitor, 16))
            self._store.write(lambda txn, mark=mark: txn.put(mark, b"", db=self._db))

    def _copy_imported(self) -> None:
        """Copy the imported daily aggregates of every site with an import record not copied
        here yet (a Plausible CSV import on the primary writes no events to pull): the site's
        rows are replaced whole, so a re-import of the same days replaces them here too."""
        with self._store.read() as txn:
            done = {bytes(key) for key, _ in txn.cursor(db=self._db) if bytes(key).startswith(b"imported/")}
        pending: dict[int, list[bytes]] = {}
        for identifier, _ in self._records.scan(IMPORT_RECORD_KIND):
            mark = b"imported/" + identifier.encode()
            if mark not in done:
                pending.setdefault(int(identifier.split("/", 1)[0]), []).append(mark)
        for site_id, marks in pending.items():
            answer = self._client.get(f"/api/v1/replication/imported/{site_id}")
            if answer.status_code != 200:
                raise RuntimeError(f"the primary answered {answer.status_code} for site {site_id}'s imported days")
            rows = msgspec.json.decode(answer.content, type=_ImportedAnswer).data.rows

            def write(txn, site_id=site_id, rows=rows, marks=marks):
                self._imported.replace_site(txn, site_id, rows)
                for mark in marks:
                    txn.put(mark, b"", db=self._db)

            self._store.write(write)

    def status(self) -> dict[str, object]:
        lag_events = max(0, self.primary_last_sequence - self.cursor)
        return {
            "role": "standby" if self.following else "primary (promoted)",
            "primary": self.primary,
            "cursor": self.cursor,
            "primary_last_sequence": self.primary_last_sequence,
            "lag_events": lag_events,
            "lag_seconds": round(time.time() - self.behind_since, 3) if lag_events and self.behind_since else 0.0,
            "last_contact_seconds_ago": round(time.time() - self.last_contact, 3) if self.last_contact else None,
            "batches_applied": self.batches_applied,
            "last_error": self.last_error or None,
            "apply_error": self.apply_error,
        }
