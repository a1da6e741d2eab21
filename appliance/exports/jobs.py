"""Export jobs: a long raw event export written to a file in the background, with progress.

The dashboard's "Import & export" page starts one with :meth:`ExportJobs.start`; a daemon
thread (:class:`~appliance.definitions.tasks.BackgroundTasks`) streams
:meth:`RawEvents.stream <appliance.exports.raw_events.RawEvents.stream>` into
``<data dir>/transfers/export-<id>.<ndjson|csv>``, reporting days done, and the finished file
is offered for download. Jobs live in memory (a restart forgets them and the next start
clears the folder); files are deleted after :data:`KEEP_SECONDS` or when more than
:data:`KEEP_JOBS` jobs are kept.
"""

from __future__ import annotations

import itertools
import threading
import time
from datetime import date
from pathlib import Path

import msgspec

from appliance.definitions.tasks import BackgroundTasks
from appliance.exports.raw_events import RawEvents
from appliance.filters import Filter
from appliance.models import Site

KEEP_SECONDS = 24 * 3600
KEEP_JOBS = 20


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
    def __init__(self, raw: RawEvents, directory: Path) -> None:
        self._raw = raw
        self._directory = directory
        self._jobs: dict[int, ExportJob] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._tasks = BackgroundTasks("export")
        for stale in directory.glob("export-*") if directory.is_dir() else ():
            stale.unlink(missing_ok=True)

    def start(self, site: Site, first: date, last: date, fmt: str, filters: list[Filter]) -> ExportJob:
        """Check the arguments (raises :class:`~appliance.errors.DomainError`) and start."""
        chunks = self._raw.stream(site, first, last, filters=filters, fmt=fmt, progress=None)
        self._directory.mkdir(parents=True, exist_ok=True)
        with self._lock:
            job_id = next(self._ids)
        path = self._directory / f"export-{job_id}.{fmt}"
        job = ExportJob(
            id=job_id, site_id=site.id, status="running", label=f"{first.isoformat()} – {last.isoformat()}, {fmt}",
            filename=f"{site.domain}-events-{first.isoformat()}-{last.isoformat()}.{fmt}", path=str(path),
            created_at=time.time(), days_total=(last - first).days + 1,
        )
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
        for job in doomed:
            Path(job.path).unlink(missing_ok=True)
