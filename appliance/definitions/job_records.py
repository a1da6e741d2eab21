"""Job records: background jobs (raw event exports, imports) kept in LMDB across restarts.

A registry of jobs (:class:`~appliance.exports.jobs.ExportJobs`,
:class:`~appliance.imports.jobs.ImportJobs`) saves a job's record when it starts and when it
ends; progress in between stays in memory (it changes many times a second and a restart
ends the job anyway). Ids come from an LMDB sequence, so they are never reused and a file
named after its job (``export-<id>.ndjson``) is never overwritten by a later one. When the
registry opens again after a restart, a record still marked ``running`` belongs to a job the
restart killed: :meth:`JobRecords.load` marks it failed with :data:`INTERRUPTED`. Records live
under one record kind per registry, keyed by the zero-padded id (oldest first).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

import msgspec

from storage import Store
from storage.records import Records

INTERRUPTED = "interrupted by a restart"
Job = TypeVar("Job", bound=msgspec.Struct)


class JobRecords(Generic[Job]):
    """The stored records of one kind of job (``job_type`` with ``id`` and ``status``)."""

    def __init__(self, store: Store, records: Records, kind: str, job_type: type[Job]) -> None:
        self._store = store
        self._records = records
        self._kind = kind
        self._type = job_type

    def next_id(self) -> int:
        return self._store.write(lambda txn: self._records.next_id(txn, self._kind))

    def save(self, job: Job) -> None:
        raw = msgspec.msgpack.encode(job)
        self._store.write(lambda txn: self._records.put(txn, self._kind, f"{job.id:010d}", raw))  # type: ignore[attr-defined]

    def delete(self, job_ids: Iterable[int]) -> None:
        doomed = list(job_ids)
        if doomed:
            self._store.write(lambda txn: [self._records.delete(txn, self._kind, f"{job_id:010d}") for job_id in doomed])

    def load(self, *, read_only: bool = False) -> list[Job]:
        """Every stored job, oldest first; one that was running when the process stopped is
        stored again as failed (:data:`INTERRUPTED`). A record that no longer decodes (an
        older shape) is dropped. ``read_only`` (a standby, whose records are the primary's
        copies: its jobs may be running there) changes nothing."""
        jobs, unreadable = [], []
        for key, raw in self._records.scan(self._kind):
            try:
                jobs.append(msgspec.msgpack.decode(raw, type=self._type))
            except msgspec.DecodeError:
                unreadable.append(int(key))
        if read_only:
            return jobs
        self.delete(unreadable)
        for job in jobs:
            if job.status == "running":  # type: ignore[attr-defined]
                job.status, job.error = "failed", INTERRUPTED  # type: ignore[attr-defined]
                self.save(job)
        return jobs
