"""A finished import has the job runner compact the closed days it wrote.

An access log of three closed days (relative to now, so the test does not age) is imported
through the importer an open appliance uses; the job runner's thread — woken by the import,
long before its first hourly run — folds those days into column blocks, and the event log
keeps none of their rows. A dry run asks for nothing.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from appliance.imports.runner import Importer

AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"


def _access_log(path, first_day: int, days: int) -> None:
    lines = []
    for offset in range(days):
        for visitor in range(5):
            moment = datetime.fromtimestamp((first_day + offset) * 86400 + 3600 * (visitor + 8), UTC)
            stamp = moment.strftime("%d/%b/%Y:%H:%M:%S +0000")
            lines.append(f'192.0.2.{visitor + 1} - - [{stamp}] "GET /page/{visitor} HTTP/1.1" 200 512 "-" "{AGENT}"')
    path.write_text("\n".join(lines) + "\n")


def _log_days(appliance, site_id: int, first_day: int, last_day: int) -> list[int]:
    with appliance.store.read() as txn:
        return appliance.columns.log_days(txn, site_id, first_day, last_day)


def test_an_import_has_its_closed_days_compacted_by_the_job_runner(make_appliance, tmp_path):
    appliance = make_appliance()
    site = appliance.sites.add("import-compaction.example")
    today = int(time.time() // 86400)
    first_day, last_day = today - 4, today - 2
    log = tmp_path / "access.log"
    _access_log(log, first_day, 3)
    importer = Importer.of(appliance)

    dry = importer.run("access-log", str(log), site, dry_run=True)
    assert dry.events == 15 and appliance.jobs.compactions.wait(0) is True

    report = importer.run("access-log", str(log), site)
    assert report.events == 15
    assert appliance.jobs.compactions.wait(timeout=60), "the job runner never compacted the imported days"
    assert _log_days(appliance, site.id, first_day, last_day) == []
    with appliance.store.read() as txn:
        assert appliance.columns.blocks.days(txn, site.id, first_day, last_day) == [first_day, first_day + 1, last_day]
    assert appliance.jobs.compactions.days_compacted == 3
    assert appliance.jobs.last_run == {}  # the hourly run (a minute after start) has not happened
