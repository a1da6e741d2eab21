"""Export and import job registries over LMDB: what a second registry on the same data (the
server after a restart) finds, and the retention rule for records and files."""

from __future__ import annotations

import time
from datetime import date

import msgspec

from appliance.definitions.job_records import INTERRUPTED
from appliance.exports import jobs as export_jobs
from appliance.exports.jobs import ExportJob, ExportJobs
from appliance.exports.raw_events import RawEvents
from appliance.imports.jobs import ImportJob, ImportJobs
from appliance.imports.runner import Importer
from appliance.models import Event, EventKind


def _exports(appliance, directory) -> ExportJobs:
    return ExportJobs(RawEvents(appliance.stats.scans, appliance.strings), directory, appliance.store, appliance.records)


def test_finished_jobs_persist_and_old_ones_are_pruned_with_their_files(make_appliance, tmp_path, monkeypatch):
    monkeypatch.setattr(export_jobs, "KEEP_JOBS", 2)
    appliance = make_appliance()
    site = appliance.sites.add("job-records.example")
    appliance.record_sync([Event(kind=EventKind.PAGEVIEW, site_id=site.id, timestamp=time.time(), name="pageview",
                                 visitor_id=7, path="/")])
    directory = tmp_path / "transfers"
    exports = _exports(appliance, directory)
    today = date.today()
    for _ in range(3):
        exports.start(site, today, today, "ndjson", [])
        exports.wait()
    assert [(job.id, job.status) for job in exports.jobs(site.id)] == [(3, "complete"), (2, "complete")]
    exports.start(site, today, today, "csv", [])
    exports.wait()
    kept = exports.jobs(site.id)
    assert [job.id for job in kept] == [4, 3]  # the two newest finished ones (and their files)
    assert sorted(path.name for path in directory.iterdir()) == ["export-3.ndjson", "export-4.csv"]
    assert [key for key, _ in appliance.records.scan(export_jobs.RECORD_KIND)] == ["0000000003", "0000000004"]

    # a job record left running (the process died), and a file no job names
    running = ExportJob(id=9, site_id=site.id, status="running", label="x", filename="x.ndjson",
                        path=str(directory / "export-9.ndjson"), created_at=time.time())
    appliance.store.write(lambda txn: appliance.records.put(txn, export_jobs.RECORD_KIND, "0000000009",
                                                            msgspec.msgpack.encode(running)))
    (directory / "export-9.ndjson").write_bytes(b"half a file")
    again = _exports(appliance, directory)
    by_id = {job.id: job for job in again.jobs(site.id)}
    assert (by_id[9].status, by_id[9].error) == ("failed", INTERRUPTED)
    assert again.finished(site.id, 4) is not None and again.finished(site.id, 9) is None
    assert list(by_id) == [9, 4]  # the failed job counts among the kept: job 3 and its file went
    assert sorted(path.name for path in directory.iterdir()) == ["export-4.csv"]  # export-9's half file too
    started = again.start(site, today, today, "ndjson", [])
    assert started.id == 5  # the LMDB sequence goes on after a restart: an id (and its file name) is never reused
    again.wait()


def test_an_interrupted_import_is_listed_as_failed(make_appliance, tmp_path):
    appliance = make_appliance()
    site = appliance.sites.add("import-records.example")
    interrupted = ImportJob(id=1, site_id=site.id, kind="access-log", filename="big.log", dry_run=False,
                            status="running", created_at=time.time(), done=10, total=100)
    appliance.store.write(lambda txn: appliance.records.put(txn, "import_job", "0000000001",
                                                            msgspec.msgpack.encode(interrupted)))
    (tmp_path / "upload-1-big.log").write_text("left over")
    imports = ImportJobs(Importer.of(appliance), tmp_path, appliance.store, appliance.records)
    (job,) = imports.jobs(site.id)
    assert job.status == "failed" and job.error.startswith(INTERRUPTED) and "again" in job.error
    assert list(tmp_path.glob("upload-*")) == []  # the upload (IP addresses, user agents) is gone


def test_a_standby_lists_the_primarys_jobs_as_they_are(make_appliance, tmp_path):
    """Read-only registries (a standby's: its records are the primary's copies) change nothing."""
    appliance = make_appliance()
    site = appliance.sites.add("standby-records.example")
    running = ExportJob(id=1, site_id=site.id, status="running", label="x", filename="x.ndjson",
                        path=str(tmp_path / "export-1.ndjson"), created_at=time.time())
    appliance.store.write(lambda txn: appliance.records.put(txn, export_jobs.RECORD_KIND, "0000000001",
                                                            msgspec.msgpack.encode(running)))
    with appliance.store.read() as txn:
        version = appliance.records.version(txn)
    (tmp_path / "export-7.csv").write_text("a file a standby does not know")
    exports = ExportJobs(RawEvents(appliance.stats.scans, appliance.strings), tmp_path, appliance.store, appliance.records,
                         read_only=True)
    assert [(job.id, job.status) for job in exports.jobs(site.id)] == [(1, "running")]  # still running on the primary
    with appliance.store.read() as txn:
        assert appliance.records.version(txn) == version  # nothing written
    assert (tmp_path / "export-7.csv").exists()
