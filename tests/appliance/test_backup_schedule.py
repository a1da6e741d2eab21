"""Backups inside the server's process: a disk that fills up mid-copy (an injected writer
raising ENOSPC), the rotation's choice of backups to keep, and a scheduled backup shipped to
the built-in ``folder`` target."""

from __future__ import annotations

import errno
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from appliance.models import Event, EventKind
from appliance.operations.backup_schedule import backup_name, kept, list_backups
from appliance.operations.backups import BackupError, make_backup, verify_backup
from appliance.operations.restore import restore_backup
from appliance.runtime.jobs import scheduled_backup


def record_page_views(appliance, count: int) -> None:
    site = appliance.sites.get("example.com") or appliance.sites.add("example.com")
    now = time.time()
    appliance.record_sync([
        Event(kind=EventKind.PAGEVIEW, site_id=site.id, timestamp=now - index, name="pageview",
              visitor_id=index % 5, path=f"/p{index % 3}")
        for index in range(count)
    ])


class FullDisk:
    """A writer that takes ``room`` bytes, then fails as a full disk does."""

    def __init__(self, path: Path, room: int) -> None:
        self._file = open(path, "wb")  # noqa: SIM115 - closed by __exit__
        self._room = room

    def write(self, chunk: bytes) -> int:
        if len(chunk) > self._room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self._room -= len(chunk)
        return self._file.write(chunk)

    def flush(self) -> None:
        self._file.flush()

    def fileno(self) -> int:
        return self._file.fileno()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()


def test_disk_full_while_copying_data_files_removes_the_partial_backup(make_appliance, tmp_path):
    appliance = make_appliance()
    record_page_views(appliance, 50)
    plugins = Path(appliance.settings.data_dir) / "plugins"
    plugins.mkdir()
    (plugins / "mine.py").write_bytes(b"# a plugin\n" * 1000)
    destination = tmp_path / "backup"
    with pytest.raises(BackupError) as raised:
        make_backup(appliance.store, appliance.settings.data_dir, destination,
                    open_target=lambda path: FullDisk(path, room=100))
    assert raised.value.disk_full and raised.value.status == 507
    assert "disk full" in raised.value.message
    assert not destination.exists()
    record_page_views(appliance, 5)  # the appliance keeps writing
    assert appliance.health()["status"] == "ok"


def test_disk_full_during_restore_leaves_the_data_dir_as_it_was(make_appliance, tmp_path):
    appliance = make_appliance()
    record_page_views(appliance, 20)
    backup = tmp_path / "backup"
    manifest = make_backup(appliance.store, appliance.settings.data_dir, backup)
    assert manifest["event_count"] == 20 and manifest["sites"] == ["example.com"]
    target = tmp_path / "target"
    with pytest.raises(BackupError) as raised:
        restore_backup(backup, target, open_target=lambda path: FullDisk(path, room=4096))
    assert raised.value.disk_full
    assert list(target.iterdir()) == []
    restore_backup(backup, target)
    assert verify_backup(backup)["event_count"] == 20
    assert (target / "footfall.lmdb" / "data.mdb").is_file()


def test_rotation_keeps_the_newest_of_each_recent_day_and_week(tmp_path):
    start = datetime(2026, 11, 2, 3, 0, tzinfo=UTC)  # a Monday
    backups = []
    for hours in range(0, 30 * 24, 12):  # two a day for 30 days
        at = start + timedelta(hours=hours)
        backups.append((at, tmp_path / backup_name(at.timestamp())))
    backups.sort(reverse=True)
    keep = kept(backups, keep_daily=3, keep_weekly=2)
    newest = backups[0][0]
    days = {at.date() for at, path in backups if path in keep}
    # the newest of each of the 3 last days; the week's newest is today's, so 3 backups
    assert len(keep) == 3 and newest.date() in days
    keep = kept(backups, keep_daily=1, keep_weekly=3)
    weeks = sorted({at.isocalendar()[:2] for at, path in backups if path in keep})
    assert len(keep) == 3 and len(weeks) == 3
    for at, path in backups:
        if path in keep:  # each kept one is the newest of its week
            assert all(other <= at for other, _ in backups if other.isocalendar()[:2] == at.isocalendar()[:2])


def test_scheduled_backup_rotates_and_ships_to_the_folder_target(make_appliance, tmp_path):
    mirror = tmp_path / "mirror"
    appliance = make_appliance(
        backup_enabled="true", backup_directory=str(tmp_path / "backups"), backup_keep_daily="2",
        backup_keep_weekly="0", backup_targets="folder", plugin_backups_directory=str(mirror),
    )
    record_page_views(appliance, 10)
    day = 86400
    first = time.time() - 3 * day
    results = [scheduled_backup(appliance, first + offset * day) for offset in (0, 1, 2)]
    assert all(result["shipped"] == ["folder"] and not result["failed"] for result in results)
    assert scheduled_backup(appliance, first + 2 * day + 3600)["skipped"] == "not due"
    names = [path.name for _, path in list_backups(tmp_path / "backups")]
    assert names == [backup_name(first + 2 * day), backup_name(first + day)]
    assert results[2]["removed"] == [backup_name(first)]
    assert sorted(path.name for path in mirror.iterdir()) == sorted(names)
    assert verify_backup(mirror / names[0])["event_count"] == 10


def test_backups_inside_the_data_dir_are_not_copied_into_the_next(make_appliance):
    appliance = make_appliance(backup_enabled="true")  # the default directory: <data>/backups
    record_page_views(appliance, 3)
    data = Path(appliance.settings.data_dir)
    (data / "plugins").mkdir()
    (data / "plugins" / "mine.py").write_text("# a plugin\n")
    first = scheduled_backup(appliance, time.time() - 86400)
    second = scheduled_backup(appliance, time.time())
    assert first["backup"] != second["backup"]
    files = verify_backup(data / "backups" / second["backup"])["files"]
    assert sorted(files) == ["footfall.lmdb/data.mdb", "plugins/mine.py"]
    elsewhere = make_backup(appliance.store, data, data.parent / "by-hand")  # by hand: the same
    assert sorted(elsewhere["files"]) == ["footfall.lmdb/data.mdb", "plugins/mine.py"]
