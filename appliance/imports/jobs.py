"""Import jobs: a file uploaded on the dashboard, imported in the background, with progress.

:meth:`ImportJobs.start` takes a file already saved under ``<data dir>/transfers/`` and runs
:meth:`Importer.run <appliance.imports.runner.Importer.run>` on it in a daemon thread
(:class:`~appliance.definitions.tasks.BackgroundTasks`), reporting lines done; the finished
job holds the import report (or the error naming the file and line). The upload is deleted
when the job ends. Each job's record is kept in LMDB
(:class:`~appliance.definitions.job_records.JobRecords`): finished jobs list with their
report after a restart (the last :data:`KEEP_JOBS`), and a job the restart interrupted shows
as failed ("interrupted by a restart"). It is not resumed by itself: its upload is gone, and
the importer's chunk records are written just after each chunk's events, so a chunk being
committed at the kill could be counted again. Importing the same file again goes on where it
stopped (chunks already imported are skipped, see :mod:`appliance.imports.runner`).
"""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import msgspec

from appliance.definitions.job_records import INTERRUPTED, JobRecords
from appliance.definitions.tasks import BackgroundTasks
from appliance.errors import DomainError
from appliance.imports.runner import KINDS, Importer, ImportReport
from appliance.models import Site
from storage import Store
from storage.records import Records

KEEP_JOBS = 20
RECORD_KIND = "import_job"


class ImportJob(msgspec.Struct, kw_only=True):
    id: int
    site_id: int
    kind: str
    filename: str
    dry_run: bool
    status: str  # running, complete, failed
    created_at: float
    done: int = 0
    total: int = 0
    report: ImportReport | None = None
    error: str = ""


class ImportJobs:
    def __init__(self, importer: Importer, directory: Path, store: Store, records: Records, *,
                 read_only: bool = False) -> None:
        """``read_only``: a standby's view of the primary's jobs, listed as they are."""
        self._importer = importer
        self._directory = directory
        self._records = JobRecords(store, records, RECORD_KIND, ImportJob)
        self._jobs: dict[int, ImportJob] = {}
        for job in self._records.load(read_only=read_only):
            if job.error == INTERRUPTED:
                job.error = f"{INTERRUPTED}: import the file again to finish it (chunks already imported are skipped)"
            self._jobs[job.id] = job
        self._uploads = itertools.count(1)
        self._lock = threading.Lock()
        self._tasks = BackgroundTasks("import")
        for stale in directory.glob("upload-*") if directory.is_dir() else ():
            stale.unlink(missing_ok=True)

    def upload_path(self, filename: str) -> Path:
        """Where to save an upload before :meth:`start` (a fresh name in the folder)."""
        self._directory.mkdir(parents=True, exist_ok=True)
        with self._lock:
            number = next(self._uploads)
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in Path(filename).name)[-80:] or "upload"
        return self._directory / f"upload-{number}-{safe}"

    def start(self, site: Site, kind: str, path: Path, filename: str, *, dry_run: bool) -> ImportJob:
        if kind not in KINDS:
            path.unlink(missing_ok=True)
            raise DomainError("kind", f"must be one of {', '.join(KINDS)}")
        job_id = self._records.next_id()
        job = ImportJob(id=job_id, site_id=site.id, kind=kind, filename=filename, dry_run=dry_run, status="running",
                        created_at=time.time())
        self._records.save(job)
        with self._lock:
            self._jobs[job_id] = job
            doomed = [old for old in sorted(self._jobs)[:-KEEP_JOBS] if self._jobs[old].status != "running"]
            for old in doomed:
                self._jobs.pop(old)
        self._records.delete(doomed)

        def work(progress) -> None:
            def advance(done: int, total: int) -> None:
                job.done, job.total = done, total

            try:
                report = self._importer.run(kind, str(path), site, dry_run=dry_run, progress=advance)
                report.file = filename
                job.report = report
                job.status = "complete"
            except DomainError as error:  # bad input: the message names the file and line
                job.status, job.error = "failed", error.message.replace(path.name, filename)
            except Exception as error:
                job.status, job.error = "failed", f"{type(error).__name__}: {error}"
                raise
            finally:
                path.unlink(missing_ok=True)
                self._records.save(job)

        self._tasks.start(job_id, work)
        return job

    def jobs(self, site_id: int) -> list[ImportJob]:
        with self._lock:
            return sorted((job for job in self._jobs.values() if job.site_id == site_id), key=lambda job: -job.id)

    def wait(self, timeout: float = 60) -> None:
        self._tasks.wait(timeout)
