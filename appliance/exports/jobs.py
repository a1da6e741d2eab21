"""Export jobs: a long raw event export written to a file in the background, with progress.

The dashboard's "Import & export" page starts one with :meth:`ExportJobs.start`; a daemon
thread (:class:`~appliance.definitions.tasks.BackgroundTasks`) streams
:meth:`RawEvents.stream <appliance.exports.raw_events.RawEvents.stream>` into
``<data dir>/transfers/export-<id>.<ndjson|csv>``, reporting days done, and the finished file
is offered for download. Each job's record is kept in LMDB
(:class:`~appliance.definitions.job_records.JobRecords`), so finished jobs and their files
survive a restart, and a job the restart interrupted shows as failed ("interrupted by a
restart"; its partial file is deleted: start it again). Retention: a finished job and its
file are deleted after :data:`KEEP_SECONDS`, or when more than :data:`KEEP_JOBS` finished
jobs are kept (oldest first); a file in the folder that no kept job names is deleted when the
registry opens.
"""

from __future__ import annotations

import threading
import time
from datetime import date
from pathlib import Path

import msgspec

from appliance.definitions.job_records import JobRecords
from appliance.definitions.tasks import BackgroundTasks
from appliance.exports.raw_events import RawEvents
from appliance.filters import Filter
from appliance.models import Site
from storage import Store
from storage.records import Records

KEEP_SECONDS = 24 * 3600
KEEP_JOBS = 20
RECORD_KIND = "export_job"


class ExportJob(msgspec.Struct, kw_only=True):
    id: int
    site_id: int
    status: str  # running, complete, failed
    label: str  # "2026-11-01 – 2026-11-30, csv"
    filename: str
    path: str
    created_at: float
    days_done: int = 0
    days_total: int = 0
    events: int = 0
    error: str = ""


class ExportJobs:
    def __init__(self, raw: RawEvents, directory: Path, store: Store, records: Records, *, read_only: bool = False) -> None:
        """``read_only``: a standby's view of the primary's jobs (records copied from it), which
        it lists as they are and never prunes; it starts none (writes are refused there)."""
        self._raw = raw
        self._directory = directory
        self._records = JobRecords(store, records, RECORD_KIND, ExportJob)
        self._jobs: dict[int, ExportJob] = {job.id: job for job in self._records.load(read_only=read_only)}
        self._lock = threading.Lock()
        self._tasks = BackgroundTasks("export")
        if read_only:
            return
        self._prune()
        kept = {Path(job.path).name for job in self._jobs.values() if job.status == "complete"}
        for stale in directory.glob("export-*") if directory.is_dir() else ():
            if stale.name not in kept:  # an interrupted job's partial file, or a pruned one
                stale.unlink(missing_ok=True)

    def start(self, site: Site, first: date, last: date, fmt: str, filters: list[Filter]) -> ExportJob:
        """Check the arguments (raises :class:`~appliance.errors.DomainError`) and start."""
        chunks = self._raw.stream(site, first, last, filters=filters, fmt=fmt, progress=None)
        self._directory.mkdir(parents=True, exist_ok=True)
        job_id = self._records.next_id()
        path = self._directory / f"export-{job_id}.{fmt}"
        job = ExportJob(
            id=job_id, site_id=site.id, status="running", label=f"{first.isoformat()} – {last.isoformat()}, {fmt}",
            filename=f"{site.domain}-events-{first.isoformat()}-{last.isoformat()}.{fmt}", path=str(path),
            created_at=time.time(), days_total=(last - first).days + 1,
        )
        self._records.save(job)
        with self._lock:
            self._jobs[job_id] = job
        self._prune()
        chunks.close()  # the checked generator is not used; the job streams its own

        def work(progress) -> None:
            def advance(done: int, total: int) -> None:
                job.days_done = done

            try:
                with open(path, "wb") as out:
                    for chunk in self._raw.stream(site, first, last, filters=filters, fmt=fmt, progress=advance):
                        out.write(chunk)
                        job.events += chunk.count(b"\n")
                if fmt == "csv":
                    job.events -= 1  # the header row
                job.days_done = job.days_total
                job.status = "complete"
            except Exception as error:
                job.status, job.error = "failed", str(error)
                path.unlink(missing_ok=True)
                raise
            finally:
                self._records.save(job)

        self._tasks.start(job_id, work)
        return job

    def jobs(self, site_id: int) -> list[ExportJob]:
        with self._lock:
            return sorted((job for job in self._jobs.values() if job.site_id == site_id), key=lambda job: -job.id)

    def finished(self, site_id: int, job_id: int) -> ExportJob | None:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None or job.site_id != site_id or job.status != "complete" or not Path(job.path).is_file():
            return None
        return job

    def wait(self, timeout: float = 60) -> None:
        self._tasks.wait(timeout)

    def _prune(self) -> None:
        now = time.time()
        with self._lock:
            ordered = sorted(self._jobs.values(), key=lambda job: -job.id)
            doomed = [job for index, job in enumerate(ordered)
                      if job.status != "running" and (index >= KEEP_JOBS or now - job.created_at > KEEP_SECONDS)]
            for job in doomed:
                self._jobs.pop(job.id, None)
        self._records.delete(job.id for job in doomed)
        for job in doomed:
            Path(job.path).unlink(missing_ok=True)
